"""Coefficient grids for task arithmetic, and region (8) of Thm 6 (Li et al., ICLR 2025): which coefficients
(lambda_1, lambda_2) of Psi0 + sum_i lambda_i dPsi_Ti the theorem says generalise, given the measured task
relations gamma."""
from __future__ import annotations

from collections.abc import Sequence

import torch

Tensor = torch.Tensor


def lam_grid(step: float, lo: float = -2.0, hi: float = 3.0) -> list[float]:
    """lo, lo + step, ..., hi (the seeds' grid is [-2, 3])."""
    n = int(round((hi - lo) / step))
    return [round(lo + i * step, 6) for i in range(n + 1)]


MAX_GRID_POINTS = 10_000  # lambda values per axis a claim may evaluate (the seeds' grids have 51)


def check_lambda_grid(step: float, lo: float, hi: float, needs: Sequence[float],
                      names: tuple[str, str | None, str | None] = ("lam_step", "lam_lo", "lam_hi")) -> None:
    """Raises ValueError naming the config field when the grid lo, lo + step, ..., hi is a single point or
    misses a value a claim needs (e.g. 0 and 1 for Psi*_T1, -1 for negation). names: the fields of step, lo
    and hi (None where the study fixes that end)."""
    f_step, f_lo, f_hi = names
    field_of = lambda f: f"'{f}'" if f else f"'{f_step}'"  # noqa: E731
    if not (hi - lo) / step <= MAX_GRID_POINTS:  # also catches a step so small that the ratio overflows
        raise ValueError(f"field {field_of(f_step)}: the lambda grid [{lo}, {hi}] with step {step} would have over "
                         f"{MAX_GRID_POINTS:,} points per axis; use a step >= {(hi - lo) / MAX_GRID_POINTS:.3g}")
    if hi - lo < step - 1e-9:
        fields = ", ".join(f"'{f}'" for f in names if f)
        raise ValueError(f"fields {fields}: the lambda grid [{lo}, {hi}] with step {step} has one point; the claims "
                         f"need {sorted(needs)}")
    for f, x in ((f_lo, lo), (f_hi, hi)):
        if abs(x / step - round(x / step)) > 1e-6:
            raise ValueError(f"field {field_of(f)}: the grid end {x} must be a multiple of the step {step} (field "
                             f"'{f_step}') so that the grid holds 0")
    grid = lam_grid(step, lo, hi)
    for v in needs:
        if not any(abs(g - v) < 1e-6 for g in grid):
            f = f_lo if v < lo else f_hi if v > hi else f_step
            raise ValueError(f"field {field_of(f)}: the lambda grid {grid[0]}..{grid[-1]} step {step} must contain "
                             f"{v} (the claims need {sorted(needs)})")


def pair_lambdas(lams: Sequence[float]) -> Tensor:
    """Psi0 + dPsi_T1 + lambda dPsi_T2 (Thms 4-5) for each lambda: [G, 2]."""
    return torch.tensor([[1.0, lam] for lam in lams])


def plane_lambdas(l1: Sequence[float], l2: Sequence[float]) -> Tensor:
    """Psi0 + lambda_1 dPsi_T1 + lambda_2 dPsi_T2 over the grid l1 x l2 (Thm 6): [len(l1) * len(l2), 2]."""
    g1, g2 = torch.meshgrid(torch.tensor(l1), torch.tensor(l2), indexing="ij")
    return torch.stack([g1.reshape(-1), g2.reshape(-1)], dim=1)


def in_region8(coefs: Tensor, gammas: Tensor, beta: float, c: float) -> Tensor:
    """Conditions (8a)-(8c) at coefficient points coefs [G, 2] with gamma [2] -> [G], or one gamma per model
    [E, 2] -> [G, E]."""
    g = coefs.to(gammas.dtype)
    lam = g[:, None, :] if gammas.dim() == 2 else g  # [G, (1,) 2]
    a = (lam * gammas).sum(-1) >= 1 + c  # (8a) sum_i lambda_i gamma_i >= 1 + c
    b = (lam * gammas**2).sum(-1) >= 1 + c  # (8b) sum_i lambda_i gamma_i^2 >= 1 + c
    cc = (g.abs() * beta <= c).all(-1)  # (8c) |lambda_i| beta <= c
    return a & b & (cc[:, None] if gammas.dim() == 2 else cc)


def region8(lams: Sequence[float], gammas: Tensor, beta: float, c: float) -> Tensor:
    """[G] (or [G, E] for gammas [E, 2]) bool over plane_lambdas(lams, lams): (8a)-(8c) with gamma measured."""
    return in_region8(plane_lambdas(lams, lams), gammas, beta, c)


def nearest(lams: Sequence[float] | Tensor, value: float) -> int:
    """Index of the grid value closest to `value` (the first of a tie)."""
    return int(torch.argmin((torch.as_tensor(lams, dtype=torch.float64) - value).abs()))
