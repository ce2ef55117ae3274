"""The shallow-ViT data models, batched over models [E].

Synthetic (section 1.1): patterns e_1..e_M of R^d; mu_1 = e_1 (label +1), mu_2 = e_2 (label -1), nu_j = e_{2+j}.
An example has n_* = round(alpha_* L) tokens mu_y (label-relevant, S_*), n_# = round(conf_ratio n_*) tokens mu_-y
(confusion, S_#), n_sp = round(alpha_sp L) spurious tokens (nu_1 when s = +1, nu_2 when s = -1, with s = y with
probability p_sp), the rest irrelevant nu_j drawn uniformly (from nu_3.. when spurious tokens exist). Positions are
shuffled; each token gets noise z with ||z|| = tau u, u ~ U[0, 1], a uniform direction (tau_big on a fraction
noisy_frac of the tokens). The label is the majority vote of the discriminative tokens: n_* > n_# by construction.

Digits (real images): scikit-learn's 8x8 digits of two classes, cut into 16 2x2 patches; a token is the patch's 4
pixels (in [0, 1]) and its one-hot position (16). n_paste patches per image are replaced by a marker patch,
[1, 0, 0, 1] for s = +1 and [0, 1, 1, 0] for s = -1, with s = y with probability p_sp (training) or p_sp_test (test).

Roles per token: 0 irrelevant, 1 label-relevant, 2 confusion, 3 spurious.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from theorylab.core.batch import Examples
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.vit.config import ViTConfig

IRRELEVANT, RELEVANT, CONFUSION, SPURIOUS = 0, 1, 2, 3


@dataclass
class Batch(Examples):
    X: torch.Tensor  # [E, B, L, D] tokens
    y: torch.Tensor  # [E, B] labels in {-1, +1}
    role: torch.Tensor  # [E, B, L] 0 irrelevant, 1 relevant, 2 confusion, 3 spurious
    noisy: torch.Tensor  # [E, B, L] bool: token carries the large noise tau_big


def _ranks(rng: EnsembleRNG, shape, *stream) -> torch.Tensor:
    """[E, *shape] a uniformly random rank 0..L-1 of each token inside its example (last axis)."""
    return rng.uniform(shape, *stream).argsort(-1).argsort(-1)


def synthetic(cfgs: Sequence[ViTConfig], rng: EnsembleRNG, B: int, *stream, test: bool = False) -> Batch:
    """B examples per model of the synthetic data model (module docstring); stream names the draw."""
    E, dev = len(cfgs), rng.device
    M, d, L = (shared_value(cfgs, k) for k in ("M", "d", "L"))
    counts = torch.tensor([c.counts() for c in cfgs], device=dev)  # [E, 3]: n_*, n_#, n_sp
    n_star, n_conf, n_sp = (counts[:, i, None, None] for i in range(3))
    y = rng.sign((B,), *stream, "y").to(dev)  # [E, B]
    rank = _ranks(rng, (B, L), *stream, "position").to(dev)  # [E, B, L]
    role = torch.where(rank < n_star, RELEVANT, torch.where(rank < n_star + n_conf, CONFUSION,
                       torch.where(rank < n_star + n_conf + n_sp, SPURIOUS, IRRELEVANT)))
    yy = y[..., None].expand(E, B, L)
    p_sp = torch.tensor([c.p_sp_test if test else c.p_sp for c in cfgs], device=dev)[:, None, None]
    s = torch.where(rng.uniform((B, L), *stream, "spurious").to(dev) < p_sp, yy, -yy)
    first_bg = 4 if bool((counts[:, 2] > 0).any()) else 2  # nu_1, nu_2 reserved for spurious tokens
    bg = first_bg + rng.randint(M - first_bg, (B, L), *stream, "irrelevant").to(dev)
    pattern = torch.where(role == RELEVANT, (yy < 0).long(), torch.where(role == CONFUSION, (yy > 0).long(),
                          torch.where(role == SPURIOUS, 2 + (s < 0).long(), bg)))
    n_noisy = torch.tensor([round(c.noisy_frac * L) for c in cfgs], device=dev)[:, None, None]
    noisy = _ranks(rng, (B, L), *stream, "noisy").to(dev) < n_noisy
    bound = torch.where(noisy, scalar_tensor(cfgs, "tau_big", dev)[:, None, None],
                        scalar_tensor(cfgs, "tau", dev)[:, None, None])  # [E, B, L]
    g = rng.normal((B, L, d), *stream, "noise").to(dev)
    z = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12) * (bound * rng.uniform((B, L), *stream, "radius").to(dev))[..., None]
    X = torch.nn.functional.one_hot(pattern, d).float() + z  # x_l = p(l) + z_l
    return Batch(X, y, role, noisy)


@lru_cache(maxsize=8)
def digit_tokens(pos: int, neg: int, test_every: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """split -> (patch pixels [N, 16, 4] in [0, 1], labels [N]) for the two digits; image i of load_digits() is a
    test image iff i % test_every == 0."""
    from sklearn.datasets import load_digits

    from theorylab.core.nn import patchify

    d = load_digits()
    img = torch.tensor(d.images, dtype=torch.float32) / 16.0
    digit = torch.tensor(d.target)
    keep = (digit == pos) | (digit == neg)
    test = torch.arange(len(digit)) % test_every == 0
    out = {}
    for name, sel in (("train", keep & ~test), ("test", keep & test)):
        out[name] = (patchify(img[sel][:, None], 2), torch.where(digit[sel] == pos, 1.0, -1.0))
    return out


MARKERS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])  # s = +1, s = -1


def digits(cfgs: Sequence[ViTConfig], rng: EnsembleRNG, idx: torch.Tensor, split: str, *stream) -> Batch:
    """Images idx [E, n] of `split` as tokens [E, n, 16, 20], n_paste marker patches pasted per image."""
    dev = rng.device
    pix, lab = digit_tokens(shared_value(cfgs, "digit_pos"), shared_value(cfgs, "digit_neg"),
                            shared_value(cfgs, "test_every"))[split]
    pix, lab = pix.to(dev)[idx], lab.to(dev)[idx]  # [E, n, 16, 4], [E, n]
    E, n = idx.shape
    p = torch.tensor([c.p_sp if split == "train" else c.p_sp_test for c in cfgs], device=dev)[:, None]
    s = torch.where(rng.uniform((n,), *stream, "marker").to(dev) < p, lab, -lab)  # [E, n]
    pasted = _ranks(rng, (n, 16), *stream, "paste").to(dev) < shared_value(cfgs, "n_paste")  # [E, n, 16]
    marker = MARKERS.to(dev)[(s < 0).long()][:, :, None, :]  # [E, n, 1, 4]
    pix = torch.where(pasted[..., None], marker, pix)
    pos = torch.eye(16, device=dev).expand(E, n, 16, 16)
    X = torch.cat([pix, pos], dim=-1)
    role = torch.where(pasted, SPURIOUS, IRRELEVANT)
    return Batch(X, lab, role, torch.zeros_like(pasted))


def digits_count(cfgs: Sequence[ViTConfig], split: str) -> int:
    return len(digit_tokens(shared_value(cfgs, "digit_pos"), shared_value(cfgs, "digit_neg"),
                            shared_value(cfgs, "test_every"))[split][1])


def training_pool(cfgs: Sequence[ViTConfig], rng: EnsembleRNG) -> Batch | None:
    """The N training examples of each model ([E, max N, ...]; model e uses its first n_train), or None for fresh
    synthetic samples every step (n_train = 0)."""
    N = max(c.n_train for c in cfgs)
    if shared_value(cfgs, "data") == "digits":
        total = digits_count(cfgs, "train")
        N = min(N, total) if N else total
        idx = rng.permutation(total, "subset")[:, :N].to(rng.device)
        return digits(cfgs, rng, idx, "train", "pool")
    if any(c.n_train == 0 for c in cfgs):
        if N:
            raise ValueError("field 'n_train': fresh sampling (0) and a fixed N cannot share one ensemble")
        return None
    return synthetic(cfgs, rng, N, "pool")


def test_batch(cfgs: Sequence[ViTConfig], rng: EnsembleRNG, block: int, count: int, *stream) -> Batch:
    """Fresh test examples of block `block` (keyed per model: the same whatever the ensemble)."""
    if shared_value(cfgs, "data") == "digits":
        total = digits_count(cfgs, "test")
        idx = (torch.arange(count, device=rng.device) + block * 500) % total
        return digits(cfgs, rng, idx.expand(len(cfgs), count), "test", *stream, block)
    return synthetic(cfgs, rng, count, *stream, block, test=True)
