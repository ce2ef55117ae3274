"""A small ViT, ensemble-first: every weight has a leading model axis E, optionally more leading axes
(a lambda grid [G, E, ...]) that broadcast against one data batch X [E, B, 2, 8, 8].

    patches (p x p, 2 channels) -> linear + pos -> depth x [LN, MHSA, +res, LN, MLP(GELU), +res]
    -> LN(mean over tokens) -> frozen shared 2-way head (no bias)

Names follow timm ("blocks.0.attn.qkv.w"), so LwPTV's DEFAULT_LAYER_PATTERN groups the blocks. The body
(BODY keys) is what fine-tuning changes and what task vectors hold; "head.w" is drawn once from head_seed
and frozen (the theory's fixed read-out a); "pre_head.*" is the 10-way head of the proxy pre-training.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from theorylab.core import nn
from theorylab.core.ensemble import shared_value
from theorylab.core.rng import EnsembleRNG, stream_id
from theorylab.studies.colored_digits.config import ColoredDigitsConfig

HEADS = ("head.w", "pre_head.w", "pre_head.b")


def shapes(cfg: ColoredDigitsConfig) -> dict[str, tuple[int, ...]]:
    """Per-model parameter shapes (without E)."""
    D, n, din = cfg.width, (8 // cfg.patch) ** 2, 2 * cfg.patch**2
    out = {"patch.w": (din, D), "patch.b": (D,), "pos": (n, D)}
    for l in range(cfg.depth):
        b = f"blocks.{l}."
        out.update({b + "ln1.w": (D,), b + "ln1.b": (D,), b + "attn.qkv.w": (D, 3 * D), b + "attn.qkv.b": (3 * D,),
                    b + "attn.proj.w": (D, D), b + "attn.proj.b": (D,), b + "ln2.w": (D,), b + "ln2.b": (D,),
                    b + "mlp.fc1.w": (D, cfg.mlp), b + "mlp.fc1.b": (cfg.mlp,), b + "mlp.fc2.w": (cfg.mlp, D),
                    b + "mlp.fc2.b": (D,)})
    out.update({"norm.w": (D,), "norm.b": (D,), "head.w": (D, 2), "pre_head.w": (D, 10), "pre_head.b": (10,)})
    return out


def body_keys(params: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in params if k not in HEADS]


def init_params(cfgs: Sequence[ColoredDigitsConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    """Random init, [E, ...] each: weights N(0, 1/fan_in), pos N(0, 0.02^2), LN (1, 0), biases 0.
    head.w: one draw from head_seed, identical for every model."""
    cfg, E = cfgs[0], len(cfgs)
    head_rng = EnsembleRNG([stream_id("head", shared_value(cfgs, "head_seed"))] * E, device)
    out = {}
    for k, shp in shapes(cfg).items():
        if k.endswith("ln1.w") or k.endswith("ln2.w") or k == "norm.w":
            out[k] = torch.ones(E, *shp, device=device)
        elif k == "pos":
            out[k] = 0.02 * rng.normal(shp, "init", k).to(device)
        elif k.endswith(".w"):
            r = head_rng if k == "head.w" else rng
            out[k] = r.normal(shp, "init", k).to(device) / math.sqrt(shp[0])
        else:
            out[k] = torch.zeros(E, *shp, device=device)
    return out


def features(p: dict[str, torch.Tensor], X: torch.Tensor, patch: int, heads: int) -> torch.Tensor:
    """X [E, B, 2, 8, 8] -> pooled features z [*, E, B, D]."""
    h = nn.linear(nn.patchify(X, patch), p, "patch") + p["pos"].unsqueeze(-3)  # [*, E, B, N, D]
    depth = sum(1 for k in p if k.endswith("attn.qkv.w"))
    for l in range(depth):
        b = f"blocks.{l}."
        # the key third of the qkv bias is held at 0: softmax ignores it (nn.without_key_bias says why)
        h = h + nn.attention(nn.layer_norm(h, p, b + "ln1"), p, b + "attn", heads, key_bias=False)
        h = h + nn.mlp(nn.layer_norm(h, p, b + "ln2"), p, b + "mlp")
    return nn.layer_norm(h.mean(-2), p, "norm", data_dims=1)  # [*, E, B, D]


def logits(p: dict[str, torch.Tensor], head: torch.Tensor, X: torch.Tensor, patch: int, heads: int) -> torch.Tensor:
    """Parity logits [*, E, B, 2] (class 1 = odd) through the frozen head [E, D, 2]."""
    return features(p, X, patch, heads) @ head


def pre_logits(p: dict[str, torch.Tensor], X: torch.Tensor, patch: int, heads: int) -> torch.Tensor:
    """10-way digit logits [E, B, 10] of the proxy pre-training head."""
    return features(p, X, patch, heads) @ p["pre_head.w"] + p["pre_head.b"][:, None, :]


def accuracy(lg: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[*, E, B, 2] logits, y [E, B] in {-1, +1} -> accuracy [*, E]."""
    return (lg.argmax(-1) == (y > 0).long()).float().mean(-1)


def margin(lg: torch.Tensor) -> torch.Tensor:
    """Logit margin odd - even [*, E, B]."""
    return lg[..., 1] - lg[..., 0]
