"""The data model of section 3.1, batched over models [E].

Patterns are the standard basis e_0..e_{M-1} of R^d. Class +1 owns the label-relevant patterns
e_0..e_{k/2-1}, class -1 owns e_{k/2}..e_{k-1} (k = k_rel; the paper's case is k = 2: mu_1 <-> +1,
mu_2 <-> -1); e_k..e_{M-1} are label-irrelevant. A sample X [L, d] with label y holds round(alpha_* L)
tokens of y's patterns, round(alpha_# L) confusion tokens of the other class's patterns (fewer: the label is
the majority vote over the label-relevant tokens) and irrelevant tokens (+-mu_j, or +mu_j), each token's
pattern drawn uniformly in its group (relevant_draw = "sample": one pattern per class for all of a sample's
tokens), in random order; every token gets noise z with ||z|| = tau in a uniform direction.

label_model = "pattern_pairs" (the default; the model above is "class_majority") gives every label-relevant
pattern its own role. The k relevant patterns form k/2 pairs (e_i, e_{i+k/2}); e_i is associated with +1 and
e_{i+k/2} with -1 (k = 2: the paper's mu_1 <-> +1, mu_2 <-> -1, one pair). A sample holds round(alpha_* L) tokens
+mu_j of one relevant pattern j (uniform over the k) and, on half of the samples, round(alpha_# L) tokens of j's
partner, half of them +mu, half -mu; the label is j's association, flipped when the partner is present (so the
least frequent relevant pattern present decides). The partner's tokens add nothing to the mean token: the mean
says which pattern is j but not whether the label is flipped, so a model whose attention stays at its
initialisation is at chance, and the trained attention has to send each relevant pattern's queries to its
partner (docs/studies/lowrank.md). Irrelevant tokens are as above.
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
    kind: torch.Tensor  # [E, B, L] +1 own-class relevant (pattern_pairs: main), -1 confusion (partner), 0 irrelevant


def relevant_span(cfgs: Sequence[LowRankConfig], device) -> torch.Tensor:
    """[d, k_rel]: orthonormal basis of the label-relevant patterns' span."""
    d, k = shared_value(cfgs, "d"), shared_value(cfgs, "k_rel")
    return torch.eye(d, device=device)[:, :k]


def sample(cfgs: Sequence[LowRankConfig], rng: EnsembleRNG, n: int, *stream) -> Batch:
    """n fresh samples per model (the config's label_model)."""
    if shared_value(cfgs, "label_model") == "pattern_pairs":
        return sample_pattern_pairs(cfgs, rng, n, *stream)
    return sample_class_majority(cfgs, rng, n, *stream)


def partner(j: torch.Tensor, k: int) -> torch.Tensor:
    """The other pattern of j's pair (pattern_pairs): e_i <-> e_{i+k/2}."""
    return (j + k // 2) % k


def association(j: torch.Tensor, k: int) -> torch.Tensor:
    """+1 for e_0..e_{k/2-1}, -1 for e_{k/2}..e_{k-1}: each relevant pattern's own label."""
    return torch.where(j < k // 2, 1, -1)


def sample_pattern_pairs(cfgs: Sequence[LowRankConfig], rng: EnsembleRNG, n: int, *stream) -> Batch:
    """label_model = "pattern_pairs": n_rel tokens +mu_j of one relevant pattern j, on half of the samples n_conf
    sign-balanced tokens of its partner, y = association(j) x (-1 if the partner is present)."""
    dev = rng.device
    d, M, k, L = (shared_value(cfgs, f) for f in ("d", "M", "k_rel", "L"))
    n_rel, n_conf = cfgs[0].n_rel, cfgs[0].n_conf
    main = rng.randint(k, (n,), *stream, "main").to(dev)  # [E, n] the sample's main relevant pattern
    with_partner = rng.uniform((n,), *stream, "partner").to(dev) < 0.5  # [E, n]
    y = (association(main, k) * torch.where(with_partner, -1, 1)).float()
    slot = torch.argsort(rng.uniform((n, L), *stream, "order").to(dev), dim=-1)  # random positions [E, n, L]
    is_main = slot < n_rel
    is_partner = (slot >= n_rel) & (slot < n_rel + n_conf) & with_partner[..., None]
    kind = torch.where(is_main, 1, torch.where(is_partner, -1, 0))
    # main tokens are +mu_j (the spec's x = mu + z); the partner's are half +mu, half -mu, so they add nothing to
    # the mean token: only a query that attends to them selectively can tell that they are there
    rel_sign = torch.where(is_main | (slot < n_rel + n_conf // 2), 1.0, -1.0)
    irr = k + rng.randint(M - k, (n, L), *stream, "irrelevant").to(dev)
    pattern = torch.where(is_main, main[..., None], torch.where(is_partner, partner(main, k)[..., None], irr))
    if shared_value(cfgs, "irrelevant_sign") == "random":
        irr_sign = rng.sign((n, L), *stream, "sign").to(dev)
    else:
        irr_sign = torch.ones(n, L, device=dev)
    X = torch.nn.functional.one_hot(pattern, d).float() * torch.where(kind != 0, rel_sign, irr_sign)[..., None]
    return Batch(_noisy(cfgs, rng, X, n, L, d, stream), y, pattern, kind)


def _noisy(cfgs, rng, X, n, L, d, stream) -> torch.Tensor:
    tau = scalar_tensor(cfgs, "tau", X.device)
    if bool((tau > 0).any()):
        g = rng.normal((n, L, d), *stream, "noise").to(X.device)
        X = X + tau[:, None, None, None] * g / g.norm(dim=-1, keepdim=True)  # ||z|| = tau, uniform direction
    return X


def sample_class_majority(cfgs: Sequence[LowRankConfig], rng: EnsembleRNG, n: int, *stream) -> Batch:
    """label_model = "class_majority": the class-level majority vote of the module docstring."""
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
    return Batch(_noisy(cfgs, rng, X, n, L, d, stream), y, pattern, kind)
