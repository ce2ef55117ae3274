"""The speed path of the DQN step (issue 26): an iteration's replay indices drawn at once equal the per-step draws
bit for bit, and training through the fast step (targets per iteration, Q(s, a) from the Q-table) gives the same
weights, curves and probes as the plain step, on a chain (Q-table path) and a gridworld (more states than a
mini-batch: the per-sample path)."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.train import train_ensemble
from theorylab.studies.dqn.config import DQNConfig
from theorylab.studies.dqn.train import replay_draws, training, uniform_streams

CPU = torch.device("cpu")


def test_replay_draws_equal_the_per_step_draws():
    cfgs = [DQNConfig(seed=s) for s in range(3)]
    rng = rng_for(cfgs, CPU)
    for filled, t in ((7, 0), (200, 3), (2000, 11)):
        at_once = replay_draws(rng, filled, 5, t, 4)
        one_by_one = torch.stack([rng.randint(filled, (5,), "replay", t, j) for j in range(4)], 1)
        assert torch.equal(at_once, one_by_one)


def test_uniform_streams_equal_one_draw_per_stream_in_both_dtypes():
    cfgs = [DQNConfig(seed=s) for s in range(3)]
    rng = rng_for(cfgs, CPU)
    streams = [("explore", 2, k) for k in range(5)]
    for dtype in (torch.float32, torch.float64):
        at_once = uniform_streams(rng, streams, 7, dtype)
        assert at_once.dtype == dtype
        assert torch.equal(at_once, torch.stack([rng.uniform((7,), *st, dtype=dtype) for st in streams], 1))


@pytest.mark.parametrize("env,n,B", [("chain", 6, 8), ("grid", 3, 4)])
def test_fast_training_equals_the_plain_one(env, n, B):
    cfgs = [DQNConfig(seed=s, env=env, n=n, B=B, T=4, steps=6, fit_steps=20, walkers=3, collect_steps=3, buffer=30,
                      eps0=0.2 + 0.3 * s) for s in range(3)]
    out = []
    for fast in (True, False):
        tr = training(cfgs, rng_for(cfgs, CPU), CPU, fast=fast)
        out.append(train_ensemble(tr.params, list(tr.trainable), tr.loss, tr.lr, tr.steps, optimizer=tr.optimizer,
                                  probe_fn=tr.probes, curve_points=tr.curve_points))
    fast, plain = out
    for k in plain.params:
        torch.testing.assert_close(fast.params[k], plain.params[k], rtol=1e-5, atol=1e-6)
    assert fast.curves.keys() == plain.curves.keys()
    for k in plain.curves:
        torch.testing.assert_close(fast.curves[k], plain.curves[k], rtol=1e-5, atol=1e-6)
