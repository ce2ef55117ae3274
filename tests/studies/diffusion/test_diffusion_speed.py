"""The diffusion training step's speed paths equal the plain ones: the per-model draws written in place equal
torch.randn / torch.randint stacked, the step in slices of models equals the whole-ensemble step bit for bit (a
few training steps of Adam and of GD, with the W = 0 control), and the excess curve computed at the checkpoints
only equals the one computed every step; the W = 0 control's uniform-attention forward equals the full attention at
W = 0 (forward, probes, training)."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.study import get_study
from theorylab.core.train import train_ensemble
from theorylab.studies.diffusion import data as D
from theorylab.studies.diffusion.data import bayes, risk, sample
from theorylab.studies.diffusion.model import denoise, forward, forward_uniform, init_params
from theorylab.studies.diffusion.train import models_per_slice, training

CPU = torch.device("cpu")


def _cfgs(n=3, **over):
    s = get_study("diffusion")
    return s.seed_configs("quick", n, **{**s.tiny, **over})


def _train(cfgs, chunk):
    tr = training(cfgs, rng_for(cfgs, CPU), CPU, chunk=chunk)
    return tr.train(probes=False)


def _train_plain(cs):
    """The plain step: the whole ensemble, the full attention (W = 0 control included), the Bayes excess every step."""
    B = cs[0].B

    def plain(p, step):
        b = sample(cs, B, "train", step)
        per_t = risk(forward(p, b.xt), b.eps)
        with torch.no_grad():
            excess = (per_t - risk(bayes(cs, b.xt, b.abar), b.eps)).mean(-1)
        return {"loss": per_t.mean(-1), "excess": excess}

    tr = training(cs, rng_for(cs, CPU), CPU)
    return train_ensemble(tr.params, list(tr.trainable), plain, tr.lr, tr.steps, optimizer=tr.optimizer,
                          curve_points=tr.curve_points)


def test_draws_in_place_equal_stacked_draws():
    cs = _cfgs(3)
    for shape in [(3, 4, 5, 6), (7,), (2, 1)]:
        assert torch.equal(D.normal(cs, shape, "s", 1), D.normal_reference(cs, shape, "s", 1))
        assert torch.equal(D.randint(cs, 4, shape, "s", 1), D.randint_reference(cs, 4, shape, "s", 1))


@pytest.mark.parametrize("over", [{}, {"optimizer": "gd"}, {"freeze_attention": True}])
def test_sliced_step_equals_whole_ensemble(over):
    cs = _cfgs(5, steps=6, curve_points=3, **over)
    whole = _train(cs, len(cs))
    for chunk in (1, 2):
        sliced = _train(cs, chunk)
        assert all(torch.equal(sliced.params[k], whole.params[k]) for k in whole.params)
        assert sliced.curves.keys() == whole.curves.keys() == {"loss", "excess"}
        assert all(torch.equal(sliced.curves[k], whole.curves[k]) for k in whole.curves)


def test_excess_at_checkpoints_equals_excess_every_step():
    """The plain loss (the Bayes excess computed every step) records the same curves."""
    cs = _cfgs(2, steps=7, curve_points=3)
    ref = _train_plain(cs)
    ours = _train(cs, None)
    assert ours.curve_steps == ref.curve_steps
    assert all(torch.equal(ours.curves[k], ref.curves[k]) for k in ref.curves)
    assert all(torch.equal(ours.params[k], ref.params[k]) for k in ref.params)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_uniform_forward_equals_attention_at_zero_W(dtype, tol):
    cs = _cfgs(3, N=6)
    g = torch.Generator().manual_seed(0)
    p = {k: torch.randn(v.shape, generator=g, dtype=dtype) for k, v in init_params(cs, CPU).items()}
    p["W"] = torch.zeros_like(p["W"])
    X = sample(cs, 4, "t").xt.to(dtype)
    out, A = forward(p, X, probes=True)
    fast, A_fast = forward_uniform(p, X, probes=True)
    assert out.dtype == fast.dtype == dtype
    assert torch.allclose(fast, out, rtol=tol, atol=tol)
    assert torch.equal(A_fast, A)  # softmax of equal scores: exactly 1/N


def test_denoise_takes_the_uniform_path_only_for_a_zero_frozen_W():
    cs = _cfgs(2)
    frozen = [c.replace(freeze_attention=True) for c in cs]
    p = {k: v + 0.1 for k, v in init_params(cs, CPU).items()}
    X = sample(cs, 3, "t").xt
    # W nonzero: the full attention even for a frozen config (stored weights that are not the control's)
    assert torch.equal(denoise(frozen, p, X), forward(p, X))
    p["W"] = torch.zeros_like(p["W"])
    assert torch.equal(denoise(frozen, p, X), forward_uniform(p, X))
    assert torch.equal(denoise(cs, p, X), forward(p, X))


@pytest.mark.parametrize("optimizer", ["adam", "gd"])
def test_control_trains_as_with_full_attention(optimizer):
    """The W = 0 control trained through forward_uniform equals the same control trained through the full attention
    (six steps: weights and curves within float32 rounding)."""
    cs = _cfgs(3, steps=6, curve_points=3, freeze_attention=True, optimizer=optimizer)
    ref = _train_plain(cs)
    ours = _train(cs, None)
    assert torch.equal(ours.params["W"], torch.zeros_like(ours.params["W"]))
    for k in ref.params:
        assert torch.allclose(ours.params[k], ref.params[k], rtol=1e-5, atol=1e-6), k
    for k in ref.curves:
        assert torch.allclose(ours.curves[k], ref.curves[k], rtol=1e-5, atol=1e-7), k


def test_slices_only_on_cpu():
    cs = _cfgs(4, N=32, B=32, d=16)
    assert models_per_slice(cs, CPU) < len(cs)
    assert models_per_slice(cs, torch.device("cuda")) == len(cs)


@pytest.mark.gpu
def test_cuda_step_equals_cpu_step():
    cs = _cfgs(3, steps=4, curve_points=2)
    cpu = _train(cs, None)
    tr = training(cs, rng_for(cs, torch.device("cuda")), torch.device("cuda"))
    gpu = tr.train(probes=False)
    for k in cpu.params:
        assert torch.allclose(gpu.params[k].cpu(), cpu.params[k], rtol=1e-4, atol=1e-6)
