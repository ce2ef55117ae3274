"""extract-lora round-trips through peft; LoRA adapters are task vectors in a merge YAML."""
import json
from pathlib import Path

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

import theorylab.edit as E
from theorylab.hf import load_state_dict, merge_checkpoints, parse_config
from theorylab.hf.cli import register
from theorylab.hf.lora import read_adapter
from tests.hf.conftest import MODEL_CLASSES

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
runner = CliRunner()


def _app():
    app = typer.Typer()
    register(app)
    return app


def _expected(base, ft, adapter, rank=None, energy=None):
    """What the adapter should hold: base + truncated task vector on LoRA matrices, the fine-tune's tensors for
    modules saved whole and for lora_bias biases, base elsewhere."""
    tau = E.TaskVector(base, ft)
    out = {}
    for k, b in base.items():
        if k in adapter.factors:
            out[k] = b + E.low_rank(tau[k], rank=rank, energy=energy)
        elif k in adapter.replaced or k in adapter.bias_deltas:
            out[k] = ft[k]
        else:
            out[k] = b
    return out


def _outputs(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("arch, args", [("llama", ["--rank", "2"]), ("gpt2", ["--energy", "0.5"]),
                                        ("llama", ["--rank", "3", "--embeddings"]), ("bert", ["--rank", "2"])])
def test_extract_lora_round_trips_through_peft(arch, args, family, tmp_path):
    """peft loads the adapter and its adapted model is base + truncated task vector on the LoRA matrices and
    the fine-tune everywhere else that changed (norms, embeddings, LM head, biases)."""
    paths = family(arch)
    out = tmp_path / "adapter"
    res = runner.invoke(_app(), ["extract-lora", str(paths["ft0"]), str(out), "--base", str(paths["base"]), *args])
    assert res.exit_code == 0, res.output
    assert "kept energy per matrix" in res.output and "not carried" not in res.output
    adapter = read_adapter(out)
    assert adapter.factors and all(k.endswith(".weight") for k in adapter.factors)
    base, ft = load_state_dict(paths["base"]), load_state_dict(paths["ft0"])
    changed = {k for k in base if not torch.equal(base[k], ft[k])}
    assert changed == adapter.changed & set(base)  # everything that changed is carried, nothing else is touched
    if arch == "gpt2":  # the tied head is saved beside the embedding, as peft saves tied modules
        assert adapter.changed - set(base) == {"lm_head.weight"} and adapter.config["ensure_weight_tying"]
        assert torch.equal(adapter.replaced["lm_head.weight"], ft["transformer.wte.weight"])
        assert all(f.transposed for f in adapter.factors.values())  # Conv1D: fan_in_fan_out
        assert adapter.bias_deltas and adapter.config["lora_bias"]
    embed = {"llama": "model.embed_tokens.weight", "gpt2": "transformer.wte.weight",
             "bert": "embeddings.word_embeddings.weight"}[arch]
    assert (embed in adapter.factors) == ("--embeddings" in args) and (embed in adapter.replaced) != ("--embeddings" in args)
    assert adapter.config["task_type"] == ("FEATURE_EXTRACTION" if arch == "bert" else "CAUSAL_LM")
    assert adapter.config["base_model_name_or_path"] == str(paths["base"])
    rank = int(args[1]) if args[0] == "--rank" else None
    energy = float(args[1]) if args[0] == "--energy" else None
    expected = _expected(base, ft, adapter, rank, energy)

    cls = getattr(transformers, MODEL_CLASSES[arch])
    model = peft.PeftModel.from_pretrained(cls.from_pretrained(paths["base"]), out).eval()
    ids = torch.arange(12).reshape(1, 12) % 90
    adapted = _outputs(model, ids)
    reference = cls.from_pretrained(paths["base"]).eval()
    reference.load_state_dict(expected, strict=False)
    if arch == "gpt2":
        reference.tie_weights()
    torch.testing.assert_close(adapted, _outputs(reference, ids), rtol=0, atol=1e-5)
    merged = model.merge_and_unload().state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(merged[k], v, rtol=0, atol=1e-5)


def test_extract_lora_reports_kept_energy_and_refuses_bad_input(family, tmp_path):
    from theorylab.hf.lora_extract import extract_lora

    paths = family("llama")
    rep = extract_lora(paths["ft1"], paths["base"], tmp_path / "a", rank=1)
    base, ft = load_state_dict(paths["base"]), load_state_dict(paths["ft1"])
    name = "model.layers.0.self_attn.q_proj"
    s = torch.linalg.svdvals(ft[f"{name}.weight"].float() - base[f"{name}.weight"].float()).double()
    assert rep.energy[name] == pytest.approx(float(s[0] ** 2 / (s**2).sum()), rel=1e-5)
    assert rep.ranks[name] == 1 and 0 < rep.carried_fraction < 1
    res = runner.invoke(_app(), ["extract-lora", str(paths["ft1"]), str(tmp_path / "b"), "--base", str(paths["base"]),
                                 "--rank", "2", "--energy", "0.5"])
    assert res.exit_code == 2 and "exactly one of --rank" in res.output and not (tmp_path / "b").exists()


def _peft_adapter(paths, out, rank=4, alpha=8, **kw):
    """A random (non-zero) LoRA adapter on the base, as people train them."""
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM.from_pretrained(paths["base"])
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj", "v_proj", "down_proj"],
                          init_lora_weights=False, **kw)
    pm = peft.get_peft_model(model, cfg)
    pm.save_pretrained(out)
    return pm


@pytest.mark.parametrize("kw", [{}, {"use_rslora": True, "rank_pattern": {"down_proj": 2}, "alpha_pattern": {"v_proj": 3}}])
def test_lora_adapter_as_a_task_vector_in_a_merge(kw, family, tmp_path):
    paths = family("llama")
    pm = _peft_adapter(paths, tmp_path / "lora", **kw)
    target = pm.merge_and_unload().state_dict()  # peft's own base + scale * B A
    cfg = {"merge_method": "task_arithmetic", "base_model": str(paths["base"]),
           "models": [{"model": f"{paths['base']}+{tmp_path / 'lora'}", "parameters": {"weight": 0.5}},
                      {"model": str(paths["ft0"]), "parameters": {"weight": 1.0}}]}
    merge_checkpoints(parse_config(cfg), tmp_path / "m", progress=False)
    merged, base, ft0 = load_state_dict(tmp_path / "m"), load_state_dict(paths["base"]), load_state_dict(paths["ft0"])
    for k, b in base.items():
        expected = b + 0.5 * (target[k] - b) + (ft0[k] - b)
        torch.testing.assert_close(merged[k], expected, rtol=0, atol=1e-6)
    assert any(not torch.equal(target[k], base[k]) for k in base)  # the adapter did something


def test_bare_adapter_path_is_refused_with_the_syntax_to_use(family, tmp_path):
    paths = family("llama")
    _peft_adapter(paths, tmp_path / "lora")
    cfg = {"merge_method": "task_arithmetic", "base_model": str(paths["base"]),
           "models": [{"model": str(tmp_path / "lora"), "parameters": {"weight": 1.0}}]}
    cfg_path = tmp_path / "c.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(_app(), ["merge", str(cfg_path), str(tmp_path / "m"), "--no-progress"])
    assert res.exit_code == 2 and "is a LoRA adapter; write it as '<model>+" in " ".join(res.output.split())
    assert not (tmp_path / "m").exists()


MERGEKIT_ADAPTER = Path(__file__).parent / "data" / "mergekit_extract_lora_llama_r8"


def _merge_one_adapter(paths, adapter, out):
    cfg = {"merge_method": "task_arithmetic", "base_model": str(paths["base"]),
           "models": [{"model": f"{paths['base']}+{adapter}", "parameters": {"weight": 1.0}}]}
    merge_checkpoints(parse_config(cfg), out, progress=False)
    return load_state_dict(out)


def _peft_merged(cls, paths, adapter):
    return peft.PeftModel.from_pretrained(cls.from_pretrained(paths["base"]), adapter).merge_and_unload().state_dict()


def test_mergekit_adapter_with_modules_to_save_round_trips_through_base_plus_lora(family, tmp_path):
    """mergekit-extract-lora's adapter (committed, made from this suite's tiny Llama) in a merge: base + its
    LoRA deltas, its saved modules in place of the base's, as peft's merge_and_unload gives."""
    paths = family("llama")
    adapter = read_adapter(MERGEKIT_ADAPTER)
    assert {"norm", "embed_tokens", "lm_head"} <= set(adapter.config["modules_to_save"])
    assert "model.norm.weight" in adapter.replaced and "lm_head.weight" in adapter.replaced
    merged = _merge_one_adapter(paths, MERGEKIT_ADAPTER, tmp_path / "m")
    reference = _peft_merged(transformers.LlamaForCausalLM, paths, MERGEKIT_ADAPTER)
    base = load_state_dict(paths["base"])
    for k, v in merged.items():
        torch.testing.assert_close(v, reference[k], rtol=0, atol=1e-6)
        if k in adapter.replaced:
            assert torch.equal(v, adapter.replaced[k])
        elif k not in adapter.factors:
            assert torch.equal(v, base[k])


def test_extract_lora_is_as_close_to_the_fine_tune_as_mergekit(family, tmp_path):
    """Same rank, same fine-tune: our LoRA products equal mergekit's, we save the same modules whole, and the
    adapted model is at least as close to the fine-tune (benchmarks/lora_compare.py measures it against
    mergekit itself)."""
    paths = family("llama")
    theirs = read_adapter(MERGEKIT_ADAPTER)
    ft = load_state_dict(paths["ft0"])
    if not torch.equal(ft["model.norm.weight"], theirs.replaced["model.norm.weight"]):
        pytest.skip("this transformers/torch builds a different tiny Llama than the one the fixture was made from")
    res = runner.invoke(_app(), ["extract-lora", str(paths["ft0"]), str(tmp_path / "ours"), "--base",
                                 str(paths["base"]), "--max-rank", "8"])
    assert res.exit_code == 0, res.output
    ours = read_adapter(tmp_path / "ours")
    assert set(ours.factors) == set(theirs.factors) and set(ours.replaced) == set(theirs.replaced)
    for k, f in ours.factors.items():
        torch.testing.assert_close(f.delta_rows(0, f.shape[0]), theirs.factors[k].delta_rows(0, f.shape[0]),
                                   rtol=0, atol=1e-6)
    ids = torch.arange(24).reshape(2, 12) % 90
    cls = transformers.LlamaForCausalLM
    target, base_out = _outputs(cls.from_pretrained(paths["ft0"]), ids), _outputs(cls.from_pretrained(paths["base"]), ids)
    err = {}
    for name, path in (("ours", tmp_path / "ours"), ("mergekit", MERGEKIT_ADAPTER)):
        model = peft.PeftModel.from_pretrained(cls.from_pretrained(paths["base"]), path).eval()
        err[name] = float((_outputs(model, ids) - target).norm() / (base_out - target).norm())
    assert err["ours"] <= err["mergekit"] + 1e-6 and err["ours"] < 0.8, err
    # LoRA factors alone (what extract-lora wrote before modules_to_save) are much further off
    lora_only = tmp_path / "lora-only"
    from theorylab.hf.lora_extract import extract_lora
    extract_lora(paths["ft0"], paths["base"], lora_only, rank=8, embeddings=True, skip_undecomposable=True,
                 exclude="embed_tokens")
    model = peft.PeftModel.from_pretrained(cls.from_pretrained(paths["base"]), lora_only).eval()
    assert float((_outputs(model, ids) - target).norm() / (base_out - target).norm()) > err["ours"] + 0.2


def test_peft_adapter_with_modules_to_save_and_lora_bias_in_a_merge(family, tmp_path):
    """What peft itself writes: trained norm copies in modules_to_save (matched by name suffix) and lora_bias."""
    paths = family("gpt2")
    torch.manual_seed(2)
    cfg = peft.LoraConfig(r=3, lora_alpha=6, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True,
                          modules_to_save=["ln_1"], lora_bias=True, init_lora_weights=False)
    pm = peft.get_peft_model(transformers.GPT2LMHeadModel.from_pretrained(paths["base"]), cfg)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "modules_to_save" in name or "lora_B" in name:
                p.add_(0.1 * torch.randn_like(p))
    pm.save_pretrained(tmp_path / "lora")
    adapter = read_adapter(tmp_path / "lora")
    assert adapter.bias_deltas and "transformer.h.0.ln_1.weight" in adapter.replaced
    merged = _merge_one_adapter(paths, tmp_path / "lora", tmp_path / "m")
    reference = _peft_merged(transformers.GPT2LMHeadModel, paths, tmp_path / "lora")
    for k, v in merged.items():
        torch.testing.assert_close(v, reference[k], rtol=0, atol=1e-6)
    assert not torch.equal(merged["transformer.h.1.ln_1.bias"], load_state_dict(paths["base"])["transformer.h.1.ln_1.bias"])


def test_lora_b_bias_without_lora_bias_is_left_out_as_peft_does(family, tmp_path):
    """mergekit 0.1.5 writes lora_B.bias for layers with a bias but never sets lora_bias; peft then loads no
    bias delta, and neither do we."""
    from theorylab.hf.lora_extract import extract_lora

    paths = family("gpt2")
    out = tmp_path / "a"
    extract_lora(paths["ft0"], paths["base"], out, rank=2)
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["lora_bias"]
    cfg_path.write_text(json.dumps(cfg | {"lora_bias": False}))
    adapter = read_adapter(out)
    assert not adapter.bias_deltas and adapter.ignored
    cfg = {"merge_method": "task_arithmetic", "base_model": str(paths["base"]),
           "models": [{"model": f"{paths['base']}+{out}", "parameters": {"weight": 1.0}}]}
    report = merge_checkpoints(parse_config(cfg), tmp_path / "m", progress=False)
    note = next(n for n in report.notes if "lora_B.bias" in n)  # the merge says what it left out
    assert f"{len(adapter.ignored)} lora_B.bias tensor(s) left out" in note and adapter.ignored[0] in note
    merged = load_state_dict(tmp_path / "m")
    reference = _peft_merged(transformers.GPT2LMHeadModel, paths, out)
    base = load_state_dict(paths["base"])
    for k, v in merged.items():
        torch.testing.assert_close(v, reference[k], rtol=0, atol=1e-6)
    assert torch.equal(merged["transformer.h.0.attn.c_attn.bias"], base["transformer.h.0.attn.c_attn.bias"])


def test_sv_epsilon_and_save_module(family, tmp_path):
    from theorylab.hf.lora_extract import extract_lora

    paths = family("llama")
    base, ft = load_state_dict(paths["base"]), load_state_dict(paths["ft0"])
    name = "model.layers.0.mlp.down_proj"
    s = torch.linalg.svdvals(ft[f"{name}.weight"] - base[f"{name}.weight"])
    eps = float((s[4] + s[5]) / 2)  # keeps 5 values of this matrix
    rep = extract_lora(paths["ft0"], paths["base"], tmp_path / "a", rank=8, sv_epsilon=eps, save_modules=["q_proj"])
    assert rep.ranks[name] == 5
    adapter = read_adapter(tmp_path / "a")
    assert "model.layers.0.self_attn.q_proj.weight" in adapter.replaced
    assert not any("q_proj" in k for k in adapter.factors)
    assert all(r <= 8 for r in rep.ranks.values())


@pytest.mark.parametrize("args, message", [
    (["--rank", "2", "--sv-epsilon", "-1"], "--sv-epsilon must be a finite number >= 0"),
    (["--rank", "2", "--save-module", "nonexistent"], "--save-module 'nonexistent' names no module"),
    (["--rank", "2", "--include", "("], "is not a valid regular expression"),
])
def test_extract_lora_bad_options_are_one_error_line(args, message, family, tmp_path):
    paths = family("llama")
    res = runner.invoke(_app(), ["extract-lora", str(paths["ft0"]), str(tmp_path / "o"), "--base", str(paths["base"]), *args])
    assert res.exit_code == 2 and message in " ".join(res.output.split()) and "Traceback" not in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_adapter_tensor_outside_modules_to_save_is_refused(family, tmp_path):
    import shutil

    paths = family("llama")
    bad = tmp_path / "bad"
    shutil.copytree(MERGEKIT_ADAPTER, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps(cfg | {"modules_to_save": ["embed_tokens"]}))
    with pytest.raises(ValueError, match="neither a LoRA factor nor part of a module in modules_to_save"):
        read_adapter(bad)
    cfg_file = tmp_path / "c.yml"
    cfg_file.write_text(yaml.safe_dump({"merge_method": "task_arithmetic", "base_model": str(paths["base"]),
                                        "models": [{"model": f"{paths['base']}+{bad}"}]}))
    res = runner.invoke(_app(), ["merge", str(cfg_file), str(tmp_path / "m"), "--no-progress"])
    assert res.exit_code == 2 and "modules_to_save" in res.output and not (tmp_path / "m").exists()


def test_extract_lora_refuses_a_rank_no_matrix_has_before_reading_a_tensor(family, tmp_path, monkeypatch):
    from theorylab.hf import lora_extract

    def no_reads(*_):
        raise AssertionError("a tensor was read before the rank was checked")

    monkeypatch.setattr(lora_extract._TaskVector, "read", no_reads)
    paths = family("llama")  # hidden 32: q/o 32 x 32, k/v 16 x 32, mlp 48 x 32 -> the largest allowed rank is 32
    res = runner.invoke(_app(), ["extract-lora", str(paths["ft0"]), str(tmp_path / "a"), "--base", str(paths["base"]),
                                 "--rank", "33"])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "--rank 33" in lines[0] and "the largest rank they allow is 32" in lines[0]
    assert not (tmp_path / "a").exists()


def test_extract_lora_caps_the_rank_per_matrix_and_says_so(family, tmp_path):
    paths = family("llama")
    res = runner.invoke(_app(), ["extract-lora", str(paths["ft0"]), str(tmp_path / "a"), "--base", str(paths["base"]),
                                 "--rank", "20"])
    assert res.exit_code == 0, res.output
    note = next(l for l in res.output.splitlines() if "--rank 20 is above" in l)
    assert "4 of 14 matrices" in note and "16" in note  # k_proj and v_proj of both layers are 16 x 32
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert cfg["r"] == 20 and all(r == 16 for r in cfg["rank_pattern"].values()) and len(cfg["rank_pattern"]) == 4
