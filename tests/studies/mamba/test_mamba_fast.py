"""The fast forward (the fused read-out over cache-sized blocks of models, W_C W_B folded into V)
equals the plain one: forward, gradients of every weight, and a few GD steps."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.train import SGD, train_ensemble
from theorylab.studies.mamba import model
from theorylab.studies.mamba.config import MambaConfig
from theorylab.studies.mamba.data import sample
from theorylab.studies.mamba.model import forward, init_params

CPU = torch.device("cpu")
TOL = {torch.float64: {"rtol": 1e-12, "atol": 1e-14}, torch.float32: {"rtol": 1e-5, "atol": 1e-6}}
FORMS = [("ssm", "sigmoid", "mean"), ("ssm", "softplus", "mean"), ("ssm", "sigmoid", "last"),
         ("ssm", "softplus", "last"), ("transformer", "sigmoid", "mean"), ("transformer", "sigmoid", "last")]


@pytest.fixture(autouse=True, params=["models", "sequences"])
def small_blocks(request, monkeypatch):
    """Blocks of a few whole models, or runs of two sequences of one model (a model's hidden layer over the
    budget, as at the full size), so that the block loops and their seams are exercised."""
    monkeypatch.setattr(model, "BLOCK_BYTES", 2 * 5 * 7 * 8 * 8 if request.param == "models" else 2 * 7 * 8 * 8)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def setup(arch, gain, pool, dtype, E=5):
    cfgs = [MambaConfig(seed=s, arch=arch, gain=gain, pool=pool, w_init=1.5, bc="random", L=7, m=8, d=4, M=4,
                        dl_near=1, dl_far=3) for s in range(E)]
    rng = rng_for(cfgs, CPU)
    p = {k: v.to(dtype) for k, v in init_params(cfgs, rng, CPU).items()}
    return cfgs, p, sample(cfgs, rng, 5, "x").X.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("arch,gain,pool", FORMS)
def test_fast_forward_and_every_gradient_equal_the_plain_ones(arch, gain, pool, dtype):
    cfgs, p, X = setup(arch, gain, pool, dtype)
    X.requires_grad_()
    for v in p.values():
        v.requires_grad_()
    names = sorted(p)
    results = []
    for fast in (True, False):
        f = forward(p, X, cfgs[0], fast=fast)
        weights = torch.linspace(-1, 1, f.numel(), dtype=dtype).view_as(f)  # a generic upstream gradient
        results.append((f, *torch.autograd.grad((f * weights).sum(), [X, *(p[k] for k in names)], allow_unused=True)))
    for what, fast, plain in zip(["F", "X", *names], *results):
        if plain is None:
            assert fast is None or not fast.any(), what
            continue
        torch.testing.assert_close(fast, plain, **TOL[dtype], msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("arch,pool", [("ssm", "mean"), ("transformer", "last")])
def test_a_few_gd_steps_equal_the_plain_ones(arch, pool):
    cfgs, p, X = setup(arch, "sigmoid", pool, torch.float32)
    y = torch.sign(torch.randn(X.shape[:2], generator=torch.Generator().manual_seed(0)))
    runs = []
    for fast in (True, False):
        def loss(params, step, fast=fast):
            f = forward(params, X, cfgs[0], fast=fast)
            return {"loss": torch.clamp(1 - y * f, min=0).mean(-1)}
        runs.append(train_ensemble(p, model.trainable(arch), loss, torch.full((len(cfgs),), 0.5), 6,
                                   optimizer=SGD(), curve_points=3))
    for k in runs[1].params:
        torch.testing.assert_close(runs[0].params[k], runs[1].params[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(runs[0].curves["loss"], runs[1].curves["loss"], rtol=1e-5, atol=1e-6)


def test_the_fast_path_gives_the_default_models_the_plain_numbers_bit_for_bit():
    """With W_B = W_C = I (the default) the folding is exact and the fused forward runs the plain ops."""
    cfgs = [MambaConfig(seed=s, w_init=1.0, L=9, m=8, d=4, M=4) for s in range(4)]
    rng = rng_for(cfgs, CPU)
    p = init_params(cfgs, rng, CPU)
    X = sample(cfgs, rng, 6, "x").X
    assert torch.equal(forward(p, X, cfgs[0]), forward(p, X, cfgs[0], fast=False))
