"""Diffusion study: the schedule, the mixture's statistics, the forward process, the closed-form oracle and Bayes
denoisers against Monte Carlo, the mean denoiser's K^2/(N d) excess, the attention denoiser against a per-token
reference, config errors, and every claim running at the tiny config."""
import pytest
import torch

from theorylab.core.config import ConfigError
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.diffusion import data as D
from theorylab.studies.diffusion.config import DiffusionConfig
from theorylab.studies.diffusion.model import forward, forward_reference

CPU = torch.device("cpu")


def cfgs(n=2, **kw):
    return [DiffusionConfig(seed=s, **kw) for s in range(n)]


def test_schedule():
    ab = D.alpha_bar(DiffusionConfig())
    assert ab.shape == (1000,) and abs(float(ab[0]) - (1 - 1e-4)) < 1e-12
    assert bool((ab[1:] < ab[:-1]).all()) and float(ab[-1]) < 1e-4


def test_mixture_statistics_and_forward_process():
    cs = cfgs(d=6, K=3, sigma0=0.3, N=16, t_grid=(100, 500))
    b = D.sample(cs, 500, "t")
    assert b.xt.shape == (2, 2, 500, 16, 6) and b.c.shape == (2, 2, 500, 16)
    frac = torch.stack([(b.c == k).float().mean() for k in range(3)])
    assert torch.allclose(frac, torch.full((3,), 1 / 3), atol=0.01)
    mu = D.centres(cs)
    for k in range(3):
        x = b.x0[b.c == k]
        assert torch.allclose(x.mean(0), mu[k], atol=0.02)
        assert abs(float(x.var(0).mean()) - 0.09) < 0.005
    a = b.abar[None, :, None, None, None]
    assert torch.allclose(b.xt, a.sqrt() * b.x0 + (1 - a).sqrt() * b.eps)


def test_oracle_risk_is_closed_form():
    cs = cfgs(d=4, K=2, sigma0=0.5, N=8, t_grid=(50, 300))
    b = D.sample(cs, 4000, "t")
    r = D.risk(D.oracle(cs, b), b.eps)  # [E, G]
    pred = b.abar * 0.25 / D.s2(b.abar, 0.5)
    assert torch.allclose(r, pred.expand_as(r), rtol=0.03)


def test_bayes_denoiser_equals_monte_carlo_conditional_mean():
    """E[eps | x_t] by Monte Carlo: average eps over tokens whose x_t falls in a small box, against the closed form."""
    cs = cfgs(1, d=2, K=2, r=2.0, sigma0=0.4, N=2, t_grid=(250,))
    x0, _ = D.sample_x0(cs, (1, 200_000), "mc")
    eps = D.normal(cs, x0.shape[1:], "mc", "eps")
    ab = D.grid_alpha_bar(cs)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # [1, 1, M, 2, 2]
    xt, eps = xt.reshape(-1, 2), eps.reshape(-1, 2)
    for point in ([1.0, 0.2], [0.3, 1.1], [0.6, 0.6]):
        p = torch.tensor(point)
        box = ((xt - p).abs() < 0.05).all(-1)
        assert int(box.sum()) > 300
        mc = eps[box].mean(0)
        closed = D.bayes(cs, p.reshape(1, 1, 1, 1, 2), ab)[0, 0, 0, 0]
        assert torch.allclose(mc, closed, atol=0.08), (point, mc, closed)


def test_bayes_between_oracle_and_zero_and_mean_denoiser_share():
    cs = cfgs(d=16, K=4, N=32)
    b = D.sample(cs, 128, "t")
    oracle, bayes = D.risk(D.oracle(cs, b), b.eps), D.risk(D.bayes(cs, b.xt, b.abar), b.eps)
    zero = D.risk(torch.zeros_like(b.eps), b.eps)
    assert bool((oracle <= bayes + 1e-3).all()) and bool((bayes < zero).all())
    md = D.risk(D.mean_denoiser(cs, b), b.eps)
    sep = torch.tensor(D.separated(cs[0]))
    share = ((md - bayes) / (zero - bayes))[:, sep]
    assert torch.allclose(share, torch.full_like(share, D.predicted_excess_share(cs[0])), rtol=0.3)


def test_attention_denoiser_matches_per_token_formula():
    cs = cfgs(d=3, K=2, N=5, t_grid=(10, 400))
    g = torch.Generator().manual_seed(0)
    p = {"W": torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64),
         "V": torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64),
         "a": torch.randn(2, 2, generator=g, dtype=torch.float64)}
    X = D.sample(cs, 3, "ref").xt.double()
    out, A = forward(p, X, probes=True)
    assert out.shape == X.shape and A.shape == (2, 2, 3, 5, 5)
    assert torch.allclose(A.sum(-1), torch.ones(2, 2, 3, 5, dtype=torch.float64))
    assert torch.allclose(out, forward_reference(p, X), atol=1e-10)


@pytest.mark.parametrize("bad,field", [({"K": 9, "d": 8}, "K"), ({"t_grid": (500, 10)}, "t_grid"),
                                       ({"sigma0": -1}, "sigma0"), ({"n_sweep": (8, 8)}, "n_sweep")])
def test_bad_config_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        get_study("diffusion").config("quick", **bad)


def test_training_lowers_the_excess_and_frozen_attention_stays_uniform():
    s = get_study("diffusion")
    cs = s.seed_configs("quick", 2, **s.tiny)
    res = s.train_group(cs, CPU, QUIET)
    for c in res.curves:
        assert c["excess"][-1] < 0.5 * c["excess"][0]
    frozen = s.train_group([c.replace(freeze_attention=True) for c in cs], CPU, QUIET)
    assert float(frozen.params["W"].abs().max()) == 0.0 and float(res.params["W"].abs().max()) > 0


def test_every_claim_runs_at_the_tiny_config(claims_at):
    res = claims_at("diffusion")
    assert {r.verdict for r in res.values()} <= {"holds", "fails", "inconclusive", "agrees", "differs"}
    assert res["thm_convergence"].outcome.control is not None and res["thm_tokens"].outcome.control is not None
    assert res["thm_convergence"].claim.kind == "theorem" and res["thm_tokens"].claim.kind == "figure"


def test_convergence_is_not_applicable_without_a_separated_level():
    from theorylab.core.claims import ClaimContext, run_claims

    s = get_study("diffusion")
    (r,) = run_claims(ClaimContext(s, "quick", 2, CPU, overrides={**s.tiny, "t_grid": (900,)}), ["thm_convergence"])
    assert r.verdict == "inconclusive" and "separated" in r.not_applicable


def test_the_w0_control_sees_the_same_data_points():
    cs = cfgs(2, d=4, K=2, N=4, t_grid=(10,))
    frozen = [c.replace(freeze_attention=True) for c in cs]
    assert torch.equal(D.sample(cs, 3, "train", 0).xt, D.sample(frozen, 3, "train", 0).xt)
    assert not torch.equal(D.sample(cs, 3, "train", 0).xt[0], D.sample(cs, 3, "train", 0).xt[1])


def test_bayes_denoiser_in_the_grid_sampler_reproduces_the_centres():
    """The 7-level respaced sampler does not itself collapse the samples: with the Bayes denoiser the sample means
    sit on the centres (the reference of fig_sampling)."""
    from theorylab.studies.diffusion.evaluate import generate, sample_statistics

    cs = cfgs(1, n_samples=32)
    st = sample_statistics(cs, generate(cs, None, CPU))
    assert float(st["centre_err"].max()) < 0.05 and float((st["weights"] - 0.25).abs().max()) < 0.05


@pytest.mark.slow
def test_claims_quick_verdicts():
    """Measured at quick size, 5 seeds (study note)."""
    from theorylab.core.claims import ClaimContext, run_claims

    res = {r.claim.id: r for r in run_claims(ClaimContext(get_study("diffusion"), "quick", 5, CPU))}
    assert {k: r.verdict for k, r in res.items()} == {
        "thm_convergence": "fails", "thm_tokens": "agrees", "mech_mean_denoising": "holds",
        "fig_sampling": "differs"}
    assert res["thm_tokens"].control_discriminates
