"""The speed path of the group-imbalance step (issue 26): model.TrainLoss (one autograd node in the GEMM-friendly
layout) equals the plain cross_entropy(forward(...)) on the loss and its gradient, including where H is clamped,
and a few GD steps through core's trainer give the same weights and curves on both paths."""
import torch

from theorylab.core.ensemble import rng_for
from theorylab.studies.group_imbalance.config import GroupImbalanceConfig
from theorylab.studies.group_imbalance.model import TrainLoss, cross_entropy, forward
from theorylab.studies.group_imbalance.train import training

CPU = torch.device("cpu")


def test_train_loss_equals_the_plain_loss_and_gradient_in_float64():
    g = torch.Generator().manual_seed(0)
    E, n, D, K = 3, 40, 5, 3
    X = torch.randn(E, n, D, generator=g, dtype=torch.float64)
    X[0, :5] *= 40  # large inputs: H saturates, so the clamp's zero-gradient region is exercised
    y = (torch.rand(E, n, generator=g) < 0.5).double()
    W = torch.randn(E, D, K, generator=g, dtype=torch.float64)
    W[0] = W[0, :, :1] + 0.01 * W[0]  # model 0's neurons nearly agree, so all K saturate together
    W.requires_grad_(True)
    plain = cross_entropy(forward({"W": W}, X), y)
    fast = TrainLoss.apply(W, X.transpose(1, 2).contiguous(), y)
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=0)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    g_plain, = torch.autograd.grad((plain * w).sum(), W)
    g_fast, = torch.autograd.grad((fast * w).sum(), W)
    torch.testing.assert_close(g_fast, g_plain, rtol=1e-12, atol=1e-15)
    clamped = forward({"W": W}, X)
    assert bool(((clamped < 1e-7) | (clamped > 1 - 1e-7)).any())  # the clamp did act on this data


def test_fast_training_equals_the_plain_one_over_gd_steps():
    cfgs = [GroupImbalanceConfig(seed=s, N=200, steps=40, curve_points=4, sigma1=2.0 * s + 0.5) for s in range(3)]
    out = []
    for fast in (True, False):
        tr = training(cfgs, rng_for(cfgs, CPU), CPU, fast=fast)
        out.append(tr.train(probes=False))
    fast, plain = out
    torch.testing.assert_close(fast.params["W"], plain.params["W"], rtol=1e-5, atol=1e-6)
    assert fast.curves.keys() == plain.curves.keys() == {"loss", "rel_err"}
    for k in fast.curves:
        torch.testing.assert_close(fast.curves[k], plain.curves[k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(plain.params["W"], training(cfgs, rng_for(cfgs, CPU), CPU).params["W"])  # it moved
