"""The probes along training from one forward pass (evaluate.probe_values, fast: model.forward_probed with the
fused read-out) equal the plain form (one forward for probe_error, another with probes for gate_probes): every
probe key, on the SSM (majority: mean read-out, sigmoid and softplus gain; locality: last state) and the
transformer baseline. Run with -s to see the max differences."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.studies.mamba import model
from theorylab.studies.mamba.config import MambaConfig
from theorylab.studies.mamba.data import sample
from theorylab.studies.mamba.evaluate import probe_values
from theorylab.studies.mamba.model import forward, forward_probed, init_params
from theorylab.studies.mamba.train import training

CPU = torch.device("cpu")
TOL = {"rtol": 1e-5, "atol": 1e-6}  # float32
FORMS = {"ssm-majority": dict(arch="ssm", regime="majority"),
         "ssm-softplus": dict(arch="ssm", regime="majority", gain="softplus", bc="random"),
         "ssm-locality": dict(arch="ssm", regime="locality"),
         "transformer-majority": dict(arch="transformer", regime="majority"),
         "transformer-locality": dict(arch="transformer", regime="locality")}
SSM_KEYS = {"probe_error", "w_o_plus", "w_o_minus", "w_irrelevant_max", "w_norm", "gate_relevant", "gate_confusing",
            "gate_irrelevant", "weight_relevant", "weight_confusing", "weight_irrelevant"}
TRANSFORMER_KEYS = {"probe_error", "weight_relevant", "weight_confusing", "weight_irrelevant"}


@pytest.fixture(autouse=True, params=["whole", "blocks"])
def block_size(request, monkeypatch):
    """The read-out in one block, or in runs of three sequences of one model (as at the full size)."""
    if request.param == "blocks":
        monkeypatch.setattr(model, "BLOCK_BYTES", 3 * 8 * 16 * 4)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def configs(form, E=6):
    # w_init > 0: gates away from 1/2, so the gate probes differ by token kind; mixed signals and N, as a sweep
    return [MambaConfig(**form, seed=e % 3, w_init=1.0, alpha_r=(0.25, 0.375)[e % 2], alpha_c=(0.125, 0.0)[e % 2],
                        n_train=(8, 32)[e % 2], n_pool=32, n_probe=40, L=8, d=4, M=4, m=16, dl_near=1, dl_far=3,
                        tau=0.1, steps=4, curve_points=2) for e in range(E)]


def max_rel(a, b):
    return float(((a.double() - b.double()).abs() / b.double().abs().clamp_min(1e-12)).max())


@pytest.mark.parametrize("form", FORMS)
def test_one_pass_probes_equal_the_two_pass_ones(form):
    cfgs = configs(FORMS[form])
    rng = rng_for(cfgs, CPU)
    p = init_params(cfgs, rng, CPU)
    probe = sample(cfgs, rng, cfgs[0].n_probe, "probe")
    fast, plain = (probe_values(p, probe, cfgs[0], fast=f) for f in (True, False))
    assert list(fast) == list(plain)  # every key, in the same order (curves keep the order they were recorded)
    assert set(plain) == (SSM_KEYS if cfgs[0].arch == "ssm" else TRANSFORMER_KEYS)
    diffs = {}
    for k in plain:
        assert fast[k].shape == plain[k].shape == (len(cfgs),), k
        torch.testing.assert_close(fast[k], plain[k], **TOL, msg=lambda m: f"{k}: {m}")
        diffs[k] = max_rel(fast[k], plain[k])
    print(f"\n{form}: max relative difference {max(diffs.values()):.1e} ({max(diffs, key=diffs.get)})")
    # the gate probes are not trivially equal: they differ across token kinds
    assert not torch.equal(plain["weight_relevant"], plain["weight_irrelevant"])


@pytest.mark.parametrize("form", FORMS)
def test_forward_probed_is_forward_and_its_probes(form):
    """F equal to forward's fast path (bit for bit on the SSM: the same operations), the probes to those of the
    plain probed forward."""
    cfgs = configs(FORMS[form])
    rng = rng_for(cfgs, CPU)
    p = init_params(cfgs, rng, CPU)
    X = sample(cfgs, rng, 10, "x").X
    with torch.no_grad():
        f, probes = forward_probed(p, X, cfgs[0])
        plain: dict = {}
        f_plain = forward(p, X, cfgs[0], plain)
        f_fast = forward(p, X, cfgs[0])
    if cfgs[0].arch == "ssm":
        assert torch.equal(f, f_fast)
    print(f"\n{form}: F max relative difference to forward {max_rel(f, f_fast):.1e}, to the probed forward "
          f"{max_rel(f, f_plain):.1e}")
    torch.testing.assert_close(f, f_fast, **TOL)
    torch.testing.assert_close(f, f_plain, **TOL)
    assert set(probes) == set(plain) - {"preact"}  # preact: the last-state read-out's, read by no probe
    for k in probes:
        torch.testing.assert_close(probes[k], plain[k], **TOL, msg=lambda m: f"{k}: {m}")


@pytest.mark.parametrize("form", ["ssm-majority", "transformer-locality"])
def test_training_probes_fast_equal_plain(form):
    """The probes a Training records: training(fast=True) (one pass) and fast=False (two) on the same weights."""
    cfgs = configs(FORMS[form])
    fast, plain = (training(cfgs, rng_for(cfgs, CPU), CPU, fast=f) for f in (True, False))
    for step in (0, 3):
        a, b = fast.probes(fast.params, step), plain.probes(fast.params, step)
        assert list(a) == list(b)
        for k in b:
            torch.testing.assert_close(a[k], b[k], **TOL, msg=lambda m: f"{k}: {m}")


@pytest.mark.gpu
@pytest.mark.parametrize("form", FORMS)
def test_one_pass_probes_equal_the_two_pass_ones_on_cuda(form):
    cuda = torch.device("cuda")
    cfgs = configs(FORMS[form])
    rng = rng_for(cfgs, cuda)
    p = init_params(cfgs, rng, cuda)
    probe = sample(cfgs, rng, cfgs[0].n_probe, "probe")
    fast, plain = (probe_values(p, probe, cfgs[0], fast=f) for f in (True, False))
    assert list(fast) == list(plain)
    for k in plain:
        torch.testing.assert_close(fast[k], plain[k], **TOL, msg=lambda m: f"{k}: {m}")
