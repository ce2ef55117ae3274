"""The data model of section 1.1, batched over models [E].

A sequence X = (x_1..x_P) [P, d] holds n_star tokens y mu_T, n_hash tokens -y mu_T (n_hash < n_star, so
y = +1 exactly when mu_T tokens outnumber -mu_T tokens) and irrelevant tokens, in random order, plus noise
sigma N(0, I)/sqrt(d). Irrelevant tokens are +-v_j with a random sign (zero mean, the default) or +v_j
(config irrelevant_sign = "plus": their mean is a direction shared by every task, of norm ~ 1/sqrt(M)).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.task_vectors.config import TaskVectorConfig

TASKS = ("T1", "T2")  # the two fine-tuned tasks of every cell


@dataclass
class Batch:
    X: torch.Tensor  # [E, B, P, d]
    y: torch.Tensor  # [E, B] in {-1, +1}
    kind: torch.Tensor  # [E, B, P] token kind: +1 = y mu, -1 = -y mu, 0 = irrelevant


def basis(cfgs: Sequence[TaskVectorConfig], device) -> torch.Tensor:
    return torch.eye(shared_value(cfgs, "d"), device=device)


def irrelevant_patterns(cfgs: Sequence[TaskVectorConfig], device) -> torch.Tensor:
    """[M, d]: v_j = e_{3+j}, orthogonal to mu_T1, mu_T2, mu_perp and the pre-training pattern."""
    d = shared_value(cfgs, "d")
    return basis(cfgs, device)[3 : d - 1]


def task_pattern(cfgs: Sequence[TaskVectorConfig], task: str, device) -> torch.Tensor:
    """[E, d] discriminative pattern of `task` for every model.

    T1: e_0.  T2: alpha e_0 + sqrt(1 - alpha^2) e_1, so mu_T1 . mu_T2 = alpha exactly.
    OOD (T'): (gamma1 mu_T1 + gamma2 mu_T2 + kappa e_2)/norm, built on the orthogonal pair (alpha = 0).
    pre: e_{d-1}, the optional pre-training task."""
    e = basis(cfgs, device)
    E = len(cfgs)
    if task == "T1":
        return e[0].expand(E, -1).clone()
    if task == "T2":
        alpha = scalar_tensor(cfgs, "alpha", device)[:, None]
        return alpha * e[0] + torch.sqrt(1 - alpha**2) * e[1]
    if task == "OOD":
        g1, g2, k = (scalar_tensor(cfgs, n, device)[:, None] for n in ("gamma1", "gamma2", "kappa"))
        mu = g1 * e[0] + g2 * e[1] + k * e[2]  # mu_T' = sum_i gamma_i mu_Ti + kappa mu_perp (Thm 6, alpha = 0)
        return mu / mu.norm(dim=-1, keepdim=True)
    if task == "pre":
        return e[-1].expand(E, -1).clone()
    raise ValueError(f"unknown task {task!r}; known: T1, T2, OOD, pre")


def ood_gammas(cfgs: Sequence[TaskVectorConfig], device) -> torch.Tensor:
    """[E, 3] measured (gamma_1, gamma_2, kappa) = projections of mu_T' on mu_T1, mu_T2 (alpha = 0), e_2."""
    mu = task_pattern(cfgs, "OOD", device)
    return mu[:, :3]


def sample(cfgs: Sequence[TaskVectorConfig], mu: torch.Tensor, rng: EnsembleRNG, B: int, *stream) -> Batch:
    """B fresh sequences per model for patterns mu [E, d]."""
    dev = mu.device
    E, d = mu.shape
    P, lo, hi, h = (shared_value(cfgs, k) for k in ("P", "n_star_min", "n_star_max", "n_hash_max"))
    irr = irrelevant_patterns(cfgs, dev)  # [M, d]
    y = rng.sign((B,), *stream, "y").to(dev)  # [E, B]
    n_star = lo + rng.randint(hi - lo + 1, (B,), *stream, "n_star").to(dev)  # [E, B]
    n_hash = rng.randint(h + 1, (B,), *stream, "n_hash").to(dev)  # [E, B]
    slot = torch.argsort(rng.uniform((B, P), *stream, "order").to(dev), dim=-1)  # random positions [E, B, P]
    kind = torch.where(slot < n_star[..., None], 1, torch.where(slot < (n_star + n_hash)[..., None], -1, 0))
    j = rng.randint(irr.shape[0], (B, P), *stream, "irrelevant").to(dev)  # [E, B, P]
    sign = (kind * y[..., None]).float()  # +y for y mu tokens, -y for -y mu tokens
    noise_tok = irr[j]  # [E, B, P, d]
    if shared_value(cfgs, "irrelevant_sign") == "random":  # +-v_j: zero-mean irrelevant tokens
        noise_tok = noise_tok * rng.sign((B, P), *stream, "irrelevant sign").to(dev)[..., None]
    X = torch.where((kind != 0)[..., None], sign[..., None] * mu[:, None, None, :], noise_tok)  # [E, B, P, d]
    sigma = scalar_tensor(cfgs, "noise", dev)
    if bool((sigma > 0).any()):  # skipped at sigma = 0: counter-based normals are the costliest draw on CPU
        X = X + sigma[:, None, None, None] * rng.normal((B, P, d), *stream, "noise").to(dev) / math.sqrt(d)
    return Batch(X, y, kind)
