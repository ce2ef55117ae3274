"""The task-vector family beyond TIES/DARE, against hand-computed tensors and definitions."""
import math

import pytest
import torch

from theorylab.edit import get_merge_method, merge
from theorylab.edit.sparsify import della_keep_probability


def _one(values):
    return {"layers.0.w": torch.tensor(values, dtype=torch.float64)}


ZERO4 = _one([0.0, 0.0, 0.0, 0.0])


def test_breadcrumbs_drops_outliers_and_small_entries():
    # n=10, density 0.5 keeps 5, gamma 0.1 drops the 1 largest first: |x| ranks 5..9 survive
    x = _one([1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0, 9.0, -10.0])
    out = get_merge_method("breadcrumbs")(_one([0.0] * 10), [x], 1.0, density=0.5, gamma=0.1)["layers.0.w"]
    assert out.tolist() == [0.0, 0.0, 0.0, 0.0, 5.0, -6.0, 7.0, -8.0, 9.0, 0.0]
    # rescale (L1): the 5 kept entries carry the L1 norm of all 10 (55 / 35)
    out = get_merge_method("breadcrumbs")(_one([0.0] * 10), [x], 1.0, density=0.5, gamma=0.1, rescale=True)["layers.0.w"]
    torch.testing.assert_close(out.abs().sum(), torch.tensor(55.0, dtype=torch.float64))


def test_ties_rescale_keeps_the_l1_norm_of_the_untrimmed_delta():
    x = _one([4.0, -1.0, 0.5, 2.0])  # density 0.5 keeps 4 and 2 (L1 6 of 7.5)
    out = get_merge_method("ties")(ZERO4, [x], 1.0, density=0.5, rescale=True)["layers.0.w"]
    torch.testing.assert_close(out, torch.tensor([4.0, 0.0, 0.0, 2.0], dtype=torch.float64) * 7.5 / 6)
    # at least one entry survives any positive density (mergekit's rule): 0.1 * 4 = 0.4 -> 1 entry
    out = get_merge_method("ties")(ZERO4, [x], 1.0, density=0.1)["layers.0.w"]
    assert out.tolist() == [4.0, 0.0, 0.0, 0.0]


def test_della_keep_probability_rises_with_rank_in_each_row():
    p = della_keep_probability(torch.tensor([[0.1, -0.3, 0.2], [5.0, 1.0, 3.0]]), 0.5, 0.1)
    torch.testing.assert_close(p, torch.tensor([[0.4, 0.6, 0.5], [0.6, 0.4, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(della_keep_probability(torch.tensor([2.0, 1.0]), 0.5, 0.1),
                               torch.tensor([0.6, 0.4], dtype=torch.float64))


def test_della_linear_keeps_by_rank_and_preserves_l1():
    g = torch.Generator().manual_seed(0)
    tau = {"layers.0.w": torch.randn(400, 50, generator=g)}
    base = {"layers.0.w": torch.zeros(400, 50)}
    out = get_merge_method("della_linear")(base, [tau], 1.0, density=0.4, epsilon=0.2, seed=3)["layers.0.w"]
    kept = out != 0
    rank = tau["layers.0.w"].abs().argsort(1).argsort(1)  # 0 = smallest in its row
    for lo, hi in ((0, 10), (40, 50)):  # bottom and top fifth of each row
        rate = kept[(rank >= lo) & (rank < hi)].float().mean().item()
        expected = 0.4 - 0.2 + 0.4 * ((lo + hi - 1) / 2) / 49
        assert abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / 4000), (lo, rate, expected)
    torch.testing.assert_close(out.abs().sum(), tau["layers.0.w"].abs().sum())


def test_sce_hand_computed():
    t1, t2 = _one([1.0, 2.0, 0.0, -1.0]), _one([3.0, -2.0, 0.0, -1.0])
    # all entries: energies 1.5 and 3.5 -> coefficients 0.3 / 0.7; entry 1 sums to 0 -> + elected
    out = get_merge_method("sce")(ZERO4, [t1, t2])["layers.0.w"]
    torch.testing.assert_close(out, torch.tensor([2.4, 2.0, 0.0, -1.0], dtype=torch.float64))
    # select_topk 0.5: variances [1, 4, 0, 0], 2 nonzero -> keep entry 1 only; energies equal
    out = get_merge_method("sce")(ZERO4, [t1, t2], select_topk=0.5)["layers.0.w"]
    torch.testing.assert_close(out, torch.tensor([0.0, 2.0, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("a, b, t", [([1.0, 0.0], [0.0, 1.0], 0.0), ([1.0, 1.0], [2.0, 2.0], 1.0),
                                     ([1.0, 0.0], [1.0, 1.0], 2 * 0.5**0.5 / (1 + 0.5**0.5))])
def test_model_stock_interpolates_by_cosine(a, b, t):
    base = _one([0.5, -0.5])
    out = get_merge_method("model_stock")(base, [_one(a), _one(b)])["layers.0.w"]
    expected = base["layers.0.w"] + t * (torch.tensor(a) + torch.tensor(b)).double() / 2
    torch.testing.assert_close(out, expected)


def test_model_stock_filter_wise_uses_one_factor_per_row():
    base = {"layers.0.w": torch.zeros(2, 2, dtype=torch.float64)}
    a = {"layers.0.w": torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)}
    b = {"layers.0.w": torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)}
    out = get_merge_method("model_stock")(base, [a, b], filter_wise=True)["layers.0.w"]
    # row 0 orthogonal -> stays at the base; row 1 identical -> the mean
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64))


def test_linear_is_a_weighted_average_of_models():
    base, t1, t2 = _one([1.0, 2.0, 3.0, 4.0]), _one([1.0, 0.0, -1.0, 0.0]), _one([0.0, 2.0, 0.0, 2.0])
    models = [ZERO4, t1, t2]  # the base listed as a model: a zero delta that still takes part in the average
    out = get_merge_method("linear")(base, models, [1.0, 2.0, 1.0])["layers.0.w"]
    b = base["layers.0.w"]
    torch.testing.assert_close(out, (b + 2 * (b + t1["layers.0.w"]) + (b + t2["layers.0.w"])) / 4)
    out = get_merge_method("linear")(base, models, [1.0, 2.0, 1.0], normalize=False)["layers.0.w"]
    torch.testing.assert_close(out, b + 2 * (b + t1["layers.0.w"]) + (b + t2["layers.0.w"]))


def test_della_epsilon_out_of_range_is_refused_naming_the_fields():
    with pytest.raises(ValueError, match=r"epsilon: density - epsilon and density \+ epsilon must lie in \(0, 1\)"):
        merge(ZERO4, [ZERO4], 1.0, density=0.2, epsilon=0.3, sparsify_method="della_magprune")
