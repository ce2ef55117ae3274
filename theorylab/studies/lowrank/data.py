"""The data model of section 3.1, batched over models [E].

Patterns are the standard basis e_0..e_{M-1} of R^d. Class +1 owns the label-relevant patterns
e_0..e_{k/2-1}, class -1 owns e_{k/2}..e_{k-1} (k = k_rel; the paper's case is k = 2: mu_1 <-> +1,
mu_2 <-> -1); e_k..e_{M-1} are label-irrelevant. A sample X [L, d] with label y holds round(alpha_* L)
tokens of y's patterns, round(alpha_# L) confusion tokens of the other class's patterns (fewer: the label is
the majority vote over the label-relevant tokens) and irrelevant tokens (+-mu_j, or +mu_j), each token's
pattern drawn uniformly in its group (relevant_draw = "sample": one pattern per class for all of a sample's
tokens), in random order; every token gets noise z with ||z|| = tau in a uniform direction.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.batch import Examples
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.lowrank.config import LowRankConfig


@dataclass
class Batch(Examples):
    X: torch.Tensor  # [E, B, L, d]
    y: torch.Tensor  # [E, B] in {-1, +1}
    pattern: torch.Tensor  # [E, B, L] pattern index of each token
    kind: torch.Tensor  # [E, B, L] +1 own-class relevant, -1 confusion, 0 irrelevant


def relevant_span(cfgs: Sequence[LowRankConfig], device) -> torch.Tensor:
    """[d, k_rel]: orthonormal basis of the label-relevant patterns' span."""
    d, k = shared_value(cfgs, "d"), shared_value(cfgs, "k_rel")
    return torch.eye(d, device=device)[:, :k]


def sample(cfgs: Sequence[LowRankConfig], rng: EnsembleRNG, n: int, *stream) -> Batch:
    """n fresh samples per model."""
    dev = rng.device
    d, M, k, L = (shared_value(cfgs, f) for f in ("d", "M", "k_rel", "L"))
    n_rel, n_conf = cfgs[0].n_rel, cfgs[0].n_conf
    half = k // 2
    y = rng.sign((n,), *stream, "y").to(dev)  # [E, n]
    slot = torch.argsort(rng.uniform((n, L), *stream, "order").to(dev), dim=-1)  # random positions [E, n, L]
    kind = torch.where(slot < n_rel, 1, torch.where(slot < n_rel + n_conf, -1, 0))  # [E, n, L]
    cls = torch.where(kind * y[..., None] > 0, 0, 1)  # class of a relevant token: 0 -> +1, 1 -> -1
    if shared_value(cfgs, "relevant_draw") == "token":
        j = rng.randint(half, (n, L), *stream, "relevant")  # [E, n, L] each token its own pattern in its class
    else:
        j = rng.randint(half, (n, 2), *stream, "relevant").to(dev).gather(-1, cls)  # one pattern per class per sample
    rel = cls * half + j  # [E, n, L]
    irr = k + rng.randint(M - k, (n, L), *stream, "irrelevant")
    pattern = torch.where(kind != 0, rel, irr)
    X = torch.nn.functional.one_hot(pattern, d).float()  # mu of each token                  [E, n, L, d]
    if shared_value(cfgs, "irrelevant_sign") == "random":  # zero-mean irrelevant tokens
        X = X * torch.where(kind == 0, rng.sign((n, L), *stream, "sign").to(dev), 1.0)[..., None]
    tau = scalar_tensor(cfgs, "tau", dev)
    if bool((tau > 0).any()):
        g = rng.normal((n, L, d), *stream, "noise").to(dev)
        X = X + tau[:, None, None, None] * g / g.norm(dim=-1, keepdim=True)  # ||z|| = tau, uniform direction
    return Batch(X, y, pattern, kind)
