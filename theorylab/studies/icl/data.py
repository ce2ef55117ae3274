"""The ICL data model (section 1.1): patterns, tasks, prompts. Everything is batched over models [E].

A prompt is contexts C [E, B, L, D] with columns p_i = (x_i; y_i) and a query Q [E, B, D] = (x_q; 0),
with label z [E, B] in {-1, +1}. x = mu + kappa nu; y = +-q.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.icl.config import ICLConfig


@dataclass
class Prompts:
    C: torch.Tensor  # [E, B, L, D] context columns
    Q: torch.Tensor  # [E, B, D] query column
    z: torch.Tensor  # [E, B] query label in {-1, +1}
    ctx_pattern: torch.Tensor  # [E, B, L] index of each context's relevant pattern
    query_pattern: torch.Tensor  # [E, B]
    task: torch.Tensor  # [E, B, 2] the prompt's pattern pair (a, b)


@dataclass
class World:
    """The fixed objects of a data model: pattern sets, tasks, label embedding (per model)."""
    relevant: torch.Tensor  # [E, P, d_X] relevant patterns (IDR or ODR)
    irrelevant: torch.Tensor  # [E, M2, d_X] irrelevant patterns (IDI or ODI)
    tasks: torch.Tensor  # [T, 2] ordered pattern pairs (a, b): +1 on a, -1 on b
    q: torch.Tensor  # [d_Y] label embedding
    kappa: torch.Tensor  # [E]

    def __post_init__(self) -> None:
        self.relevant_basis = _scaled_basis(self.relevant)
        self.irrelevant_basis = _scaled_basis(self.irrelevant)

    def subset(self, models: slice) -> "World":
        return World(self.relevant[models], self.irrelevant[models], self.tasks, self.q, self.kappa[models])


def _scaled_basis(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """table [E, P, d] -> (column [E, P], value [E, P]) when every row is value * e_column (the in-domain
    patterns are), else None. Prompts are then written by scatter instead of row lookups (same numbers)."""
    nonzero = table != 0
    if bool((nonzero.sum(-1) > 1).any()):
        return None
    col = nonzero.float().argmax(-1)  # an all-zero row maps to column 0 with value 0
    return col, torch.gather(table, -1, col[..., None])[..., 0]


def all_tasks(P: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(P) for b in range(P) if a != b]


def split_tasks(cfg: ICLConfig) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(T_tr, unseen in-domain test tasks)."""
    train = [(a, b) for a, b in all_tasks(cfg.M1) if (b - a) % cfg.M1 in cfg.task_offsets]
    test = [t for t in all_tasks(cfg.M1) if t not in train]
    return train, test


def idr_patterns(cfgs: Sequence[ICLConfig], device) -> torch.Tensor:
    """[E, M1, d_X]: mu_j = beta e_j."""
    M1, d_X = shared_value(cfgs, "M1"), shared_value(cfgs, "d_X")
    beta = scalar_tensor(cfgs, "beta", device)
    return beta[:, None, None] * torch.eye(M1, d_X, device=device).expand(len(cfgs), M1, d_X)


def idi_patterns(cfgs: Sequence[ICLConfig], device) -> torch.Tensor:
    """[E, M2, d_X]: nu_k = e_{M1+k}, orthogonal to every IDR pattern."""
    M1, M2, d_X = (shared_value(cfgs, k) for k in ("M1", "M2", "d_X"))
    eye = torch.eye(d_X, device=device)[M1 : M1 + M2]
    return eye.expand(len(cfgs), M2, d_X).clone()


def odr_patterns(cfgs: Sequence[ICLConfig], S1: torch.Tensor, device) -> torch.Tensor:
    """[E, M1_ood, d_X]: mu'_j combines IDR patterns mu_{2j}, mu_{2j+1} with coefficients summing to S1.

    literal: S1 (c mu_a + (1-c) mu_b), not renormalised (the calibration note: only this makes S1 matter);
    unit: c1, c2 = (S1 +- sqrt(2 - S1^2)) / 2, orthonormal for every S1 <= sqrt(2)."""
    M1_ood = shared_value(cfgs, "M1_ood")
    construction = shared_value(cfgs, "ood_construction")
    mu = idr_patterns(cfgs, device)
    if construction == "literal":
        c = scalar_tensor(cfgs, "ood_mix", device)
        c1, c2 = S1 * c, S1 * (1 - c)
    else:
        root = torch.sqrt(torch.clamp(2 - S1**2, min=0))
        c1, c2 = (S1 + root) / 2, (S1 - root) / 2
    return c1[:, None, None] * mu[:, 0 : 2 * M1_ood : 2] + c2[:, None, None] * mu[:, 1 : 2 * M1_ood : 2]


def odi_patterns(cfgs: Sequence[ICLConfig], rng: EnsembleRNG, device) -> torch.Tensor:
    """[E, M2, d_X]: nu'_k = R nu_k with a random orthogonal R inside span{nu} (so ODI in span(IDI))."""
    R = rng.orthogonal(shared_value(cfgs, "M2"), "odi_rotation").to(device)  # [E, M2, M2]
    return torch.einsum("ekj,ejd->ekd", R, idi_patterns(cfgs, device))


def label_embedding(cfgs: Sequence[ICLConfig], device) -> torch.Tensor:
    q = torch.zeros(shared_value(cfgs, "d_Y"), device=device)
    q[0] = 1.0
    return q


def in_domain_world(cfgs: Sequence[ICLConfig], device, tasks: list[tuple[int, int]]) -> World:
    return World(idr_patterns(cfgs, device), idi_patterns(cfgs, device),
                 torch.tensor(tasks, device=device), label_embedding(cfgs, device),
                 scalar_tensor(cfgs, "kappa", device))


def out_of_domain_world(cfgs: Sequence[ICLConfig], rng: EnsembleRNG, device, S1: torch.Tensor | None = None) -> World:
    S1 = scalar_tensor(cfgs, "S1", device) if S1 is None else S1.to(device)
    return World(odr_patterns(cfgs, S1, device), odi_patterns(cfgs, rng, device),
                 torch.tensor(all_tasks(shared_value(cfgs, "M1_ood")), device=device),
                 label_embedding(cfgs, device), scalar_tensor(cfgs, "kappa", device))


def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table [E, P, d], index [E, ...] -> [E, N, d]: per-model row lookup through one flat index
    (several times faster on CPU than gather with an expanded index; same values)."""
    E, P, d = table.shape
    flat = index.reshape(E, -1) + torch.arange(E, device=index.device)[:, None] * P
    return table.reshape(E * P, d)[flat]


def sample_prompts(world: World, rng: EnsembleRNG, alpha: torch.Tensor, B: int, L: int, *stream) -> Prompts:
    """Prompts for tasks drawn uniformly from world.tasks (slide 18): each context's relevant pattern is
    a or b with probability alpha/2 each, otherwise one of the other patterns uniformly; labels are
    +1 on a, -1 on b, and a fresh fair coin elsewhere. The query's pattern is a or b, equally likely."""
    E, P, _ = world.relevant.shape
    dev = world.relevant.device
    task = world.tasks[rng.randint(world.tasks.shape[0], (B,), *stream, "task").to(dev)]  # [E, B, 2]
    a, b = task[..., 0], task[..., 1]
    lo, hi = torch.minimum(a, b)[..., None], torch.maximum(a, b)[..., None]
    u = rng.uniform((B, L), *stream, "which").to(dev)
    al = alpha[:, None, None]
    other = rng.randint(max(P - 2, 1), (B, L), *stream, "other").to(dev)
    other = other + (other >= lo).long()
    other = other + (other >= hi).long()
    pat = torch.where(u < al / 2, a[..., None], torch.where(u < al, b[..., None], other))  # [E, B, L]
    coin = rng.sign((B, L), *stream, "coin").to(dev)
    y = torch.where(pat == a[..., None], 1.0, torch.where(pat == b[..., None], -1.0, coin))  # [E, B, L]
    q_is_a = rng.uniform((B,), *stream, "query").to(dev) < 0.5
    q_pat = torch.where(q_is_a, a, b)
    z = torch.where(q_is_a, 1.0, -1.0)

    d_X, D = world.relevant.shape[-1], world.relevant.shape[-1] + world.q.shape[0]

    def features(out: torch.Tensor, patterns: torch.Tensor, tag: str) -> None:
        """Writes x = mu_pattern + kappa nu (random nu, kappa) into out[..., :d_X]; out [E, B, n, D] is zero."""
        n = patterns.shape[-1]
        k = rng.randint(world.irrelevant.shape[1], (B, n), *stream, tag, "nu").to(dev)
        kap = (2 * rng.uniform((B, n), *stream, tag, "kappa").to(dev) - 1) * world.kappa[:, None, None]
        if world.relevant_basis is not None and world.irrelevant_basis is not None:
            flat = out.view(E, B * n, D)
            (mu_col, mu_val), (nu_col, nu_val) = world.relevant_basis, world.irrelevant_basis
            flat.scatter_(-1, _rows(mu_col[..., None], patterns), _rows(mu_val[..., None], patterns))
            flat.scatter_add_(-1, _rows(nu_col[..., None], k), kap.reshape(E, -1, 1) * _rows(nu_val[..., None], k))
            return
        mu = _rows(world.relevant, patterns)  # [E, B*n, d_X]
        nu = _rows(world.irrelevant, k)
        out[..., :d_X] = torch.addcmul(mu, kap.reshape(E, -1, 1), nu).reshape(E, B, n, d_X)

    C = torch.zeros(E, B, L, D, device=dev)  # p_i = (x_i; y_i)
    features(C, pat, "ctx")
    C[..., d_X:] = y[..., None] * world.q
    Q = torch.zeros(E, B, 1, D, device=dev)  # p_query = (x_q; 0)
    features(Q, q_pat[..., None], "query")
    Q = Q[:, :, 0]
    return Prompts(C, Q, z, pat, q_pat, task)
