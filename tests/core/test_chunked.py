"""core.chunked: a loss computed a few models at a time equals the whole-ensemble loss and gradient bit for bit,
its slices never hold one model, and a model whose loss gets no gradient gets exactly zero."""
import pytest
import torch

from theorylab.core.chunked import chunked_loss, model_slices


def _toy_loss(X, y):
    """A per-model loss with a batched matrix-vector product (the op that rounds differently for a batch of one)."""
    def loss_of(p, models):
        h = torch.relu(torch.einsum("emd,ebd->ebm", p["W"], X[models]))
        out = torch.einsum("ebm,em->eb", h, p["a"])
        return {"loss": ((out - y[models]) ** 2).mean(-1), "mean_out": out.mean(-1).detach()}
    return loss_of


def _grads(loss: torch.Tensor, params: dict) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss.sum(), list(params.values())))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_equal_to_the_whole_ensemble_bit_for_bit(chunk):
    torch.manual_seed(0)
    E = 7
    X, y = torch.randn(E, 32, 20), torch.randn(E, 32)
    params = {"W": torch.randn(E, 50, 20, requires_grad=True), "a": torch.randn(E, 50, requires_grad=True)}
    loss_of = _toy_loss(X, y)
    whole = loss_of(params, slice(0, E))
    sliced = chunked_loss(loss_of, params, E, chunk)
    assert torch.equal(whole["loss"], sliced["loss"]) and torch.equal(whole["mean_out"], sliced["mean_out"])
    for g, h in zip(_grads(whole["loss"], params), _grads(sliced["loss"], params)):
        assert torch.equal(g, h)


def test_slices_cover_the_models_and_never_hold_one():
    for models in range(1, 40):
        for chunk in (1, 2, 3, 5, 64):
            s = model_slices(models, chunk)
            assert s[0].start == 0 and s[-1].stop == models
            assert all(a.stop == b.start for a, b in zip(s, s[1:]))
            assert all(x.stop - x.start >= 2 for x in s) or models == 1


def test_weighted_and_zeroed_gradient():
    """The incoming gradient scales each model's slice; a model given none gets 0 even with a NaN loss."""
    torch.manual_seed(1)
    E = 4
    X, y = torch.randn(E, 8, 5), torch.randn(E, 8)
    X[2, 0, 0] = float("nan")
    params = {"W": torch.randn(E, 6, 5, requires_grad=True), "a": torch.randn(E, 6, requires_grad=True)}
    out = chunked_loss(_toy_loss(X, y), params, E, 2)
    w = torch.tensor([1.0, 0.5, 0.0, 2.0])
    finite = torch.isfinite(out["loss"])
    gW, ga = torch.autograd.grad((torch.where(finite, out["loss"], 0.0) * w).sum(), [params["W"], params["a"]])
    assert not bool(finite[2]) and bool((gW[2] == 0).all()) and bool((ga[2] == 0).all())
    ref = _toy_loss(X, y)(params, slice(0, E))["loss"]
    rW, ra = torch.autograd.grad((torch.where(finite, ref, 0.0) * w).sum(), [params["W"], params["a"]])
    rest = [0, 1, 3]  # the plain path gives model 2 NaN (0 x NaN down the chain); the trainer freezes it either way
    assert torch.allclose(gW[rest], rW[rest], rtol=1e-6, atol=0) and torch.allclose(ga[rest], ra[rest], rtol=1e-6, atol=0)


def test_without_gradients_it_only_slices():
    torch.manual_seed(2)
    E = 5
    X, y = torch.randn(E, 8, 5), torch.randn(E, 8)
    params = {"W": torch.randn(E, 6, 5), "a": torch.randn(E, 6)}
    with torch.no_grad():
        out = chunked_loss(_toy_loss(X, y), params, E, 2)
    assert not out["loss"].requires_grad
    assert torch.equal(out["loss"], _toy_loss(X, y)(params, slice(0, E))["loss"])
