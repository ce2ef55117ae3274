import functools

import torch

from theorylab.edit import apply_layer_masks, get_merge_method, lwptv_masks, salient_mass


def _model(L=4, seed=0, E=None):
    g = torch.Generator().manual_seed(seed)
    lead = () if E is None else (E,)
    sd = {"embed.weight": torch.randn(*lead, 6, 4, generator=g)}
    for l in range(L):
        sd[f"model.layers.{l}.mlp.weight"] = torch.randn(*lead, 4, 4, generator=g)
        sd[f"model.layers.{l}.norm.weight"] = torch.ones(*lead, 4)
    return sd


def _task(base, scale_per_layer, seed, E=None):
    g = torch.Generator().manual_seed(seed)
    tv = {}
    for k, v in base.items():
        layer = int(k.split(".")[2]) if "layers" in k else None
        s = 1.0 if layer is None else scale_per_layer[layer]
        tv[k] = s * torch.randn(v.shape, generator=g)
    return tv


def test_salient_mass_prunes_layers_with_small_updates_and_merge_keeps_base_there():
    base = _model()
    t1 = _task(base, [1.0, 0.01, 1.0, 1.0], 1)  # block 1 is redundant for task 1
    t2 = _task(base, [1.0, 1.0, 1.0, 0.01], 2)  # block 3 for task 2
    masks = lwptv_masks([t1, t2], base, ratio=0.25)
    assert masks.pruned_layers(0) == [1] and masks.pruned_layers(1) == [3]
    assert int((~masks.keep).sum()) == 2  # floor(0.25 * 4) per task
    masked = apply_layer_masks([t1, t2], masks)
    out = get_merge_method("task_arithmetic")(base, masked, 1.0)
    # block 1 carries only task 2's update, block 3 only task 1's
    torch.testing.assert_close(out["model.layers.1.mlp.weight"], base["model.layers.1.mlp.weight"] + t2["model.layers.1.mlp.weight"])
    torch.testing.assert_close(out["model.layers.3.mlp.weight"], base["model.layers.3.mlp.weight"] + t1["model.layers.3.mlp.weight"])
    # global mode: a block pruned by every task is exactly the pre-trained block, whatever the merge method
    both = lwptv_masks([t1, t1], base, ratio=0.25, mode="global")
    for method, kw in (("ties", {"density": 0.5}), ("dare_ties", {"density": 0.5}), ("task_arithmetic", {})):
        plain = get_merge_method(method)(base, [t1, t1], 1.0, **kw)
        out = get_merge_method(method)(base, apply_layer_masks([t1, t1], both), 1.0, **kw)
        assert torch.equal(out["model.layers.1.mlp.weight"], base["model.layers.1.mlp.weight"])
        assert not torch.equal(out["model.layers.0.mlp.weight"], base["model.layers.0.mlp.weight"])
        assert torch.equal(out["embed.weight"], plain["embed.weight"])  # outside blocks: never masked


def test_relative_update_cross_task_threshold_and_custom_score():
    base = _model()
    t1 = _task(base, [1.0, 1.0, 0.02, 1.0], 1)
    t2 = _task(base, [1.0, 1.0, 1.0, 1.0], 2)
    assert lwptv_masks([t1, t2], base, ratio=0.25, score="relative_update").pruned_layers(0) == [2]
    t3 = {k: v.clone() for k, v in t1.items()}
    t3["model.layers.0.mlp.weight"] = t2["model.layers.0.mlp.weight"].clone()
    t3["model.layers.0.norm.weight"] = t2["model.layers.0.norm.weight"].clone()
    # block 0 of t2 and t3 is the same update: cross-task redundancy prunes it for both
    m = lwptv_masks([t2, t3], base, ratio=0.25, score="cross_task")
    assert m.pruned_layers(0) == [0] and m.pruned_layers(1) == [0]
    custom = lwptv_masks([t1, t2], base, threshold=0.5, score=lambda tvs, b, groups, ma: torch.tensor([[0.0, 1, 1, 1], [1.0, 1, 1, 0]]))
    assert custom.pruned_layers(0) == [0] and custom.pruned_layers(1) == [3]
    top5 = functools.partial(salient_mass, top_k=0.05)
    assert lwptv_masks([t1, t2], base, ratio=0.25, score=top5).scores.shape == (2, 4)


def test_model_axis_masks_equal_per_model():
    E = 3
    base = _model(E=E)
    t1 = _task(base, [1.0, 0.05, 1.0, 0.5], 1)
    t2 = _task(base, [0.3, 1.0, 0.05, 1.0], 2)
    for k in ("model.layers.1.mlp.weight", "model.layers.1.norm.weight"):
        t1[k][1] *= 100  # model 1 of task 1 has a salient block 1, so its least salient block is 3
    ens = lwptv_masks([t1, t2], base, ratio=0.25, model_axis=True)
    assert ens.keep.shape == (2, 4, E)
    masked = apply_layer_masks([t1, t2], ens, model_axis=True)
    for e in range(E):
        pick = lambda sd: {k: v[e] for k, v in sd.items()}
        one = lwptv_masks([pick(t1), pick(t2)], pick(base), ratio=0.25)
        assert torch.equal(ens.keep[..., e], one.keep)
        torch.testing.assert_close(ens.scores[..., e], one.scores)
        per = apply_layer_masks([pick(t1), pick(t2)], one)
        for k in base:
            assert torch.equal(masked[0][k][e], per[0][k])
    assert ens.pruned_layers(0, model=1) == [3] and ens.pruned_layers(0, model=0) == [1]
