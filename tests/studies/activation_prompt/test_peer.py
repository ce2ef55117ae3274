"""The JAX peer `theorylab bench activation_prompt --peer` times (benchmarks/peers/activation_prompt.py) trains what
the study's bare adaptation step trains: the same network and objective (given the same weights, the same loss), the
same methods from zero heads, and a loss that falls. Skipped without jax (the bench extra)."""
import math

import pytest
import torch

from theorylab.core.bench import load_peer
from theorylab.core.ensemble import rng_for
from theorylab.core.losses import cross_entropy
from theorylab.core.study import get_study
from theorylab.core.train import train_ensemble
from theorylab.studies.activation_prompt.data import digits, transform
from theorylab.studies.activation_prompt.model import forward
from theorylab.studies.activation_prompt.train import methods

jnp = pytest.importorskip("jax.numpy")
STEPS = 60


@pytest.fixture
def tiny():
    s = get_study("activation_prompt")
    base = s.config("quick", **{**s.tiny, **s.bench_config, "B": 64})  # batches of 64: less noisy curves
    return [base.replace(seed=i) for i in range(2)]


def study_training(cfgs):
    return get_study("activation_prompt").train_group.training(cfgs, rng_for(cfgs, torch.device("cpu")),
                                                               torch.device("cpu"))


def channels_last(v: torch.Tensor):
    """One model's weight or activation in the peer's layout: [Co, Ci, 3, 3] -> [3, 3, Ci, Co], [C, 8, 8] ->
    [8, 8, C], [n, C, 8, 8] -> [n, 8, 8, C]."""
    if v.ndim == 4 and v.shape[-1] == 3:
        v = v.permute(2, 3, 1, 0)
    elif v.ndim == 3 and v.shape[-1] == 8:
        v = v.permute(1, 2, 0)
    elif v.ndim == 4:
        v = v.permute(0, 2, 3, 1)
    return jnp.asarray(v.contiguous().numpy())


def test_the_peers_objective_is_the_studys_given_the_same_weights(one_thread, tiny):
    peer = load_peer("activation_prompt")
    cfg = tiny[0]
    backbone = {k: v[0] for k, v in study_training(tiny[:1]).params.items() if "/" not in k}
    X, y = digits(cfg.test_every)["train"]
    X, y = transform(X[:64], cfg.transform), y[:64]
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: 0.3 * torch.randn(*s, generator=g)  # noqa: E731
    head = {"thead.w": rnd(cfg.channels, 10), "thead.b": rnd(10)}
    changed = {"linear": {}, "vp": {"act.0": rnd(1, 8, 8)}, "ap1": {"act.1": rnd(cfg.channels, 8, 8)},
               "aps2": {"acts.2": rnd(cfg.channels)},
               "norm": {k: v + rnd(*v.shape) for k, v in backbone.items() if k.endswith((".bn.w", ".bn.b"))},
               "full": {k: v + rnd(*v.shape) for k, v in backbone.items() if k.endswith((".w", ".b"))
                        and not k.startswith("head")}}
    for method, own in changed.items():
        own = {**own, **head}
        ours = cross_entropy(forward({k: v[None] for k, v in {**backbone, **own}.items()}, X[None], cfg), y[None])
        theirs = peer.adaptation_loss({method: {k: channels_last(v) for k, v in own.items()}},
                                      {k: channels_last(v) for k, v in backbone.items()}, channels_last(X),
                                      jnp.asarray(y.numpy()), cfg.depth)
        assert float(theirs) == pytest.approx(float(ours[0]), rel=1e-5), method


def test_the_peer_trains_every_method_from_zero_heads_and_its_loss_falls_as_the_studys_does(one_thread, tiny):
    peer = load_peer("activation_prompt")
    run, args = peer.build(tiny, STEPS)
    _, losses = peer.wait(run(*args))
    losses = torch.tensor(losses.tolist())  # [E, steps]
    assert losses.shape == (2, STEPS) and torch.isfinite(losses).all()
    start = len(methods(tiny[0])) * math.log(10)  # every method's head starts at 0: uniform logits
    assert losses[:, 0] == pytest.approx(torch.full((2,), start), rel=1e-5)
    tr = study_training(tiny)
    ours = train_ensemble(tr.params, list(tr.trainable), tr.loss, tr.lr, STEPS, optimizer=tr.optimizer,
                          curve_points=STEPS).curves["loss"]  # [steps + 1, E]
    assert ours[0] == pytest.approx(torch.full((2,), start), rel=1e-5)
    # the last 20 steps' mean loss, both below the start (seen: peer 17.5, study 16.7, from 18.4 at this size)
    assert losses[:, -20:].mean() < 0.97 * start and ours[-20:].mean() < 0.97 * start
