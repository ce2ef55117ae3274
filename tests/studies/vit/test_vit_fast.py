"""The ViT speed path (model.Layer through forward_fast; training(fast=True), the default) equals the plain one
(model.forward; training(fast=False)): the forward and every weight's gradient (float64 tight, float32 within 1e-5
relative), with and without token sparsification, and a few training steps (weights and curves)."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.study import get_study
from theorylab.studies.vit.data import synthetic
from theorylab.studies.vit.model import forward, forward_fast, init_params, keep_mask
from theorylab.studies.vit.train import training

CPU = torch.device("cpu")
F32 = 1e-5  # relative, float32


def _rel(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.detach(), y.detach()
    return float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))


def _setup(over, dtype, device=CPU):
    s = get_study("vit")
    cfgs = s.seed_configs("quick", 3, **{**s.tiny, **over})
    rng = rng_for(cfgs, device)
    p = init_params(cfgs, rng, device)
    # away from the near-identity start, so the attention and the ReLU mask are not trivial
    p = {k: (v + 0.3 * rng.normal(tuple(v.shape[1:]), "perturb", k).to(device) if k != "a" else v).to(dtype)
         for k, v in p.items()}
    b = synthetic(cfgs, rng, 8, "fast")
    b.X = b.X.to(dtype)
    keep = keep_mask(p, b, cfgs, rng, "fast")
    return {k: v.requires_grad_() for k, v in p.items()}, b.X, b.y.to(dtype), keep


@pytest.mark.parametrize("over", [{}, {"sparsify": "random"}, {"sparsify": "attention", "m": 64}, {"sparsify": "norm"}])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, F32)])
def test_forward_fast_and_its_gradient_equal_forward(over, dtype, tol):
    p, X, y, keep = _setup(over, dtype)
    F, F_fast = forward(p, X, keep), forward_fast(p, X, keep)
    assert F_fast.dtype == dtype and _rel(F_fast, F) < tol
    # a hinge-like upstream gradient (a different weight per example), through every weight, a included
    g = torch.autograd.grad((F * y).sum(), list(p.values()))
    g_fast = torch.autograd.grad((F_fast * y).sum(), list(p.values()))
    for name, a, b in zip(p, g_fast, g):
        assert _rel(a, b) < tol, name


@pytest.mark.parametrize("over", [{}, {"n_train": 8}, {"sparsify": "random", "n_train": 8},
                                  {"data": "digits", "n_train": 16}])
def test_training_fast_equals_plain(over):
    s = get_study("vit")
    cfgs = s.seed_configs("quick", 3, **{**s.tiny, "steps": 6, **over})
    out = {}
    for fast in (False, True):
        tr = training(cfgs, rng_for(cfgs, CPU), CPU, fast=fast)
        out[fast] = tr.train()
    plain, fast = out[False], out[True]
    for k in plain.params:
        assert _rel(fast.params[k], plain.params[k]) < F32, k
    # the loss and error curves: the errors are counts, equal; the losses within float32 rounding
    assert torch.equal(fast.curves["error"], plain.curves["error"])
    assert _rel(fast.curves["loss"], plain.curves["loss"]) < F32


@pytest.mark.gpu
def test_cuda_forward_fast_equals_forward():
    dev = torch.device("cuda")
    p, X, y, keep = _setup({"sparsify": "random"}, torch.float32, dev)
    F, F_fast = forward(p, X, keep), forward_fast(p, X, keep)
    assert _rel(F_fast, F) < F32
    g = torch.autograd.grad((F * y).sum(), list(p.values()))
    g_fast = torch.autograd.grad((F_fast * y).sum(), list(p.values()))
    assert all(_rel(a, b) < F32 for a, b in zip(g_fast, g))
