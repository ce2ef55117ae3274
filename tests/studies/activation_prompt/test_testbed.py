"""The activation-prompt theory testbed (spec 3.4): its data model, the two frozen backbones, the per-sample
reference, the sign blindness that makes a prompt necessary, and the sample-need read-out of its claims."""
import math

import pytest
import torch

from theorylab.core.ensemble import rng_for
from theorylab.core.progress import QUIET
from theorylab.core.study import get_study
from theorylab.studies.activation_prompt.config import TINY, APConfig
from theorylab.studies.activation_prompt.testbed import (forward, global_share, n_grid, n_label_tokens,
                                                         reference_forward, sample)
from theorylab.studies.activation_prompt.testbed_claims import TARGET, sample_need

TB = {**TINY, "part": "testbed"}


def _weights(cfg, E=2, prompts=True):
    g = torch.Generator().manual_seed(1)
    rng = rng_for([cfg.replace(seed=s) for s in range(E)], "cpu")
    d, P = cfg.tb_dim, cfg.tb_tokens
    p = {"tb.Q": rng.orthogonal(d, "testbed", "patterns"), "w": torch.randn(E, d, generator=g),
         "b": torch.randn(E, 1, generator=g)}
    if prompts:
        p.update({"vp": torch.randn(E, P, d, generator=g), "ap1": torch.randn(E, P, 2 * d, generator=g)})
    return rng, p


def test_samples_follow_the_data_model_and_training_sets_are_nested_across_n():
    cfg = APConfig(**{**TB, "tb_tokens": 8, "tb_dim": 4, "tb_alpha": 0.25, "tb_noise": 0.0})
    rng, p = _weights(cfg, prompts=False)
    X, y = sample(rng, cfg, 6, "train", "cpu")
    proj = X @ p["tb.Q"][:, None]  # [E, n, P, d]: coordinates in the pattern basis
    on_mu = proj[..., 0].abs() > 0.5
    assert torch.equal(on_mu.sum(-1), torch.full((2, 6), n_label_tokens(cfg)))  # exactly k label tokens
    torch.testing.assert_close(proj[..., 0][on_mu], (y[..., None].expand_as(on_mu))[on_mu] * cfg.tb_signal)
    assert torch.allclose(proj.abs().sum(-1), torch.full_like(proj[..., 0], cfg.tb_signal))  # one pattern a token
    X4, y4 = sample(rng, cfg, 4, "train", "cpu")
    assert torch.equal(X[:, :4], X4) and torch.equal(y[:, :4], y4)
    a, b = cfg.replace(tb_n=4), cfg.replace(tb_n=64)
    assert a.world_hash == b.world_hash and a.hash != b.hash


@pytest.mark.parametrize("backbone", ["local", "global"])
def test_the_forward_equals_the_per_sample_reference(backbone):
    cfg = APConfig(**TB)
    rng, p = _weights(cfg)
    X, _ = sample(rng, cfg, 5, "test", "cpu")
    got = forward(p, X, cfg, backbone)
    for e in range(2):
        torch.testing.assert_close(got[e], reference_forward(p, X, cfg, backbone, e), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["local", "global"])
def test_the_frozen_backbone_is_blind_to_the_labels_sign_until_a_prompt_breaks_the_symmetry(backbone):
    """Reflecting every token's label-pattern coordinate (which flips y) leaves the prompt-free logits unchanged:
    linear probing is at chance by construction. A VP along the label pattern, or an AP that shifts the two
    sign detectors of the label pattern apart, makes the logits change under the same reflection."""
    cfg = APConfig(**TB)
    rng, p = _weights(cfg, prompts=False)
    X, _ = sample(rng, cfg, 7, "test", "cpu")
    mu = p["tb.Q"][:, :, 0]  # [E, d]
    Xr = X - 2 * (X * mu[:, None, None]).sum(-1, keepdim=True) * mu[:, None, None]
    torch.testing.assert_close(forward(p, Xr, cfg, backbone), forward(p, X, cfg, backbone), atol=1e-5, rtol=1e-5)
    vp = {**p, "vp": 0.5 * mu[:, None].expand(-1, cfg.tb_tokens, -1)}
    ap = torch.zeros(2, cfg.tb_tokens, 2 * cfg.tb_dim)
    ap[..., 0], ap[..., cfg.tb_dim] = 0.5, -0.5  # + detector of mu up, - detector down
    for q in (vp, {**p, "ap1": ap}):
        assert float((forward(q, Xr, cfg, backbone) - forward(q, X, cfg, backbone)).abs().max()) > 1e-3


def test_layer_one_is_global_on_the_global_backbone_only():
    cfg = APConfig(**{**TB, "tb_tokens": 8, "tb_dim": 4})
    rng, p = _weights(cfg, prompts=False)
    X, _ = sample(rng, cfg, 50, "test", "cpu")
    g = {}
    for backbone in ("local", "global"):
        acts: list = []
        forward(p, X, cfg, backbone, acts)
        g[backbone] = global_share(acts[0])
    assert torch.allclose(g["global"], torch.ones(2)) and bool((g["local"] < 0.6).all())


def test_an_ensemble_of_testbed_cells_trains_what_each_trains_alone():
    s = get_study("activation_prompt")
    cfgs = s.seed_configs("quick", 3, **TB)
    together = s.train_group(cfgs, torch.device("cpu"), QUIET)
    alone = s.train_group([cfgs[1]], torch.device("cpu"), QUIET)
    for k, v in alone.params.items():
        torch.testing.assert_close(together.params[k][1], v[0], atol=1e-5, rtol=1e-5, msg=k)
    for k, v in alone.metrics[0].items():
        assert together.metrics[1][k] == pytest.approx(v, abs=1e-5), k
    assert together.status == ["done"] * 3 and "tb_test_acc_global_ap1" in alone.metrics[0]


def test_sample_need_interpolates_in_log_n_and_is_censored_at_both_ends():
    grid = [4, 8, 16, 32]
    assert sample_need(grid, [TARGET, 0.9, 0.9, 0.9]) == 4.0  # reached at the smallest n: at most n_min
    assert sample_need(grid, [0.5, 0.5, 0.5, 0.7]) == 64.0  # never: censored at 2 x n_max
    mid = sample_need(grid, [0.5, TARGET - 0.05, TARGET + 0.05, 0.9])
    assert mid == pytest.approx(2 ** 3.5)
    assert math.isnan(sample_need(grid, [0.5, math.nan, 0.9, 0.9]))
    assert n_grid(APConfig(tb_n_min=4, tb_n_max=40)) == [4, 8, 16, 32]


def test_a_grid_that_runs_backwards_is_refused_naming_the_field():
    from theorylab.core.config import ConfigError
    with pytest.raises(ConfigError, match="tb_n_min"):
        get_study("activation_prompt").config("quick", tb_n_min=64, tb_n_max=8)
