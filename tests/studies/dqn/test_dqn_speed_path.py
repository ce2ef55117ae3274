"""The speed path of the DQN step (issue 26): an iteration's replay indices drawn at once equal the per-step draws
bit for bit, and training through the fast step (targets per iteration, Q(s, a) from the Q-table) gives the same
weights, curves and probes as the plain step, on a chain (Q-table path) and a gridworld (more states than a
mini-batch: the per-sample path); the hand-written loss and gradient (dqn.fused) equal autograd through the network,
and the default step (its gradient by hand, no autograd) equals the fused loss through autograd bit for bit."""
import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.studies.dqn.config import DQNConfig
from theorylab.studies.dqn.fused import bellman_loss
from theorylab.studies.dqn.model import TRAINABLE, q_values
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


@pytest.mark.parametrize("env,n,B,buffer,refresh", [("chain", 6, 8, 30, "every_iter"), ("grid", 3, 4, 30, "every_iter"),
                                                     ("chain", 5, 8, 7, "every_iter"), ("grid", 3, 16, 4, "never")])
def test_fast_training_equals_the_plain_one(env, n, B, buffer, refresh):
    """Buffers of 7 and 4 slots take the 9 transitions of an iteration's collection wrapped around (the fast path
    writes the last ones only); "never" keeps the initial network as the target."""
    cfgs = [DQNConfig(seed=s, env=env, n=n, B=B, T=4, steps=6, fit_steps=20, walkers=3, collect_steps=3, buffer=buffer,
                      eps0=0.2 + 0.3 * s, target_update=refresh, episode_len=4) for s in range(3)]
    out = []
    for fast in (True, False):
        tr = training(cfgs, rng_for(cfgs, CPU), CPU, fast=fast)
        out.append(tr.train())
    fast, plain = out
    for k in plain.params:
        torch.testing.assert_close(fast.params[k], plain.params[k], rtol=1e-5, atol=1e-6)
    assert fast.curves.keys() == plain.curves.keys()
    for k in plain.curves:
        torch.testing.assert_close(fast.curves[k], plain.curves[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("rows", ["table", "batch"])
def test_fused_bellman_loss_and_gradients_equal_autograd(rows, dtype, tol):
    """Loss and the gradient of every weight (per-model loss weights, one of them 0 as for a frozen model), on the
    Q-table of every state (repeated entries: the gradient sums them) and on a batch's own rows."""
    gen = torch.Generator().manual_seed(3)
    E, S, d, m, A, B = 3, 6, 5, 7, 2, 16
    p = {"fc1.w": torch.randn(E, d, m, generator=gen), "fc1.b": torch.randn(E, m, generator=gen),
         "fc2.w": torch.randn(E, m, A, generator=gen), "fc2.b": torch.randn(E, A, generator=gen)}
    p = {k: v.to(dtype).requires_grad_() for k, v in p.items()}
    phi = torch.randn(E, S, d, generator=gen, dtype=dtype)
    s, a = torch.randint(S, (E, B), generator=gen), torch.randint(A, (E, B), generator=gen)
    y = torch.randn(E, B, generator=gen, dtype=dtype)
    if rows == "table":
        X, index = phi, a * S + s
    else:
        X, index = torch.gather(phi, 1, s[..., None].expand(-1, -1, d)), a * B + torch.arange(B)
    q = torch.gather(q_values(p, torch.gather(phi, 1, s[..., None].expand(-1, -1, d))), 2, a[..., None])[..., 0]
    want_loss = ((q - y) ** 2).mean(-1)
    loss = bellman_loss(p, X, index, y)
    torch.testing.assert_close(loss, want_loss, rtol=tol, atol=tol)
    weight = torch.tensor([1.0, 0.0, 3.0], dtype=dtype)
    got = torch.autograd.grad((loss * weight).sum(), [p[k] for k in TRAINABLE])
    want = torch.autograd.grad((want_loss * weight).sum(), [p[k] for k in TRAINABLE])
    for k, x, w in zip(TRAINABLE, got, want):
        scale = float(w.abs().max())
        assert float((x - w).abs().max()) <= tol * scale, (k, float((x - w).abs().max()) / scale)
        assert float(x[1].abs().max()) == 0.0, k


@pytest.mark.parametrize("env,n,features,B", [("chain", 6, "onehot", 8), ("chain", 6, "random", 8),
                                              ("grid", 3, "onehot", 4)])
def test_training_by_hand_equals_the_fused_loss_through_autograd_bit_for_bit(env, n, features, B):
    """The default step (Training.grad: fused.bellman_loss_and_grad, no autograd; one-hot rows of the whole Q-table
    as the identity) against the same fast step through autograd (grad=None: BellmanLoss's backward): the same
    weights and curves bit for bit, on the identity rows (chain, one-hot), general rows (random features) and a
    batch's own rows (a gridworld with more states than the mini-batch)."""
    import dataclasses

    cfgs = [DQNConfig(seed=s, env=env, n=n, B=B, features=features, d_feat=5, T=3, steps=5, fit_steps=20, walkers=3,
                      collect_steps=3, buffer=30, eps0=0.2 + 0.3 * s) for s in range(3)]
    by_hand = training(cfgs, rng_for(cfgs, CPU), CPU)
    assert by_hand.grad is not None
    runs = [by_hand.train(), dataclasses.replace(training(cfgs, rng_for(cfgs, CPU), CPU), grad=None).train()]
    for k in runs[1].params:
        assert torch.equal(runs[0].params[k], runs[1].params[k]), k
    for k in runs[1].curves:
        assert torch.equal(runs[0].curves[k], runs[1].curves[k]), k


def test_identity_rows_equal_the_batched_product_with_the_identity_bit_for_bit():
    """bellman_forward / bellman_backward with identity_rows (b1 + W1 for baddbmm(b1, I, W1), dH for I^T dH) give
    the same loss and gradients bit for bit as the batched products with X = I."""
    from theorylab.studies.dqn.fused import bellman_backward, bellman_forward

    gen = torch.Generator().manual_seed(5)
    E, S, m, A, B = 4, 8, 32, 2, 32
    W1, b1 = torch.randn(E, S, m, generator=gen) * 3, torch.randn(E, m, generator=gen)
    W2, b2 = torch.randn(E, m, A, generator=gen), torch.randn(E, A, generator=gen)
    X = torch.eye(S).expand(E, S, S).clone()
    index, y = torch.randint(A * S, (E, B), generator=gen), torch.randn(E, B, generator=gen)
    g = torch.tensor([1.0, 0.0, 1.0, 1.0])
    (loss, saved), (loss_i, saved_i) = (bellman_forward(X, index, y, W1, b1, W2, b2, ident) for ident in (False, True))
    assert torch.equal(loss, loss_i)
    for got, want in zip(bellman_backward(saved_i, g, identity_rows=True)[3:], bellman_backward(saved, g)[3:]):
        assert torch.equal(got, want)
