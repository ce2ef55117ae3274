import pytest
import torch

from theorylab.edit import kept_rank, low_rank, low_rank_state, prune_rows, prune_rows_state, row_keep_mask


def test_low_rank_matches_eckart_young():
    m = torch.randn(12, 9, dtype=torch.float64)
    s = torch.linalg.svdvals(m)
    for r in (0, 1, 4, 9):
        approx = low_rank(m, rank=r)
        assert torch.linalg.matrix_rank(approx.double(), atol=1e-6) == r
        err = (m - approx.double()).norm()
        torch.testing.assert_close(err, s[r:].pow(2).sum().sqrt(), rtol=1e-4, atol=1e-4)


def test_energy_keeps_fewest_values_reaching_the_fraction():
    u, _ = torch.linalg.qr(torch.randn(6, 6))
    v, _ = torch.linalg.qr(torch.randn(5, 5))
    s = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1])
    m = u[:, :5] @ torch.diag(s) @ v.T
    total = s.pow(2).sum()
    assert int(kept_rank(m, 0.5)) == 1  # 9 / 14.26 = 0.63 >= 0.5
    assert int(kept_rank(m, (9 + 4) / total.item() - 1e-4)) == 2
    assert int(kept_rank(m, 0.999)) == 4
    torch.testing.assert_close(low_rank(m, energy=0.5), low_rank(m, rank=1), atol=1e-5, rtol=0)


def test_vectors_stay_dense_and_conv_kernels_keep_shape():
    state = {"b": torch.randn(7), "conv": torch.randn(4, 3, 2, 2)}
    out = low_rank_state(state, rank=1)
    assert torch.equal(out["b"], state["b"])
    assert out["conv"].shape == (4, 3, 2, 2)
    assert torch.linalg.matrix_rank(out["conv"].reshape(4, -1)) == 1


def test_low_rank_model_axis_equals_per_model():
    x = torch.randn(3, 8, 6)
    x[1] = x[1, :, :1] @ torch.randn(1, 6)  # model 1 is rank 1, so energy keeps a different rank per model
    for kw in ({"rank": 2}, {"energy": 0.9}):
        ens = low_rank(x, model_axis=True, **kw)
        torch.testing.assert_close(ens, torch.stack([low_rank(x[e], **kw) for e in range(3)]), atol=1e-5, rtol=0)
    ranks = kept_rank(x, 0.9, model_axis=True)
    assert ranks[1] == 1 and ranks[0] > 1


def test_prune_rows_smallest_largest_random():
    norms = torch.tensor([5.0, 0.1, 3.0, 0.2, 4.0, 0.3, 2.0, 1.0, 0.4, 6.0])
    m = norms[:, None] * torch.nn.functional.normalize(torch.randn(10, 4), dim=1)
    small = prune_rows(m, 0.3, "smallest")
    assert (small.norm(dim=1) == 0).nonzero().flatten().tolist() == [1, 3, 5]
    large = prune_rows(m, 0.2, "largest")
    assert (large.norm(dim=1) == 0).nonzero().flatten().tolist() == [0, 9]
    r1, r2 = row_keep_mask(m, 0.5, "random", seed=1), row_keep_mask(m, 0.5, "random", seed=2)
    assert int((~r1).sum()) == 5 and not torch.equal(r1, r2)
    assert torch.equal(r1, row_keep_mask(m, 0.5, "random", seed=1))


def test_prune_rows_model_axis_equals_per_model():
    x = torch.randn(4, 10, 3)
    seeds = torch.tensor([5, 6, 7, 8])
    for which in ("smallest", "largest", "random"):
        ens = prune_rows(x, 0.4, which, seed=seeds, model_axis=True)
        one = torch.stack([prune_rows(x[e], 0.4, which, seed=int(seeds[e])) for e in range(4)])
        assert torch.equal(ens, one)


def test_prune_rows_state_chooses_matrices_and_refuses_typos():
    state = {"layers.0.V": torch.randn(8, 4), "layers.0.W": torch.randn(4, 4)}
    out = prune_rows_state(state, "V", 0.5)
    assert int((out["layers.0.V"].norm(dim=1) == 0).sum()) == 4
    assert torch.equal(out["layers.0.W"], state["layers.0.W"])
    with pytest.raises(ValueError, match="match no tensor"):
        prune_rows_state(state, "Vv", 0.5)
