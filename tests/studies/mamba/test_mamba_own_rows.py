"""Full-batch GD on each model's own N rows (train.own_rows: models grouped by N, one forward per group) equals
the plain form (every model over the whole pool, rows past its N masked): losses, errors, gradients of every
trained weight, and a few training steps' weights and curves, on ensembles mixing several N."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.studies.mamba.config import MambaConfig
from theorylab.studies.mamba.train import own_rows, training

CPU = torch.device("cpu")
TOL = {"rtol": 1e-5, "atol": 1e-6}  # float32: the groups' matmuls have other shapes, so they round differently
# N per model: contiguous groups (slices), and interleaved ones (index tensors and a reordering), 4 distinct N
ORDERS = {"contiguous": (4, 4, 8, 8, 16, 32), "interleaved": (8, 32, 4, 16, 8, 4, 32)}
FORMS = [dict(arch="ssm", regime="majority"), dict(arch="ssm", regime="locality", gain="softplus", loss="logistic"),
         dict(arch="transformer", regime="majority", optimizer="adam", lr=0.01)]


pytestmark = pytest.mark.usefixtures("one_thread")


def configs(ns, **changes):
    base = dict(n_pool=32, steps=6, n_test=100, n_probe=50, curve_points=4, m=16, d=4, M=4, L=8, w_init=1.0,
                dl_near=1, dl_far=3, tau=0.1)
    return [MambaConfig(**{**base, **changes}, seed=e % 3, n_train=n, alpha_r=(0.25, 0.5)[e % 2],
                        alpha_c=(0.125, 0.0)[e % 2]) for e, n in enumerate(ns)]


def both(cfgs, device=CPU):
    return [training(cfgs, rng_for(cfgs, device), device, fast=fast) for fast in (True, False)]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("form", FORMS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_own_rows_loss_error_and_gradients_equal_the_masked_pool(order, form):
    fast, plain = both(configs(ORDERS[order], **form))
    for k in plain.params:
        assert torch.equal(fast.params[k], plain.params[k]), k  # the same draws: only the loss differs
    values, grads = [], []
    for tr in (fast, plain):
        p = {k: v.clone().requires_grad_(k in tr.trainable) for k, v in tr.params.items()}
        out = tr.loss(p, 0)
        weights = torch.linspace(0.5, 1.5, len(tr.lr))  # a generic upstream gradient, per model
        values.append(out)
        grads.append(torch.autograd.grad((out["loss"] * weights).sum(), [p[k] for k in tr.trainable]))
    for what in ("loss", "error"):
        assert values[0][what].shape == (len(fast.lr),)
        torch.testing.assert_close(values[0][what], values[1][what], **TOL, msg=lambda m: f"{what}: {m}")
    for k, g_fast, g_plain in zip(fast.trainable, *grads):
        assert g_plain.abs().sum() > 0, k  # a gradient that can tell the paths apart
        torch.testing.assert_close(g_fast, g_plain, **TOL, msg=lambda m: f"grad {k}: {m}")


def _runs(form, device=CPU):
    return [tr.train()
            for tr in both(configs(ORDERS["interleaved"], **form), device)]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_a_few_training_steps_on_own_rows_equal_the_masked_pool(form):
    runs = _runs(form)
    for k in runs[1].params:
        torch.testing.assert_close(runs[0].params[k], runs[1].params[k], **TOL, msg=lambda m: f"{k}: {m}")
    assert not torch.equal(runs[1].params["V"], both(configs(ORDERS["interleaved"], **form))[1].params["V"])  # trained
    for k in runs[1].curves:
        torch.testing.assert_close(runs[0].curves[k], runs[1].curves[k], **TOL, msg=lambda m: f"curve {k}: {m}")


def test_the_own_rows_path_is_taken_only_where_rows_are_masked():
    cfgs = configs((32, 32, 32))
    assert own_rows(cfgs, None, CPU) is None  # every N = n_pool: the plain form wastes nothing
    fast, plain = both(configs((8, 8, 8)))  # one N below the pool: one group, a slice of every model
    for out in (fast.loss(fast.params, 0), plain.loss(plain.params, 0)):
        assert out["loss"].shape == (3,)
    torch.testing.assert_close(fast.loss(fast.params, 0)["loss"], plain.loss(plain.params, 0)["loss"], **TOL)


def test_minibatch_sgd_is_the_same_on_both_paths():
    """B > 0 draws B of the first N rows per model: untouched by own_rows, bit for bit."""
    fast, plain = both(configs(ORDERS["interleaved"], B=4))
    for step in (0, 3):
        a, b = fast.loss(fast.params, step), plain.loss(plain.params, step)
        assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["error"], b["error"])


@pytest.mark.gpu
@pytest.mark.parametrize("form", FORMS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_own_rows_equal_the_masked_pool_on_cuda(form):
    fast, plain = _runs(form, torch.device("cuda"))
    for k in plain.params:
        torch.testing.assert_close(fast.params[k], plain.params[k], **TOL, msg=lambda m: f"{k}: {m}")
    for k in plain.curves:
        torch.testing.assert_close(fast.curves[k], plain.curves[k], **TOL, msg=lambda m: f"curve {k}: {m}")
