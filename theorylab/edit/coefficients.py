"""Coefficient grids for task arithmetic and the region where Thm 6 of Li et al. (ICLR 2025) predicts an
out-of-domain task T' is learned by Psi0 + lambda_1 dPsi_T1 + lambda_2 dPsi_T2."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def lam_grid(step: float, lo: float = -2.0, hi: float = 3.0) -> list[float]:
    """lo, lo + step, ..., hi (the seeds' grid is [-2, 3])."""
    n = int(round((hi - lo) / step))
    return [round(lo + i * step, 6) for i in range(n + 1)]


def pair_lambdas(lams: Sequence[float]) -> torch.Tensor:
    """Psi0 + dPsi_T1 + lambda dPsi_T2 (Thms 4-5) for each lambda: [G, 2]."""
    return torch.tensor([[1.0, lam] for lam in lams])


def plane_lambdas(l1: Sequence[float], l2: Sequence[float]) -> torch.Tensor:
    """Psi0 + lambda_1 dPsi_T1 + lambda_2 dPsi_T2 over the grid l1 x l2 (Thm 6): [len(l1) * len(l2), 2]."""
    g1, g2 = torch.meshgrid(torch.tensor(l1), torch.tensor(l2), indexing="ij")
    return torch.stack([g1.reshape(-1), g2.reshape(-1)], dim=1)


def region8(lams: Sequence[float], gammas: torch.Tensor, beta: float, c: float) -> torch.Tensor:
    """[G] bool over plane_lambdas(lams, lams): conditions (8a)-(8c) with gamma_i measured."""
    g = plane_lambdas(lams, lams)  # [G, 2]
    a = (g * gammas).sum(1) >= 1 + c  # (8a) sum_i lambda_i gamma_i >= 1 + c
    b = (g * gammas**2).sum(1) >= 1 + c  # (8b) sum_i lambda_i gamma_i^2 >= 1 + c
    cc = (g.abs() * beta <= c).all(1)  # (8c) |lambda_i| beta <= c
    return a & b & cc
