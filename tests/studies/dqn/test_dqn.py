"""DQN study: exact Q* (Bellman optimality, closed form on a slip-free chain), environment statistics against P,
the Q-network against a per-example reference, ensemble == alone, one world across epsilon levels and radii,
the optimal-action error, early config errors, crossings with censoring, and every claim on a tiny config; the quick-size verdicts behind -m slow."""
import math

import pytest
import torch

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError
from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.dqn.claims import geometric_rate, iterations_to_small, slowdown
from theorylab.studies.dqn.config import TINY, DQNConfig
from theorylab.studies.dqn.mdp import features, make_mdp, step, value_iteration
from theorylab.studies.dqn.model import init_params, q_reference, q_table
from theorylab.studies.dqn.train import q_error, q_error_optimal

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
    train_group = get_study("dqn").train_group
    together = train_group(cfgs, CPU, QUIET)
    alone = train_group(cfgs[1:2], CPU, QUIET)
    for k, v in alone.params.items():
        torch.testing.assert_close(together.params[k][1], v[0], atol=1e-6, rtol=1e-6)
    assert together.curves[1]["q_err"] == pytest.approx(alone.curves[0]["q_err"], abs=1e-6)


def test_epsilon_levels_and_radii_share_the_world():
    """Common random numbers: cells of one seed that differ in epsilon, radius or target refresh share phi, omega*,
    the direction of omega_0 - omega* and the exploration draws; another seed does not."""
    base = dict(TINY, eps_decay=1.0)
    a, b = DQNConfig(eps0=0.1, **base), DQNConfig(eps0=0.6, **base)
    c, other = DQNConfig(eps0=0.1, radius=2.0, **base), DQNConfig(eps0=0.1, seed=1, **base)
    frozen = DQNConfig(eps0=0.1, target_update="never", **base)
    keys = rng_for([a, b, c, frozen, other], CPU).keys
    assert keys[0] == keys[1] == keys[2] == keys[3] != keys[4]
    res = get_study("dqn").train_group([a, b, c, other], CPU, QUIET)
    star = {k: v for k, v in res.params.items() if k.startswith("star.")}
    for k, v in star.items():
        assert torch.equal(v[0], v[1]) and torch.equal(v[0], v[2]) and not torch.equal(v[0], v[3]), k
    assert res.curves[0]["q_err"][0] == res.curves[1]["q_err"][0]  # the same omega_0 at both levels
    assert res.curves[0]["q_err"][1:] != res.curves[1]["q_err"][1:]  # ... then epsilon makes the difference


def test_optimal_action_error_reads_only_the_optimal_actions():
    cfg = DQNConfig(n=5, slip=0.0)
    mdp = make_mdp([cfg])
    Qs = value_iteration(mdp).float()
    live = ~mdp.terminal
    phi = torch.eye(5)[None]
    # a network that gets Q* on the optimal action (right) and is off by 0.3 on the other: fc2 maps one-hot rows
    p = {"fc1.w": torch.eye(5)[None], "fc1.b": torch.zeros(1, 5), "fc2.w": (Qs + torch.tensor([0.3, 0.0]))[None],
         "fc2.b": torch.zeros(1, 2)}
    p["fc2.w"][0, 4] = 0.0
    assert float(q_error(p, phi, Qs, live)) == pytest.approx(0.3, abs=1e-6)
    assert float(q_error_optimal(p, phi, Qs, live)) == pytest.approx(0.0, abs=1e-6)


def test_training_reduces_the_q_error_and_the_fit_is_realizable():
    res = get_study("dqn").train_group([DQNConfig(seed=s, T=12) for s in range(2)], CPU, QUIET)
    for m in res.metrics:
        assert m["q_err_final"] < 0.5 * m["q_err0"] and m["fit_err"] < 0.05


def test_rate_and_crossing_on_known_curves():
    err = torch.tensor([[2.0 * 0.7**t, 1.0, 2.0 * 0.5**t] for t in range(20)], dtype=torch.float64)
    t, censored = iterations_to_small(err)
    assert t[0] == math.ceil(math.log(0.1) / math.log(0.7)) and t[2] == math.ceil(math.log(0.1) / math.log(0.5))
    assert censored.tolist() == [False, True, False]  # the flat curve never gets there
    rho, r2 = geometric_rate(err, torch.tensor([19, 19, 19]))
    assert rho[0] == pytest.approx(0.7) and r2[0] == pytest.approx(1.0) and rho[1] == pytest.approx(1.0)


class _Cell:
    def __init__(self, curve):
        self.curves = {"q_err": curve, "q_err_opt": curve}


def test_slowdown_treats_a_censored_level_as_censored():
    fast, slow, never = [0.5**t for t in range(15)], [0.8**t for t in range(15)], [1.0] * 15  # t = 0 .. T = 14
    d = {"levels": (0.1, 0.6), "cells": {(0.1, 1.0): [_Cell(fast), _Cell(fast), _Cell(never)],
                                         (0.6, 1.0): [_Cell(slow), _Cell(never), _Cell(fast)]}}
    gap, _ = slowdown(d, 1.0, "q_err_opt")
    assert gap[0] == 11 - 4  # both measured: 0.8^11 <= 0.1 < 0.8^10, 0.5^4 <= 0.1 < 0.5^3
    assert gap[1] == 15 - 4  # the larger level never got there: a lower bound T + 1 - t(lo), still > 0
    assert math.isnan(gap[2])  # the smaller level never got there: unknown, never passes


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
    assert {res[c].claim.kind for c in ("thm_eps_region", "thm_eps_rate")} == {"figure"}
    for over in ({"eps_decay": 1.0}, {"init": "random"}, {"radius": 2.0}):
        (r,) = run_claims(ClaimContext(s, "quick", 2, CPU, overrides={**TINY, **over}), ["thm_geometric"])
        assert r.not_applicable and r.verdict == "inconclusive", over


@pytest.mark.slow
def test_quick_verdicts():
    s = get_study("dqn")
    res = {r.claim.id: r.verdict for r in run_claims(ClaimContext(s, "quick", 5, CPU))}
    assert res["thm_geometric"] == "holds"
