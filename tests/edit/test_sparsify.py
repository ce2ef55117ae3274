import pytest
import torch

from theorylab.edit import magnitude_mask, magnitude_rule, random_mask, sparsify, topk_mask
from theorylab.edit.sparsify import magnitude_rule_chunked


@pytest.mark.parametrize("density", [0.0, 0.1, 0.29, 0.5, 0.77, 1.0])
def test_topk_keeps_exact_count(density):
    x = torch.randn(37, 11)
    keep = topk_mask(x, density)
    assert int(keep.sum()) == int(density * x.numel() + 1e-6)
    if 0 < density < 1:  # every kept entry is at least as large as every dropped one
        assert x.abs()[keep].min() >= x.abs()[~keep].max()


def test_topk_exact_count_with_ties_and_chunking_invariance():
    x = torch.tensor([[1.0, -1.0, 1.0, 2.0], [1.0, 1.0, -3.0, 1.0]])  # many ties at |x| = 1
    rule = magnitude_rule(x, 0.5)
    whole, _ = magnitude_mask(x, rule)
    assert int(whole.sum()) == 4
    # tie-break is by flat position: 3.0, 2.0, then the first two ones
    assert whole.tolist() == [[True, True, False, True], [False, False, True, False]]
    seen = None
    parts = []
    for rows in (x[:1], x[1:]):
        m, seen = magnitude_mask(rows, rule, ties_seen=seen)
        parts.append(m)
    assert torch.equal(torch.cat(parts), whole)


def test_random_mask_is_seeded_chunk_invariant_and_near_density():
    x = torch.randn(200, 50)
    m1, m2, m3 = random_mask(x, 0.3, 7), random_mask(x, 0.3, 7), random_mask(x, 0.3, 8)
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)
    assert abs(m1.float().mean().item() - 0.3) < 0.02
    chunks = torch.cat([random_mask(x[:120], 0.3, 7), random_mask(x[120:], 0.3, 7, offset=120 * 50)])
    assert torch.equal(chunks, m1)


def test_dare_rescale_divides_survivors_by_density_and_is_unbiased():
    x = torch.randn(300, 300)
    out = sparsify(x, 0.25, "random", seed=3)
    keep = out != 0
    torch.testing.assert_close(out[keep], x[keep] / 0.25)
    assert (out.sum() - x.sum()).abs() < 0.1 * x.abs().sum()
    assert torch.equal(sparsify(x, 0.25, "magnitude"), x * topk_mask(x, 0.25))  # magnitude: no rescale


def test_model_axis_equals_per_model_results_stacked():
    E = 4
    x = torch.randn(E, 9, 5)
    seeds = torch.tensor([3, 11, 5, 42])
    top = topk_mask(x, 0.3, model_axis=True)
    rnd = random_mask(x, 0.4, seeds, model_axis=True)
    assert torch.equal(top, torch.stack([topk_mask(x[e], 0.3) for e in range(E)]))
    assert torch.equal(rnd, torch.stack([random_mask(x[e], 0.4, int(seeds[e])) for e in range(E)]))
    assert (top.reshape(E, -1).sum(1) == int(0.3 * 45)).all()


def test_bad_density_names_the_field():
    with pytest.raises(ValueError, match=r"density must be in \[0.0, 1.0\]"):
        topk_mask(torch.randn(3), 1.5)


@pytest.mark.parametrize("density", [0.0, 0.01, 0.2, 0.5, 0.999, 1.0])
def test_chunked_histogram_rule_equals_kthvalue_rule(density):
    x = torch.randn(300, 17)
    x[:50] = 0.0  # a block of exact ties (a frozen part of a model)
    x[60:70] = 0.25
    whole = magnitude_rule(x, density)
    chunked = magnitude_rule_chunked(lambda: (x[a:a + 64] for a in range(0, 300, 64)), density)
    assert torch.equal(whole.threshold, chunked.threshold) and torch.equal(whole.tie_quota, chunked.tie_quota)
    assert int(magnitude_mask(x, chunked)[0].sum()) == int(density * x.numel() + 1e-6)
