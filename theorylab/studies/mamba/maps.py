"""The Mamba theorem map: GD iterations to reach the target error over the signal alpha_r (alpha_c fixed, so the
effective signal s = alpha_r - alpha_c) and the token noise tau, with the iteration bound's contour drawn over it.

The measurement is the fig_signal claim's T: the first recorded GD step from which the error on the fixed probe
set stays <= FAR_FROM_CHANCE x chance (claims.LEARNED). The bound, T = Theta(L^2 / (eta s^2)) (majority voting),
has an unknown constant K: it is fitted to the measured means (least squares of log T on log(L^2 / (eta s^2)) over
the cells that reached the target), and the map draws where the fitted bound reaches the training budget `steps`:
left of that line the bound predicts the target is not reached within the budget. The bound does not depend on
tau inside the theory's tau = O(1/d); the line tau = 1/d marks that scale.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theorylab.core.maps import Axis, Boundary, TheoremMap
from theorylab.core.measures import first_stable
from theorylab.studies.mamba.claims import LEARNED


def iterations_to_target(cell) -> float:
    """T of one cell; cfg.steps + 1 when the target is not reached within the budget (a lower bound)."""
    steps = cell.curves["step"]
    probe = torch.tensor(cell.curves["probe_error"], dtype=torch.float64)[:, None]
    t, censored = first_stable(probe <= LEARNED, steps)
    return float(cell.config["steps"] + 1) if bool(censored[0]) else float(t[0])


def _bound_shape(alpha_r: float, cfg) -> float:
    """L^2 / (eta s^2) with s = alpha_r - alpha_c (the bound without its constant); inf where s <= 0."""
    s = alpha_r - cfg.alpha_c
    return cfg.L**2 / (cfg.lr * s**2) if s > 0 else math.inf


def fit_constant(xs, ys, means: np.ndarray, cfg) -> dict:
    """K of T = K L^2 / (eta s^2): the geometric mean of measured T over the bound's shape, over reached cells."""
    logs = [math.log(means[i, j] / _bound_shape(x, cfg)) for i, x in enumerate(xs) for j in range(len(ys))
            if np.isfinite(means[i, j]) and 0 < means[i, j] <= cfg.steps and math.isfinite(_bound_shape(x, cfg))]
    return {"K": math.exp(sum(logs) / len(logs)) if logs else math.nan, "cells_fitted": int(len(logs))}


def budget_slack(x: float, y: float, cfg, fit: dict) -> float:
    """log(steps) - log(K L^2 / (eta s^2)): >= 0 where the fitted bound reaches the target within the budget."""
    shape = _bound_shape(x, cfg)
    if not math.isfinite(fit.get("K", math.nan)):
        return math.nan
    return math.log(cfg.steps) - math.log(fit["K"] * shape) if math.isfinite(shape) else -math.inf


MAPS = {
    "iterations": TheoremMap(
        title="GD iterations to the target over signal and noise (iteration bound)",
        theorem="Iteration bound (Shandirasegaran et al., ICLR 2026; majority voting): T = Theta(L^2 / (eta "
                "(alpha_r - alpha_c)^2)) for token noise tau = O(1/d); the Theta's constant K is fitted to the "
                "reached cells and the line is where the fitted bound equals the training budget.",
        x=Axis("alpha_r", "alpha_r (label-consistent token fraction; signal s = alpha_r - alpha_c)",
               (0.15, 0.2, 0.25, 0.3, 0.4, 0.5)),
        y=Axis("tau", "tau (token noise scale)", (0.0, 0.0625, 0.125, 0.25, 0.5)),
        metric=iterations_to_target, metric_label=f"GD iterations until the probe error stays <= {LEARNED:g} (T)",
        boundaries=(Boundary("fitted bound K L^2/(eta s^2) = steps (right: target reached within the budget)",
                             budget_slack),
                    Boundary("tau = 1/d (the bound assumes tau = O(1/d); below the line)",
                             lambda x, y, cfg, fit: 1.0 / cfg.d - y)),
        fit=fit_constant, cmap="viridis",
        note="A cell at steps + 1 did not reach the target within the budget (a lower bound)."),
}
