"""The speed path of the lowrank step (issue 26): model.forward_fast (one GEMM per model per weight) equals the
plain forward on the output and on the gradient of the hinge loss, and a few SGD steps through core's trainer give
the same weights and curves on both paths (full weights and LoRA)."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.losses import hinge
from theorylab.studies.lowrank.config import LowRankConfig
from theorylab.studies.lowrank.data import sample
from theorylab.studies.lowrank.model import forward, forward_fast, init_params
from theorylab.studies.lowrank.train import training

CPU = torch.device("cpu")
WEIGHTS = ("W_Q", "W_K", "W_V", "W_O")


def test_forward_fast_equals_forward_and_its_gradient_in_float64():
    cfgs = [LowRankConfig(seed=s, d=12, M=6, L=12, alpha_hash=0.2, m=8) for s in range(3)]
    rng = rng_for(cfgs, CPU)
    p = {k: v.double() for k, v in init_params(cfgs, rng, CPU).items()}
    g = torch.Generator().manual_seed(0)
    for k in WEIGHTS:  # away from the scaled-identity init, so every product matters
        p[k] = (p[k] + 0.3 * torch.randn(p[k].shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = sample(cfgs, rng, 7, "check")
    X, y = b.X.double(), b.y.double()
    F_plain, F_fast = forward(p, X), forward_fast(p, X)
    torch.testing.assert_close(F_fast, F_plain, rtol=1e-12, atol=1e-14)
    g_plain = torch.autograd.grad(hinge(F_plain, y).sum(), [p[k] for k in WEIGHTS])
    g_fast = torch.autograd.grad(hinge(F_fast, y).sum(), [p[k] for k in WEIGHTS])
    for a, c in zip(g_fast, g_plain):
        assert float(c.abs().max()) > 0
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_fast_training_equals_the_plain_one_over_sgd_steps(lora_rank):
    cfgs = [LowRankConfig(seed=s, steps=25, n_train=64, B=8, m=16, curve_points=5, lora_rank=lora_rank)
            for s in range(3)]
    out = []
    for fast in (True, False):
        tr = training(cfgs, rng_for(cfgs, CPU), CPU, fast=fast)
        out.append(tr.train(probes=False))
    fast, plain = out
    for k in fast.params:
        torch.testing.assert_close(fast.params[k], plain.params[k], rtol=1e-5, atol=1e-6)
    for k in fast.curves:
        torch.testing.assert_close(fast.curves[k], plain.curves[k], rtol=1e-5, atol=1e-6)
