import pytest
import torch

from theorylab.edit import TensorMerge, get_merge_method, merge, random_mask
from theorylab.edit.merge import MergeKnobs
from theorylab.edit.sparsify import task_seed


def _one(t):
    return {"layers.0.w": torch.tensor(t, dtype=torch.float32)}


BASE = _one([0.0, 0.0, 0.0, 0.0, 0.0])
T1 = _one([3.0, -1.0, 0.5, 2.0, 0.0])
T2 = _one([-2.0, -4.0, 0.1, 1.0, 1.0])
T3 = _one([-2.0, 1.0, 0.2, -0.5, 0.0])


def test_ties_hand_computed():
    # trim density 0.4 keeps 2 of 5 entries per task: T1 -> [3,0,0,2,0], T2 -> [-2,-4,0,0,0], T3 -> [-2,1,0,0,0]
    # elect sign of the sums [-1,-3,0,2,0] -> [-,-,+,+,+]; disjoint mean: [-2, -4, 0, 2, 0]
    out = get_merge_method("ties")(BASE, [T1, T2, T3], 1.0, density=0.4)
    assert out["layers.0.w"].tolist() == [-2.0, -4.0, 0.0, 2.0, 0.0]
    # lam scales the mixed delta; without normalize it is the disjoint sum: [-4, -4, 0, 2, 0]
    out = get_merge_method("ties")(BASE, [T1, T2, T3], 1.0, density=0.4, normalize=False, lam=0.5)
    assert out["layers.0.w"].tolist() == [-2.0, -2.0, 0.0, 1.0, 0.0]


def test_ties_count_consensus_and_weights_enter_before_election():
    # count: signs [+,-,-] -> majority -, entry 0 keeps the two negative values: mean -2
    out = merge(BASE, [T1, T2, T3], 1.0, sign_consensus="count", normalize=True)
    assert out["layers.0.w"][0].item() == -2.0
    # weighting T1 by 3 makes the sum 9-2-2 > 0: the positive value wins, divisor is 3 -> 9/3 = 3
    out = merge(BASE, [T1, T2, T3], [3.0, 1.0, 1.0], sign_consensus="sum", normalize=True)
    assert out["layers.0.w"][0].item() == 3.0


def test_dare_linear_equals_definition_and_is_unbiased():
    base = {"layers.0.w": torch.randn(64, 64)}
    tvs = [{"layers.0.w": torch.randn(64, 64)} for _ in range(2)]
    out = get_merge_method("dare_linear")(base, tvs, [0.7, 0.3], density=0.5, seed=9)["layers.0.w"]
    expected = base["layers.0.w"].clone()
    for t, (w, tv) in enumerate(zip([0.7, 0.3], tvs)):
        x = tv["layers.0.w"]
        kept = x * random_mask(x, 0.5, task_seed(9, t, "layers.0.w"))
        expected += w * kept * (x.abs().sum() / kept.abs().sum())  # mergekit's rescale: keep the L1 norm
    torch.testing.assert_close(out, expected)
    paper = get_merge_method("dare_linear")(base, tvs, [0.7, 0.3], density=0.5, seed=9, rescale_norm="density")
    expected = base["layers.0.w"] + sum(w * tv["layers.0.w"] * random_mask(tv["layers.0.w"], 0.5, task_seed(9, t, "layers.0.w")) / 0.5
                                        for t, (w, tv) in enumerate(zip([0.7, 0.3], tvs)))
    torch.testing.assert_close(paper["layers.0.w"], expected)
    mean = torch.stack([get_merge_method("dare_linear")(base, tvs, [0.7, 0.3], density=0.5, seed=s)["layers.0.w"]
                        for s in range(200)]).mean(0)
    ta = base["layers.0.w"] + 0.7 * tvs[0]["layers.0.w"] + 0.3 * tvs[1]["layers.0.w"]
    assert (mean - ta).abs().mean() < 0.1 * ta.abs().mean()


def test_dare_ties_elects_sign_on_rescaled_survivors():
    base = {"layers.0.w": torch.zeros(1000)}
    tvs = [{"layers.0.w": torch.ones(1000)}, {"layers.0.w": -torch.ones(1000) * 0.5}]
    out = get_merge_method("dare_ties")(base, tvs, 1.0, density=0.5, seed=1, rescale_norm="density")["layers.0.w"]
    k1 = random_mask(tvs[0]["layers.0.w"], 0.5, task_seed(1, 0, "layers.0.w"))
    k2 = random_mask(tvs[1]["layers.0.w"], 0.5, task_seed(1, 1, "layers.0.w"))
    # both kept: 2 vs -1 -> + wins, sum 2; only one kept: its value; none: 0
    expected = torch.where(k1, 2.0, 0.0) + torch.where(~k1 & k2, -1.0, 0.0)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_ties", "dare_linear", "magnitude_prune"])
def test_lambda_zero_and_weight_zero_give_base_bit_for_bit(method, base, make_state):
    from tests.edit.conftest import SHAPES
    tvs = [make_state(s, SHAPES) for s in (1, 2)]
    kw = {} if method == "task_arithmetic" else {"density": 0.3}
    for out in (get_merge_method(method)(base, tvs, 1.0, lam=0.0, **kw),
                get_merge_method(method)(base, tvs, 0.0, **kw)):
        assert all(torch.equal(out[k], base[k]) for k in base)


def test_per_layer_filters_and_gradients_select_values(base, make_state):
    from tests.edit.conftest import SHAPES
    tv = make_state(1, SHAPES)
    rules = [{"filter": "attn", "value": 0.0}, {"value": 2.0}]
    out = merge(base, [tv], rules)
    assert torch.equal(out["layers.0.attn.weight"], base["layers.0.attn.weight"])
    torch.testing.assert_close(out["layers.1.mlp.weight"], base["layers.1.mlp.weight"] + 2 * tv["layers.1.mlp.weight"])
    # gradient [0, 1] over 2 blocks: block 0 gets 0, block 1 gets 1, tensors outside blocks the first value
    out = merge(base, [tv], [[0.0, 1.0]])
    assert torch.equal(out["layers.0.attn.bias"], base["layers.0.attn.bias"])
    torch.testing.assert_close(out["layers.1.mlp.bias"], base["layers.1.mlp.bias"] + tv["layers.1.mlp.bias"])
    with pytest.raises(ValueError, match=r"weights\[0\].*emb.weight"):
        merge(base, [tv], [[{"filter": "layers", "value": 1.0}]])


def test_bad_inputs_are_refused_with_names(base, make_state):
    from tests.edit.conftest import SHAPES
    tv = make_state(1, SHAPES)
    with pytest.raises(ValueError, match="known: arcee_fusion, breadcrumbs, breadcrumbs_ties, dare_linear"):
        get_merge_method("slerpy")
    with pytest.raises(ValueError, match="outside the task-vector family.*mergekit"):
        get_merge_method("ram")
    with pytest.raises(ValueError, match="sparsify_method"):
        merge(base, [tv], 1.0, density=0.5)
    with pytest.raises(ValueError, match="density"):
        merge(base, [tv], 1.0, density=1.5, sparsify_method="magnitude")
    del tv["head.weight"]
    with pytest.raises(ValueError, match="head.weight"):
        merge(base, [tv], 1.0)


def test_chunked_tensor_merge_equals_whole():
    base = torch.randn(40, 7)
    deltas = [torch.randn(40, 7).round(decimals=1) for _ in range(3)]  # rounding creates magnitude ties
    knob_sets = (MergeKnobs("magnitude", "sum", True), MergeKnobs("random", "sum", False),
                 MergeKnobs("magnitude", rescale=True), MergeKnobs("random", rescale=True, rescale_norm="l2"),
                 MergeKnobs("magnitude_outliers", "count", rescale=True, rescale_norm="linf"),
                 MergeKnobs("della_magprune", "sum", True, rescale=True), MergeKnobs(coefficients="sce", sign_consensus="sum",
                                                                                   normalize=True),
                 MergeKnobs(coefficients="model_stock"))
    for knobs in knob_sets:
        def fresh():
            tm = TensorMerge("x", [1.0, 0.5, -0.7], [0.3, 0.6, 0.45], knobs, seed=4, gammas=[0.1, 0.05, 0.0],
                             epsilons=[0.1, 0.2, 0.1], select_topk=0.5)
            if tm.needs_stats:
                tm.prepare(lambda: ((a * 7, [d[a:a + 13] for d in deltas]) for a in range(0, 40, 13)))
            return tm
        whole = fresh().chunk(base, deltas)
        tm = fresh()
        parts = [tm.chunk(base[a:a + 13], [d[a:a + 13] for d in deltas], offset=a * 7) for a in range(0, 40, 13)]
        assert torch.equal(torch.cat(parts), whole)


@pytest.mark.parametrize("method", ["ties", "dare_ties", "dare_linear", "task_arithmetic"])
def test_model_axis_merge_equals_per_model_merges_stacked(method):
    E = 3
    g = torch.Generator().manual_seed(0)
    shapes = {"layers.0.W": (5, 4), "layers.0.b": (5,)}
    base = {k: torch.randn(E, *s, generator=g) for k, s in shapes.items()}
    tvs = [{k: torch.randn(E, *s, generator=g) for k, s in shapes.items()} for _ in range(2)]
    seeds = torch.tensor([1, 2, 3])
    w2 = torch.tensor([0.5, 1.0, -1.0])  # per-model coefficient for task 2 (a sweep over lambda)
    kw = {} if method == "task_arithmetic" else {"density": 0.5}
    ens = get_merge_method(method)(base, tvs, [1.0, w2], seed=seeds, model_axis=True, **kw)
    for e in range(E):
        one = get_merge_method(method)({k: v[e] for k, v in base.items()}, [{k: v[e] for k, v in tv.items()} for tv in tvs],
                                       [1.0, float(w2[e])], seed=int(seeds[e]), **kw)
        for k in shapes:
            torch.testing.assert_close(ens[k][e], one[k], rtol=0, atol=1e-6)
