"""The task-vector theorem map: the T' (out-of-domain task) hinge loss of Psi0 + lambda1 dPsi_T1 + lambda2 dPsi_T2
over (lambda1, lambda2), with region (8) of Thm 6 drawn over it.

No training per grid point: the seeds' cells (T1 and T2 fine-tuned from one Psi0) train once, and the whole
coefficient grid is merged and evaluated on their weights (shared.task_arithmetic), exactly as the thm6_ood claim
does. Region (8) is taken with the claim's constants: c = C_REGION, beta = 1/d, gamma the projections of mu_T' on
mu_T1 and mu_T2 (data.ood_gammas); its boundary is the zero contour of the least of (8a)-(8c)'s slacks.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from theorylab.core.maps import Axis, Boundary, TheoremMap
from theorylab.shared.task_arithmetic import evaluate_grid, plane_lambdas
from theorylab.studies.task_vectors.claims import C_REGION
from theorylab.studies.task_vectors.config import LAM_HI, LAM_LO
from theorylab.studies.task_vectors.data import TASKS, ood_gammas
from theorylab.studies.task_vectors.evaluate import experiment


def evaluate(cfgs, params, l1s, l2s, device) -> dict[str, torch.Tensor]:
    """{metric: [len(l1s), len(l2s), E]} of every merge of the grid on T' (fresh test sequences per model)."""
    ex = experiment(cfgs, params, device)
    res = evaluate_grid(ex, TASKS, plane_lambdas(l1s, l2s), ("OOD",))["OOD"]  # [G, E], lambda1 major
    return {k: v.reshape(len(l1s), len(l2s), -1) for k, v in res.items()}


@lru_cache(maxsize=64)
def _gammas(gamma1: float, gamma2: float, kappa: float, d: int) -> tuple[float, float]:
    """(gamma_1, gamma_2) of data.ood_gammas for these fields (drawing a boundary evaluates it ~10^5 times)."""
    from theorylab.studies.task_vectors.config import TaskVectorConfig

    cfg = TaskVectorConfig(gamma1=gamma1, gamma2=gamma2, kappa=kappa, d=d)
    return tuple(float(g) for g in ood_gammas([cfg], "cpu")[0, :2])


def region8_slack(l1: float, l2: float, cfg, fit: dict) -> float:
    """min of (8a) sum lambda_i gamma_i - (1 + c), (8b) sum lambda_i gamma_i^2 - (1 + c), (8c) c - |lambda_i| beta
    (the same conditions as edit.coefficients.in_region8): >= 0 exactly inside region (8)."""
    g1, g2 = _gammas(cfg.gamma1, cfg.gamma2, cfg.kappa, cfg.d)
    beta, c = 1.0 / cfg.d, C_REGION
    return min(l1 * g1 + l2 * g2 - (1 + c), l1 * g1**2 + l2 * g2**2 - (1 + c), c - max(abs(l1), abs(l2)) * beta)


GRID = tuple(x / 2 for x in range(-4, 7))  # -2, -1.5, ..., 3: the paper's search range at step 0.5
LAMBDA_RANGE = (LAM_LO, LAM_HI)
MAPS = {
    "ood_region8": TheoremMap(
        title="T' loss over (lambda1, lambda2) with region (8) (Thm 6)",
        theorem="Thm 6 (Li et al., ICLR 2025): a merge Psi0 + lambda1 dPsi_T1 + lambda2 dPsi_T2 has a small loss on "
                f"the out-of-domain task T' for (lambda1, lambda2) in region (8): (8a) sum lambda_i gamma_i >= 1 + c, "
                f"(8b) sum lambda_i gamma_i^2 >= 1 + c, (8c) |lambda_i| beta <= c; c = {C_REGION}, beta = 1/d, gamma "
                "the projections of mu_T' on mu_T1, mu_T2.",
        x=Axis("lambda1", "lambda1 (coefficient of the task vector dPsi_T1)", GRID, LAMBDA_RANGE,
               "the paper's search range for the coefficients"),
        y=Axis("lambda2", "lambda2 (coefficient of the task vector dPsi_T2)", GRID, LAMBDA_RANGE,
               "the paper's search range for the coefficients"),
        metric="loss", metric_label="T' hinge loss of the merge (loss)",
        boundaries=(Boundary("region (8) of Thm 6 (inside: small T' loss predicted)", region8_slack),),
        evaluate=evaluate, cmap="viridis_r"),
}
