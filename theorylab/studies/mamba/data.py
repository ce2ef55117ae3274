"""The data model of section 3.1, batched over models [E].

Patterns: M orthonormal vectors of R^d (the first M standard basis vectors): o_+ = e_1, o_- = e_2 (class-relevant),
nu_j = e_{3..M} (class-irrelevant). A sequence X = (x_1..x_L) [L, d], label y in {-1, +1} (balanced):

- majority voting: n_r = round(alpha_r L) tokens o_y, n_c = round(alpha_c L) tokens o_-y (n_r > n_c), the rest
  irrelevant, in random positions;
- locality: one o_y token at distance dl_near from the end and one o_-y at distance dl_far > dl_near
  (distance 1 = the last token), the rest irrelevant: the label is the relevant pattern nearer the end.

Irrelevant tokens are +-nu_j (random j, random sign: zero mean, the default) or +nu_j. Every token gets noise
N(0, tau^2 I_d).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.batch import Examples
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.mamba.config import MambaConfig

RELEVANT, CONFUSING, IRRELEVANT = 1, -1, 0  # token kinds


@dataclass
class Batch(Examples):
    X: torch.Tensor  # [E, B, L, d]
    y: torch.Tensor  # [E, B] in {-1, +1}
    kind: torch.Tensor  # [E, B, L]: +1 = o_y (label-consistent), -1 = o_-y (confusing), 0 = irrelevant


def patterns(cfgs: Sequence[MambaConfig], device) -> torch.Tensor:
    """[M, d]: row 0 = o_+, row 1 = o_-, rows 2.. = nu_j."""
    return torch.eye(shared_value(cfgs, "d"), device=device)[: shared_value(cfgs, "M")]


def token_kinds(cfgs: Sequence[MambaConfig], rng: EnsembleRNG, B: int, *stream) -> torch.Tensor:
    """[E, B, L] kinds of each position under the config's regime."""
    L = shared_value(cfgs, "L")
    dev = rng.device
    if shared_value(cfgs, "regime") == "majority":
        n_r = torch.tensor([c.n_r for c in cfgs], device=dev)[:, None, None]  # per model: alpha_r is a scalar
        n_c = torch.tensor([c.n_c for c in cfgs], device=dev)[:, None, None]
        slot = torch.argsort(rng.uniform((B, L), *stream, "order").to(dev), dim=-1)  # a random permutation per row
        return torch.where(slot < n_r, RELEVANT, torch.where(slot < n_r + n_c, CONFUSING, IRRELEVANT))
    near, far = shared_value(cfgs, "dl_near"), shared_value(cfgs, "dl_far")
    kind = torch.zeros(len(cfgs), B, L, dtype=torch.long, device=dev)
    kind[..., L - near] = RELEVANT  # distance dl from the end is position L - dl (0-based)
    kind[..., L - far] = CONFUSING
    return kind


def sample(cfgs: Sequence[MambaConfig], rng: EnsembleRNG, B: int, *stream) -> Batch:
    """B fresh sequences per model."""
    dev = rng.device
    E, (d, L) = len(cfgs), (shared_value(cfgs, "d"), shared_value(cfgs, "L"))
    P = patterns(cfgs, dev)
    y = rng.sign((B,), *stream, "y").to(dev)  # [E, B] balanced labels
    kind = token_kinds(cfgs, rng, B, *stream)  # [E, B, L]
    j = 2 + rng.randint(P.shape[0] - 2, (B, L), *stream, "irrelevant").to(dev)  # which nu_j        [E, B, L]
    irr = P[j]  # [E, B, L, d]
    if shared_value(cfgs, "irrelevant_sign") == "random":
        irr = irr * rng.sign((B, L), *stream, "irrelevant sign").to(dev)[..., None]
    cls = torch.where((kind * y[..., None]) > 0, 0, 1)  # o_+ where the token's class sign is +, else o_-
    X = torch.where((kind != IRRELEVANT)[..., None], P[cls], irr)  # [E, B, L, d]
    tau = scalar_tensor(cfgs, "tau", dev)
    if bool((tau > 0).any()):
        X = X + tau[:, None, None, None] * rng.normal((B, L, d), *stream, "noise").to(dev)
    return Batch(X, y, kind)
