"""LwPTV from a merge YAML (parameters.lwptv): the streaming scores and masks equal the in-memory ones,
and the merged checkpoint equals the in-memory merge of the masked task vectors."""
import pytest
import torch

import theorylab.edit as E
from theorylab.hf import load_state_dict, merge_checkpoints, parse_config
from theorylab.hf.checkpoint import CheckpointReader
from theorylab.hf.config import ConfigError
from theorylab.hf.lwptv import checkpoint_masks
from tests.hf.test_merge_cli import _config, _run_merge


def _loaded(paths):
    base = load_state_dict(paths["base"])
    return base, [E.TaskVector(base, load_state_dict(paths[f"ft{t}"])).vector for t in range(2)]


@pytest.mark.parametrize("score", ["salient_mass", "relative_update", "cross_task"])
def test_streaming_scores_and_masks_equal_in_memory(score, family):
    paths = family("gpt2")
    base, tvs = _loaded(paths)
    ref = E.lwptv_masks(tvs, base, 0.5, score=score)
    readers = [CheckpointReader(paths[k]) for k in ("base", "ft0", "ft1")]
    try:
        got = checkpoint_masks(readers[0], readers[1:], score=score, ratio=0.5, layer_pattern=E.DEFAULT_LAYER_PATTERN,
                               chunk_elems=53)  # tiny row blocks: many chunks per tensor
    finally:
        for r in readers:
            r.close()
    assert got.layers == ref.layers and got.groups == ref.groups
    torch.testing.assert_close(got.scores, ref.scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.keep, ref.keep)


@pytest.mark.parametrize("method,score", [("task_arithmetic", "relative_update"), ("ties", "salient_mass"),
                                          ("dare_ties", "cross_task")])
def test_lwptv_merge_from_yaml_equals_in_memory_masked_merge(method, score, family, tmp_path):
    paths = family("llama")
    lwptv = {"ratio": 0.5, "score": score}
    density = None if method == "task_arithmetic" else 0.5
    cfg = _config(paths, method, density=density, seed=3, lwptv=lwptv)
    report = merge_checkpoints(parse_config(cfg), tmp_path / "m", progress=False, chunk_elems=41)
    merged = load_state_dict(tmp_path / "m")
    base, tvs = _loaded(paths)
    masks = E.lwptv_masks(tvs, base, 0.5, score=score)
    ref = E.get_merge_method(method)(base, E.apply_layer_masks(tvs, masks), [1.0, 0.5], density=density, seed=3)
    for k in base:
        torch.testing.assert_close(merged[k], ref[k], rtol=0, atol=0)
    assert [masks.pruned_layers(t) for t in range(2)] == list(report.lwptv_pruned.values())
    assert any("LwPTV" in n for n in report.notes)


def test_global_mode_keeps_the_base_where_every_task_prunes(family, tmp_path):
    paths = family("bert")
    cfg = _config(paths, "task_arithmetic", density=None, lwptv={"ratio": 0.5, "mode": "global", "score": "relative_update"})
    merge_checkpoints(parse_config(cfg), tmp_path / "m", progress=False)
    merged, (base, tvs) = load_state_dict(tmp_path / "m"), _loaded(paths)
    masks = E.lwptv_masks(tvs, base, 0.5, score="relative_update", mode="global")
    pruned_everywhere = [l for l in masks.layers if not masks.keep[:, masks.layers.index(l)].any()]
    for layer in pruned_everywhere:
        for name in masks.groups[layer]:
            assert torch.equal(merged[name], base[name]), name
    unmasked = E.get_merge_method("task_arithmetic")(base, tvs, [1.0, 0.5])
    changed = [n for n in base if base[n].is_floating_point() and not torch.equal(merged[n], unmasked[n])]
    assert sorted({E.layer_index(n) for n in changed}) == sorted(pruned_everywhere)


@pytest.mark.parametrize("lwptv,message", [({"ratio": 1.5}, "parameters.lwptv.ratio"),
                                           ({"score": "fisher"}, "parameters.lwptv.score"),
                                           ({"top_k": 0}, "parameters.lwptv.top_k"),
                                           ({"ratios": 0.2}, "parameters.lwptv.ratios")])
def test_bad_lwptv_parameters_name_the_field(lwptv, message, family, tmp_path):
    paths = family("gpt2")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(_config(paths, "ties", lwptv=lwptv))
    res, out = _run_merge(tmp_path, _config(paths, "ties", lwptv=lwptv))
    assert res.exit_code == 2 and message in res.output and not out.exists()
