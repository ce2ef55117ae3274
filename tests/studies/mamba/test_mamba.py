"""The Mamba study: data statistics, the scan against its recurrence, bad input, per-model N, claims at tiny size."""
import math

import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError
from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.mamba.config import MambaConfig
from theorylab.studies.mamba.data import CONFUSING, IRRELEVANT, RELEVANT, sample
from theorylab.studies.mamba.model import forward, forward_reference, init_params, scan_weights

CPU = torch.device("cpu")
train_group = get_study("mamba").train_group


pytestmark = pytest.mark.usefixtures("one_thread")


def test_majority_sequences_hold_the_configured_counts_and_balanced_labels():
    cfgs = [MambaConfig(seed=s, alpha_r=a, alpha_c=c) for s, (a, c) in enumerate(((0.3, 0.1), (0.4, 0.0)))]
    b = sample(cfgs, rng_for(cfgs, CPU), 400, "t")
    for e, c in enumerate(cfgs):
        assert ((b.kind[e] == RELEVANT).sum(-1) == c.n_r).all() and ((b.kind[e] == CONFUSING).sum(-1) == c.n_c).all()
    assert abs(float(b.y.mean())) < 0.15
    # label-consistent tokens carry o_y (e_1 for y = +1, e_2 for y = -1), confusing ones o_-y
    clean = b.X.round()
    rel = clean[0][b.kind[0] == RELEVANT]
    y_tok = b.y[0][:, None].expand(-1, cfgs[0].L)[b.kind[0] == RELEVANT]
    assert torch.equal(rel[:, 0] == 1, y_tok > 0) and torch.equal(rel[:, 1] == 1, y_tok < 0)


def test_locality_places_the_label_pattern_nearer_the_end_and_irrelevant_tokens_are_zero_mean():
    cfg = MambaConfig(regime="locality", dl_near=3, dl_far=7, tau=0.0)
    b = sample([cfg], rng_for([cfg], CPU), 2000, "t")
    assert (b.kind[0, :, cfg.L - 3] == RELEVANT).all() and (b.kind[0, :, cfg.L - 7] == CONFUSING).all()
    assert int((b.kind[0] != IRRELEVANT).sum()) == 2 * 2000
    irr = b.X[0][b.kind[0] == IRRELEVANT]
    assert irr.mean(0).abs().max() < 0.02 and (irr[:, :2] == 0).all()  # +-nu_j: no mean, no o_+- component


def test_token_noise_has_the_configured_scale():
    cfg = MambaConfig(tau=0.1)
    b = sample([cfg], rng_for([cfg], CPU), 500, "t")
    assert float((b.X - b.X.round()).std()) == pytest.approx(0.1, rel=0.05)


def test_untrained_gate_weights_tokens_by_half_per_step():
    """At w = 0 the last state's token weights are (1/2)^(L - l + 1): the (1/2)^dl factor of the locality bound."""
    X = torch.randn(1, 2, 6, 4)
    c = scan_weights(torch.zeros(1, 4), X, "sigmoid")
    assert torch.allclose(c, 0.5 ** torch.arange(6, 0, -1).float().expand(1, 2, 6))


@pytest.mark.parametrize("arch,gain,pool", [("ssm", "sigmoid", "mean"), ("ssm", "softplus", "last"),
                                            ("ssm", "sigmoid", "last"), ("transformer", "sigmoid", "mean"),
                                            ("transformer", "sigmoid", "last")])
def test_the_batched_forward_equals_the_step_by_step_recurrence(arch, gain, pool):
    cfgs = [MambaConfig(seed=s, arch=arch, gain=gain, pool=pool, w_init=2.0, bc="random", L=7, m=8) for s in range(2)]
    rng = rng_for(cfgs, CPU)
    p = init_params(cfgs, rng, CPU)
    X = sample(cfgs, rng, 3, "x").X
    torch.testing.assert_close(forward(p, X, cfgs[0]), forward_reference(p, X, cfgs[0]), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("changes,field", [({"alpha_r": 0.1, "alpha_c": 0.2}, "alpha_c"),
                                           ({"n_train": 300}, "n_train"), ({"M": 20}, "M"),
                                           ({"dl_near": 5, "dl_far": 3}, "dl_far"), ({"pool": "max"}, "pool")])
def test_bad_input_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        get_study("mamba").config("quick", **changes)


def test_models_with_different_sample_sizes_train_as_one_ensemble():
    s = get_study("mamba")
    cfgs = [s.config("quick", **{**s.tiny, "n_train": n}) for n in (8, 32)]
    together = train_group(cfgs, CPU, QUIET)
    for e, c in enumerate(cfgs):
        alone = train_group([c], CPU, QUIET)
        torch.testing.assert_close(together.params["V"][e], alone.params["V"][0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(together.params["w"][0], together.params["w"][1])


def test_claims_at_tiny_size_report_per_seed_numbers(claims_at):
    res = claims_at("mamba", 2)
    sig = res["fig_signal"].outcome
    assert len(sig.numbers["x"]) == 4 and sig.control is not None and len(sig.numbers["T"]) == 4
    assert "T_frozen_gate" in sig.numbers and len(sig.control.values) == 2
    # censored points (a string: '>steps' or '<=0') are left out of the fit: the count fitted per seed is the
    # count of measured points, and a seed with fewer than two has no slope
    for name in ("fig_signal", "fig_locality", "fig_noise"):
        o = res[name].outcome
        for j in range(2):
            measured = sum(isinstance(row[j], int) for row in o.numbers["T"])
            assert o.numbers["points_fitted_T"][j] == measured
            assert math.isfinite(o.values[j]) == (measured >= 2)
            assert o.numbers["points_fitted_N"][j] == sum(isinstance(row[j], int) for row in o.numbers["N_star"])
    assert res["fig_noise"].outcome.numbers["x"] == sorted(res["fig_noise"].outcome.numbers["x"])
    loc = res["fig_locality"].outcome.numbers["x"]
    assert len(loc) == 3 and loc == sorted(loc, reverse=True)  # dl_near 1, 2, 3: the signal falls
    assert set(res["fig_ssm_vs_transformer"].outcome.numbers) >= {
        "majority_ssm", "majority_transformer", "locality_ssm", "locality_transformer"}


def test_below_the_width_hypothesis_the_claims_are_not_applicable():
    s = get_study("mamba")
    ctx = ClaimContext(s, "quick", 2, CPU, overrides={**s.tiny, "m": 8})  # d = 4: d^2 = 16
    for r in run_claims(ctx, ["fig_signal", "fig_locality", "fig_noise", "gate_alignment"]):
        assert r.verdict == "inconclusive" and "m = 8 < d^2 = 16" in r.not_applicable
    assert not ctx.cache  # nothing was trained: the hypothesis is checked first


def test_the_frozen_gate_arm_keeps_w_at_zero_and_trains_the_mlp():
    s = get_study("mamba")
    base = s.config("quick", **s.tiny)
    frozen = base.replace(train_gate=False)
    a, b = train_group([base], CPU, QUIET), train_group([frozen], CPU, QUIET)
    assert (b.params["w"] == 0).all() and not (a.params["w"] == 0).all()
    init = init_params([frozen], rng_for([frozen], CPU), CPU)["V"]
    assert not torch.allclose(b.params["V"], init)


def test_swept_cells_share_their_world():
    """Cells of one seed that differ in a swept field draw the same sequences and initialisation (only the swept
    quantity moves): the noise scales with tau, the labels and token order do not change."""
    s = get_study("mamba")
    base = s.config("quick", **s.tiny)
    noisier, fewer = base.replace(tau=2 * base.tau), base.replace(n_train=8, alpha_r=0.4, alpha_c=0.0)
    assert base.world_hash == noisier.world_hash == fewer.world_hash
    x0, x1 = (sample([c], rng_for([c], CPU), 20, "t") for c in (base, noisier))
    assert torch.equal(x0.y, x1.y) and torch.equal(x0.kind, x1.kind)
    torch.testing.assert_close(x1.X - x1.X.round(), 2 * (x0.X - x0.X.round()))
    p0, p1 = (init_params([c], rng_for([c], CPU), CPU)["V"] for c in (base, fewer))
    assert torch.equal(p0, p1)


def test_gate_claim_is_not_applicable_to_the_transformer():
    s = get_study("mamba")
    ctx = ClaimContext(s, "quick", 2, CPU, overrides={**s.tiny, "arch": "transformer"})
    (r,) = run_claims(ctx, ["gate_alignment"])
    assert r.not_applicable and r.verdict == "inconclusive" and r.error is None


def test_gate_curves_are_recorded_along_training_not_aliased_to_the_final_weights():
    s = get_study("mamba")
    res = train_group([s.config("quick", **{**s.tiny, "steps": 6, "curve_points": 6})], CPU, QUIET)
    curve = res.curves[0]["w_o_plus"]
    assert curve[0] == 0.0 and curve[-1] == pytest.approx(float(res.params["w"][0, 0]))


# ---- the tuning protocol of fig_ssm_vs_transformer (tuning.py) ----
class ReadGuard(dict):
    """A metrics row that fails the test when anything but the validation numbers is read."""

    def __getitem__(self, key):
        assert key in ("val_error", "val_loss"), f"selection read {key!r}"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert key in ("val_error", "val_loss"), f"selection read {key!r}"
        return super().get(key, default)


def test_selection_reads_validation_only_breaks_ties_by_loss_then_grid_order_and_skips_diverged():
    from theorylab.studies.mamba.tuning import select

    row = lambda v, l, t: ReadGuard(val_error=v, val_loss=l, test_error=t, train_error=0.0)  # noqa: E731
    # the test error would pick candidate 0; validation picks 1
    assert select([row(0.2, 0.5, 0.0), row(0.1, 0.9, 0.4), row(0.3, 0.1, 0.0)], [True] * 3) == 1
    assert select([row(0.1, 0.5, 0.0), row(0.1, 0.4, 0.4)], [True, True]) == 1  # tie on error: lower loss
    assert select([row(0.1, 0.4, 0.0), row(0.1, 0.4, 0.4)], [True, True]) == 0  # full tie: grid order
    assert select([row(0.0, 0.0, 0.0), row(0.4, 0.9, 0.4)], [False, True]) == 1  # a diverged one is never kept
    assert select([row(0.0, 0.0, 0.0), row(float("nan"), float("nan"), 0.0)], [False, True]) is None


def test_validation_sequences_are_not_the_test_sequences():
    s = get_study("mamba")
    cfgs = [s.config("quick", **s.tiny)]
    val, test = (sample(cfgs, rng_for(cfgs, CPU), 50, stream, 0) for stream in ("val", "test"))
    assert not torch.equal(val.X, test.X)
    metrics = train_group(cfgs, CPU, QUIET).metrics[0]
    assert {"val_error", "val_loss", "test_error"} <= set(metrics)


def test_the_comparison_keeps_per_seed_the_grid_candidate_with_the_lowest_validation_error(monkeypatch):
    """At tiny size: selection never reads a test error (every row it sees is guarded), the kept (optimizer, lr)
    is one of the grid, it is the validation argmin among the trained candidates, and the graded test error is
    that candidate's; the untuned default is reported beside it; candidates share their seed's world."""
    from theorylab.studies.mamba import tuning

    real_select, calls = tuning.select, []

    def guarded(rows, done):
        calls.append(len(rows))
        return real_select([ReadGuard(r) for r in rows], done)

    monkeypatch.setattr(tuning, "select", guarded)
    s = get_study("mamba")
    ctx = ClaimContext(s, "quick", 2, CPU, overrides=dict(s.tiny))
    (r,) = run_claims(ctx, ["fig_ssm_vs_transformer"])
    assert r.error is None, r.error
    assert calls == [len(tuning.GRID)] * 8  # 2 regimes x 2 archs x 2 seeds, each over the whole grid
    names = {f"{o} {lr:g}": (o, lr) for o, lr in tuning.GRID}
    n = r.outcome.numbers
    assert n["grid"] == list(names)
    for regime in ("majority", "locality"):
        for arch in ("ssm", "transformer"):
            for e, chosen in enumerate(n[f"{regime}_{arch}_chosen"]):
                assert chosen in names
                opt, lr = names[chosen]
                cfgs = [ctx.configs(regime=regime, arch=arch, optimizer=o, lr=l)[e] for o, l in tuning.GRID]
                assert len({c.world_hash for c in cfgs}) == 1  # one world per seed
                cands = [ctx.trained([c])[1][0] for c in cfgs]
                keys = [(c.metrics["val_error"], c.metrics["val_loss"]) if c.status == "done" else (math.inf,) * 2
                        for c in cands]
                k = list(names).index(chosen)
                assert keys[k] == min(keys)
                assert n[f"{regime}_{arch}"][e] == pytest.approx(cands[k].metrics["test_error"], abs=1e-4)
                default = cands[tuning.GRID.index(tuning.UNTUNED)]
                assert n[f"{regime}_{arch}_untuned"][e] == pytest.approx(default.metrics["test_error"], abs=1e-4)


def test_a_diverged_candidate_is_never_kept_and_does_not_fail_its_seed(monkeypatch):
    """A candidate of the grid that diverges is an outcome of tuning: the seed keeps another candidate and is
    not counted as diverged (only a seed whose every candidate diverges would be)."""
    from theorylab.studies.mamba import train, tuning

    init = train.init_params

    def poisoned(cfgs, rng, device):  # seed 1's Adam lr 0.03 models start with a NaN weight
        p = init(cfgs, rng, device)
        for e, c in enumerate(cfgs):
            if (c.seed, c.optimizer, c.lr) == (1, "adam", 0.03):
                p["V"][e, 0, 0] = float("nan")
        return p

    monkeypatch.setattr(train, "init_params", poisoned)
    s = get_study("mamba")
    ctx = ClaimContext(s, "quick", 2, CPU, overrides=dict(s.tiny))
    (r,) = run_claims(ctx, ["fig_ssm_vs_transformer"])
    assert r.error is None, r.error
    n = r.outcome.numbers
    assert ("adam", 0.03) in tuning.GRID and r.diverged == []
    for key in ("majority_ssm", "majority_transformer", "locality_ssm", "locality_transformer"):
        assert n[f"{key}_diverged_candidates"][1] >= 1
        assert n[f"{key}_chosen"][1] != "adam 0.03" and n[f"{key}_chosen"][1] != "diverged"
        assert math.isfinite(n[key][1])
