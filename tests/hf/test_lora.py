"""extract-lora round-trips through peft; LoRA adapters are task vectors in a merge YAML."""
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
