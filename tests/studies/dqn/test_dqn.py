"""DQN study: exact Q* (Bellman optimality, closed form on a slip-free chain), environment statistics against P,
the Q-network against a per-example reference, ensemble == alone, paired initial networks across epsilon levels,
early config errors, the rate fit, and every claim on a tiny config; the quick-size verdicts behind -m slow."""
import math

import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError
from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.dqn.claims import fit_rate
from theorylab.studies.dqn.config import TINY, DQNConfig
from theorylab.studies.dqn.mdp import features, make_mdp, step, value_iteration
from theorylab.studies.dqn.model import init_params, q_reference, q_table
from theorylab.studies.dqn.train import init_rng_for, train_group

CPU = torch.device("cpu")


def test_chain_q_star_closed_form():
    n, g = 6, 0.8
    Q = value_iteration(make_mdp([DQNConfig(n=n, slip=0.0, gamma=g)]))
    for s in range(n - 1):  # right: 1 after n-2-s more steps; left: one step back first
        assert Q[s, 1] == pytest.approx(g ** (n - 2 - s))
        assert Q[s, 0] == pytest.approx(g ** (n - 2 - max(s - 1, 0)) * g)
    assert torch.equal(Q[n - 1], torch.zeros(2))


@pytest.mark.parametrize("env,n", [("chain", 7), ("grid", 4)])
def test_q_star_is_the_bellman_fixed_point(env, n):
    mdp = make_mdp([DQNConfig(env=env, n=n, slip=0.2)])
    assert torch.allclose(mdp.P.sum(-1), torch.ones(mdp.S, mdp.A, dtype=torch.float64))
    Q = value_iteration(mdp)
    V = Q.max(1).values * (~mdp.terminal).double()
    TQ = mdp.P @ (mdp.reward + mdp.gamma * V)
    assert torch.allclose(Q[~mdp.terminal], TQ[~mdp.terminal], atol=1e-10)


def test_environment_steps_follow_P():
    cfgs = [DQNConfig(env="grid", n=3, slip=0.3, seed=s) for s in range(2)]
    mdp = make_mdp(cfgs)
    rng = rng_for(cfgs, CPU)
    W = 20000
    s = torch.full((2, W), 4, dtype=torch.long)  # the centre of the 3 x 3 grid
    a = torch.full((2, W), 3, dtype=torch.long)  # right
    s2, r, done = step(mdp, s, a, rng.uniform((W,), "u"), rng.randint(4, (W,), "b"), 0.3)
    freq = torch.bincount(s2.flatten(), minlength=9).double() / (2 * W)
    assert torch.allclose(freq, mdp.P[4, 3], atol=0.01)
    assert not bool(done.any()) and float(r.sum()) == 0


def test_q_network_matches_per_example_reference():
    cfgs = [DQNConfig(seed=s, features="random", d_feat=5, m=7, env="grid", n=3) for s in range(3)]
    rng = rng_for(cfgs, CPU)
    phi = features(cfgs, rng, CPU).double()
    p = {k: v.double() + 0.1 for k, v in init_params(rng, 5, 7, 4).items()}
    assert torch.allclose(q_table(p, phi), q_reference(p, phi), atol=1e-10)


def test_ensemble_equals_alone_across_epsilon_and_radius():
    base = dict(TINY, init="perturbed")
    cfgs = [DQNConfig(seed=0, eps0=0.1, eps_decay=1.0, radius=1.0, **base),
            DQNConfig(seed=1, eps0=0.6, eps_decay=0.7, radius=2.0, lr=0.05, **base),
            DQNConfig(seed=2, **base)]
    together = train_group(cfgs, CPU, QUIET)
    alone = train_group(cfgs[1:2], CPU, QUIET)
    for k, v in alone.params.items():
        torch.testing.assert_close(together.params[k][1], v[0], atol=1e-6, rtol=1e-6)
    assert together.curves[1]["q_err"] == pytest.approx(alone.curves[0]["q_err"], abs=1e-6)


def test_epsilon_levels_share_the_initial_network():
    a, b = DQNConfig(eps0=0.1, eps_decay=1.0, init="perturbed"), DQNConfig(eps0=0.6, eps_decay=1.0, init="perturbed")
    c = DQNConfig(eps0=0.1, eps_decay=1.0, init="perturbed", radius=2.0)
    keys = init_rng_for([a, b, c], CPU).keys
    assert keys[0] == keys[1] and keys[0] != keys[2]
    assert rng_for([a], CPU).keys[0] != rng_for([b], CPU).keys[0]  # exploration streams differ


def test_training_reduces_the_q_error_and_the_fit_is_realizable():
    res = train_group([DQNConfig(seed=s, T=12) for s in range(2)], CPU, QUIET)
    for m in res.metrics:
        assert m["q_err_final"] < 0.5 * m["q_err0"] and m["fit_err"] < 0.05


def test_fit_rate_on_known_curves():
    f = fit_rate([2.0 * 0.7**t for t in range(20)])
    assert f["rho"] == pytest.approx(0.7) and f["r2"] == pytest.approx(1.0) and f["reached"]
    assert f["tau"] == math.ceil(math.log(0.1) / math.log(0.7))
    flat = fit_rate([1.0] * 10)
    assert not flat["reached"] and flat["rho"] == pytest.approx(1.0)


@pytest.mark.parametrize("field,value", [("eps_levels", (0.6, 0.1)), ("radii", (2.0, 1.0)), ("radii", (0.0, 1.0)),
                                         ("eps_min", 0.5), ("n", 2), ("gamma", 1.0)])
def test_bad_config_named(field, value):
    kw = {field: value, **({"eps0": 0.2} if field == "eps_min" else {})}
    with pytest.raises(ConfigError, match=field):
        get_study("dqn").config("quick", **kw)
    with pytest.raises(ConfigError, match="n"):
        get_study("dqn").config("quick", env="grid", n=20)


def test_claims_on_tiny_and_not_applicable_without_decay():
    s = get_study("dqn")
    res = {r.claim.id: r for r in run_claims(ClaimContext(s, "quick", 2, CPU, overrides=dict(TINY)))}
    assert set(res) == {"thm_geometric", "thm_eps_region", "thm_eps_rate"}
    assert all(r.verdict != "ERROR" for r in res.values()), [r.error for r in res.values()]
    assert res["thm_geometric"].outcome.control is not None
    (r,) = run_claims(ClaimContext(s, "quick", 2, CPU, overrides={**TINY, "eps_decay": 1.0}), ["thm_geometric"])
    assert r.not_applicable and r.verdict == "inconclusive"


@pytest.mark.slow
def test_quick_verdicts():
    s = get_study("dqn")
    res = {r.claim.id: r.verdict for r in run_claims(ClaimContext(s, "quick", 5, CPU))}
    assert res["thm_geometric"] == "holds" and res["thm_eps_region"] == "holds"
