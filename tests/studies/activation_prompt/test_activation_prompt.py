"""The activation-prompt study: data, the ensemble convolution and norms, prompts as the spec defines them, and the
claims at the tiny config."""
import pytest
import torch
import torch.nn.functional as F

from theorylab.core.config import ConfigError
from theorylab.core.ensemble import rng_for
from theorylab.core.study import get_study
from theorylab.studies.activation_prompt.config import TINY, APConfig
from theorylab.studies.activation_prompt.data import digits, target_split, transform
from theorylab.studies.activation_prompt.model import act_shape, conv3x3, forward, global_share, init_params, n_layers
from theorylab.studies.activation_prompt.train import method_params


def test_target_subsets_are_per_model_disjoint_from_test_and_transformed():
    cfgs = [APConfig(seed=s, **TINY) for s in range(2)]
    (Xs, ys), (Xv, yv), (Xt, yt) = target_split(rng_for(cfgs, "cpu"), 4, "rot90_invert", 40, 20, "cpu")
    assert Xs.shape == (2, 40, 1, 8, 8) and Xv.shape == (2, 20, 1, 8, 8) and Xt.shape[0] == len(yt) == 450
    assert not torch.equal(ys[0], ys[1])  # each model its own subset
    raw = digits(4)["test"][0]
    assert torch.allclose(Xt, 1.0 - torch.rot90(raw, 1, dims=(-2, -1)))
    assert torch.equal(transform(transform(raw, "flip"), "flip"), raw)


def test_grouped_convolution_is_each_models_convolution():
    x, w = torch.randn(3, 4, 2, 8, 8), torch.randn(3, 5, 2, 3, 3)
    got = conv3x3(x, w)
    for e in range(3):
        torch.testing.assert_close(got[e], F.conv2d(x[e], w[e], padding=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["cnn", "vit"])
def test_a_zero_prompt_is_the_frozen_backbone_and_vp_is_ap_at_layer_0(arch):
    cfg = APConfig(arch=arch, **TINY)
    p = init_params(cfg, rng_for([cfg], "cpu"), "cpu")
    p["thead.w"] = torch.randn_like(p["thead.w"])
    X = torch.rand(1, 6, 1, 8, 8)
    q, trainable = method_params(cfg, "vp", p)
    assert trainable == ["act.0", "thead.w", "thead.b"] and q["act.0"].shape == (1, 1, 8, 8)
    torch.testing.assert_close(forward(q, X, cfg), forward(p, X, cfg))
    q["act.0"] = torch.full_like(q["act.0"], 0.3)
    torch.testing.assert_close(forward(q, X, cfg), forward(p, X + 0.3, cfg))


def test_global_share_is_one_for_constant_maps_and_small_for_alternating_ones():
    const = torch.ones(1, 2, 4, 8, 8)
    alt = const * (torch.arange(64).reshape(8, 8) % 2 * 2 - 1)
    assert global_share(const, "cnn").item() == pytest.approx(1.0)
    assert global_share(alt, "cnn").item() == pytest.approx(0.0, abs=1e-6)


def test_bad_input_names_the_field():
    with pytest.raises(ConfigError, match="arch"):
        get_study("activation_prompt").config("quick", arch="rnn")
    with pytest.raises(ConfigError, match="n_target"):
        get_study("activation_prompt").config("quick", n_target=5)


@pytest.mark.parametrize("arch", ["cnn", "vit"])
def test_a_shared_prompt_right_after_a_norm_is_that_norms_bias_tuning(arch):
    """Spec 3.3, exact algebra (was the `ap_is_norm_bias` claim): a channel- (BN) / token-shared (LN) prompt added
    right after a norm gives the same forward as adding it to the norm's bias, so the two adaptations follow the same
    loss trajectory from the same start; the same shared prompt at the block output (the control) does not."""
    from theorylab.core.train import train_ensemble
    from theorylab.studies.activation_prompt.train import adaptation, middle_block, pretrain

    cfgs = [APConfig(seed=s, arch=arch, **{**TINY, "depth": 2, "steps": 8}) for s in range(2)]
    cfg = cfgs[0]
    backbone, _, _ = pretrain(cfgs, rng_for(cfgs, "cpu"), "cpu")
    m = middle_block(cfg)
    norm = f"blocks.{m}.bn" if arch == "cnn" else f"blocks.{m}.ln1"
    delta = torch.randn(2, backbone[f"{norm}.b"].shape[-1])
    X = torch.rand(2, 5, 1, 8, 8)
    base, _ = method_params(cfg, "linear", backbone)
    base["thead.w"] = torch.randn_like(base["thead.w"])
    prompted = {**base, f"normap.{m}": delta}
    biased = {**base, f"{norm}.b": base[f"{norm}.b"] + delta}
    torch.testing.assert_close(forward(prompted, X, cfg), forward(biased, X, cfg), atol=1e-5, rtol=1e-5)

    tr = adaptation(cfgs, rng_for(cfgs, "cpu"), backbone, ("normap", "normbias"), "cpu")
    curves = train_ensemble(tr.params, list(tr.trainable), tr.loss, tr.lr, tr.steps, optimizer=tr.optimizer).curves
    loss = {how: curves[f"loss_{how}"] for how in ("normap", "normbias")}
    assert float((loss["normap"] - loss["normbias"]).abs().max()) <= 1e-5
    ctrl_layer = m + 2 if arch == "cnn" else m + 1  # the same shared prompt at the block output
    control = {**base, f"acts.{ctrl_layer}": delta}
    assert float((forward(control, X, cfg) - forward(biased, X, cfg)).abs().max()) > 1e-3


@pytest.mark.parametrize("arch", ["cnn", "vit"])
def test_backward_bytes_are_fixed_by_shapes_and_fall_with_the_prompts_depth(arch):
    """Spec 3.5 (was the `fig_ap_efficiency` claim, which graded this one deterministic number over 5 seeds): the
    bytes autograd saves for backward depend on the shapes and the prompt's layer only (two backbones with different
    weights save the same bytes), AP at every layer >= 1 saves fewer than VP, and the CNN's fall with depth."""
    from theorylab.studies.activation_prompt.costs import method_costs

    cfgs = [APConfig(seed=s, arch=arch, **{**TINY, "depth": 3}) for s in range(2)]
    cfg = cfgs[0]
    p = init_params(cfg, rng_for(cfgs, "cpu"), "cpu")
    a = method_costs(cfg, p, timed=False)
    b = method_costs(cfg, {k: v[1:] for k, v in p.items()}, timed=False)
    assert {m: r["saved_bytes"] for m, r in a.items()} == {m: r["saved_bytes"] for m, r in b.items()}
    by_layer = [a["vp" if l == 0 else f"ap{l}"]["saved_bytes"] for l in range(n_layers(cfg) + 1)]
    assert all(x < by_layer[0] for x in by_layer[1:]), by_layer
    if arch == "cnn":
        assert all(x > y for x, y in zip(by_layer, by_layer[1:])), by_layer
    assert a["vp"]["params"] == 64 + cfg_feat(cfg) * 10 + 10 and a["full"]["params"] > a["norm"]["params"]


def cfg_feat(cfg) -> int:
    return cfg.channels if cfg.arch == "cnn" else cfg.width


def test_the_deepest_cnn_prompt_is_a_bias_of_the_head_and_one_layer_shallower_is_not():
    """After the global average pool, a prompt added to the last block's output shifts the pooled features by its
    spatial mean: logits = W pool(h) + (W mean(delta) + b), linear probing with the head's bias moved. The claims
    therefore never choose that layer as the AP layer (claims.ap_layers). One layer shallower, the same kind of
    prompt goes through a convolution, BN and ReLU: the logit shift then depends on the image."""
    from theorylab.studies.activation_prompt.claims import ap_layers, head_bias_layer

    cfg = APConfig(arch="cnn", **{**TINY, "depth": 2})
    p = init_params(cfg, rng_for([cfg], "cpu"), "cpu")
    p["thead.w"], p["thead.b"] = torch.randn_like(p["thead.w"]), torch.randn_like(p["thead.b"])
    L = n_layers(cfg)
    assert head_bias_layer(cfg) == L and ap_layers(cfg) == list(range(1, L))
    X = torch.rand(1, 7, 1, 8, 8)
    delta = torch.randn(1, *act_shape(cfg, L))
    prompted = forward({**p, f"act.{L}": delta}, X, cfg)
    biased = forward({**p, "thead.b": p["thead.b"] + delta.mean((-2, -1)) @ p["thead.w"][0]}, X, cfg)
    torch.testing.assert_close(prompted, biased, atol=1e-5, rtol=1e-5)
    shift = forward({**p, f"act.{L - 1}": delta}, X, cfg) - forward(p, X, cfg)  # [1, 7, 10]
    assert float((shift - shift.mean(1, keepdim=True)).abs().max()) > 1e-3  # differs from image to image
    vit = APConfig(arch="vit", **TINY)
    assert head_bias_layer(vit) is None and ap_layers(vit) == list(range(1, n_layers(vit) + 1))
