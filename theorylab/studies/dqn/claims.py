"""The abstract's statements (arXiv 2310.16173) as claims on the kit (core.claims on core.contract).

References are measured in the same run: q_err0 is ||Q_0 - Q*||_inf of the initial network omega_0, stat_err the
final error of the same DQN started at omega* itself (radius 0: what sampling and SGD noise alone leave, the
"statistical error" of the theorem). Constants are core's: "converged" / "approached" = the error at most STAY_SMALL
of the quantity it is compared with (its start, or max|Q*|, which the data model gives exactly); "up to a
statistical error" = at most O_EPS x stat_err.

The epsilon-level experiment runs constant epsilon at two levels from omega_0 = omega* + r u over the radii r; the
cells of one seed share omega*, the direction u and every exploration draw (DQNConfig.swept_fields), so the levels
differ only in epsilon. Those claims are graded on the error on the optimal actions (|Q(s, a*) - Q*(s, a*)|):
over all state-actions a larger epsilon wins by visiting actions an optimal policy never takes (issue 23); the
all-actions numbers are reported beside.
"""
from __future__ import annotations

import math

import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import (MAIN, O_EPS, STAY_SMALL, Above, AtMost, ControlArm, Criterion, Hypothesis,
                                     Measurement, Reference, short)
from theorylab.core.measures import first_crossing, r4

# The theorem is local: omega_0 must lie in a neighbourhood of omega*. Fixed before any run at the weights' own
# scale: no farther from omega* (relative to ||omega*|| per tensor) than omega* is from 0.
LOCAL_RADIUS = 1.0
FROZEN = "frozen_target"


def curve_matrix(cells, name: str = "q_err") -> torch.Tensor:
    """[T+1, E] error curves of the cells."""
    return torch.tensor([c.curves[name] for c in cells], dtype=torch.float64).T


def iterations_to_small(err: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """err [T+1, E] -> (t [E], censored [E]): the first outer iteration with error <= STAY_SMALL x its start."""
    return first_crossing(err <= STAY_SMALL * err[0], list(range(err.shape[0])))


def geometric_rate(err: torch.Tensor, upto: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rho = exp(slope) and R^2 of the least-squares line through log err[t] over t = 0 .. upto (per seed), a
    number for the report (no criterion reads it)."""
    rho, r2 = [], []
    for e in range(err.shape[1]):
        n = int(upto[e]) + 1
        y = torch.log(err[:n, e].clamp_min(1e-12))
        if n < 2 or not torch.isfinite(y).all():
            rho.append(math.nan), r2.append(math.nan)
            continue
        t = torch.arange(n, dtype=torch.float64)
        tc, yc = t - t.mean(), y - y.mean()
        slope = float((tc * yc).sum() / (tc * tc).sum())
        ss = float((yc * yc).sum())
        rho.append(math.exp(slope))
        r2.append(1.0 - float(((yc - slope * tc) ** 2).sum()) / ss if ss > 0 else 1.0)
    return torch.tensor(rho, dtype=torch.float64), torch.tensor(r2, dtype=torch.float64)


# ---- the theorem (decaying epsilon, omega_0 in the local region): ||Q_T - Q*|| <= rho^T ||Q_0 - Q*|| + stat -----
def _geometric(ctx: ClaimContext) -> dict[str, list]:
    """Cells of the three arms, trained in one call: DQN, the frozen-target control, DQN started at omega*."""
    def compute():
        arms = {MAIN: ctx.configs(), FROZEN: ctx.configs(target_update="never"), "at_star": ctx.configs(radius=0.0)}
        _, cells = ctx.trained([c for cfgs in arms.values() for c in cfgs])
        S = ctx.seeds
        return {arm: cells[i * S:(i + 1) * S] for i, arm in enumerate(arms)}
    return ctx.memo("dqn:geometric", compute)


Q_ERR0 = Reference("q_err0", "||Q_0 - Q*||_inf of the initial network omega_0 (both arms start there)",
                   lambda ctx: curve_matrix(_geometric(ctx)[MAIN])[0])
STAT_ERR = Reference("stat_err", "final ||Q_T - Q*||_inf of the same DQN started at omega* (radius 0): the "
                     "statistical error", lambda ctx: curve_matrix(_geometric(ctx)["at_star"])[-1])


def _decaying(ctx: ClaimContext) -> str | None:
    c = ctx.configs()[0]
    return None if c.eps_decay < 1 else f"eps_decay = {c.eps_decay}: epsilon does not decay"


def _local(ctx: ClaimContext) -> str | None:
    c = ctx.configs()[0]
    if c.init != "perturbed":
        return "init = random: omega_0 is not placed near omega* (set init=perturbed)"
    return None if c.radius <= LOCAL_RADIUS else f"radius = {c.radius} > {LOCAL_RADIUS}"


DECAYING = Hypothesis("epsilon decays (eps_decay < 1)", _decaying)
LOCAL = Hypothesis(f"omega_0 starts in the local region: omega* + r u with relative radius r <= {LOCAL_RADIUS:g}",
                   _local)


def measure_geometric(ctx: ClaimContext, arm: str) -> Measurement:
    cells = _geometric(ctx)[arm]
    err = curve_matrix(cells)
    t, censored = iterations_to_small(err)
    rho, r2 = geometric_rate(err, t)
    tau = [None if c else int(x) for x, c in zip(t.tolist(), censored.tolist())]
    return Measurement(
        {"final_error": err[-1]},
        f"iterations to {STAY_SMALL:g} x the start {tau}; rho = exp(slope) {short(rho, 3)} (gamma = "
        f"{ctx.configs()[0].gamma}), R^2 {short(r2, 3)}",
        {"rho": short(rho), "r2": short(r2), "tau": tau, "start_error": short(err[0])},
        {"q_error_curves": {"dqn": curve_matrix(_geometric(ctx)[MAIN]).T.tolist(),
                            "control": curve_matrix(_geometric(ctx)[FROZEN]).T.tolist(),
                            "eps": cells[0].curves["eps"], "drop": STAY_SMALL}} if arm == MAIN else {})


# ---- the epsilon-level experiment (figures) ----
def _levels(ctx: ClaimContext) -> dict:
    """Constant epsilon at each level x each radius x each seed: {(eps, r): cells}."""
    def compute():
        c0 = ctx.configs()[0]
        grid = [(eps, r) for eps in c0.eps_levels for r in c0.radii]
        cfgs = [c for eps, r in grid for c in ctx.configs(eps0=eps, eps_min=0.0, eps_decay=1.0, init="perturbed",
                                                          radius=r)]
        _, cells = ctx.trained(cfgs)
        S = ctx.seeds
        return {"levels": c0.eps_levels, "radii": c0.radii, "qmax": cells[0].metrics["qstar_max"],
                "cells": {key: cells[i * S:(i + 1) * S] for i, key in enumerate(grid)}}
    return ctx.memo("dqn:levels", compute)


def converged(d: dict, eps: float, measure: str) -> torch.Tensor:
    """[R, E]: final error <= STAY_SMALL x max|Q*| at each radius."""
    return torch.stack([curve_matrix(d["cells"][(eps, r)], measure)[-1] <= STAY_SMALL * d["qmax"]
                        for r in d["radii"]])


def region(d: dict, eps: float, measure: str) -> torch.Tensor:
    """[E]: the largest swept radius r such that every radius <= r converged (0 when the smallest did not). At the
    largest radius the region is only known to reach at least that far."""
    ok = converged(d, eps, measure).cumprod(0).bool()  # converged here and at every smaller radius
    radii = torch.tensor(d["radii"], dtype=torch.float64)[:, None]
    return (ok * radii).amax(0)


def measure_region(ctx: ClaimContext, arm: str) -> Measurement:
    d = _levels(ctx)
    lo, hi = d["levels"]
    R = {(eps, m): region(d, eps, m) for eps in (lo, hi) for m in ("q_err_opt", "q_err")}
    success = {str(eps): converged(d, eps, "q_err_opt").tolist() for eps in (lo, hi)}  # [R][E]
    return Measurement(
        {"region_gain": R[(hi, "q_err_opt")] - R[(lo, "q_err_opt")],
         "region_gain_all_actions": R[(hi, "q_err")] - R[(lo, "q_err")]},
        f"region radius on optimal actions R(eps={lo}) {short(R[(lo, 'q_err_opt')])}, R(eps={hi}) "
        f"{short(R[(hi, 'q_err_opt')])}; over all state-actions R(eps={lo}) {short(R[(lo, 'q_err')])}, "
        f"R(eps={hi}) {short(R[(hi, 'q_err')])} (radii {list(d['radii'])})",
        {"R_optimal_actions": {str(e): short(R[(e, 'q_err_opt')]) for e in (lo, hi)},
         "R_all_actions": {str(e): short(R[(e, 'q_err')]) for e in (lo, hi)}, "radii": list(d["radii"])},
        {"eps_region": {"radii": list(d["radii"]),
                        "success": success,
                        "curves": {f"{eps}|{r}": curve_matrix(d["cells"][(eps, r)], "q_err_opt").T.tolist()
                                   for eps in (lo, hi) for r in d["radii"]},
                        "success_share": STAY_SMALL, "qmax": d["qmax"]}})


def slowdown(d: dict, r: float, measure: str) -> tuple[torch.Tensor, dict]:
    """[E]: iterations to STAY_SMALL x the start at the larger epsilon minus at the smaller one, at radius r. Where the
    larger level never gets there its count is only known to exceed T: T + 1 - t(lo) is then a lower bound, which
    is all a one-sided comparison needs; where the smaller level never gets there the difference is unknown (NaN)."""
    lo, hi = d["levels"]
    t = {eps: iterations_to_small(curve_matrix(d["cells"][(eps, r)], measure)) for eps in (lo, hi)}
    (t_lo, c_lo), (t_hi, c_hi) = t[lo], t[hi]
    gap = torch.where(c_hi, t_hi + 1, t_hi) - t_lo
    gap = torch.where(c_lo, torch.full_like(gap, math.nan), gap)
    shown = {str(eps): [None if c else int(x) for x, c in zip(tt.tolist(), cc.tolist())] for eps, (tt, cc) in t.items()}
    return gap, shown


def measure_rate(ctx: ClaimContext, arm: str) -> Measurement:
    d = _levels(ctx)
    lo, hi = d["levels"]
    r = d["radii"][0]
    gap, shown = slowdown(d, r, "q_err_opt")
    gap_all, shown_all = slowdown(d, r, "q_err")
    rho = {eps: geometric_rate(err, iterations_to_small(err)[0])[0]
           for eps in (lo, hi) for err in [curve_matrix(d["cells"][(eps, r)], "q_err_opt")]}
    return Measurement(
        {"slowdown": gap, "slowdown_all_actions": gap_all},
        f"radius {r}: iterations to {STAY_SMALL:g} x the start on optimal actions {shown} (None: not within T); over "
        f"all state-actions {shown_all}; rho on optimal actions {({str(e): short(v, 3) for e, v in rho.items()})}",
        {"iterations_optimal_actions": shown, "iterations_all_actions": shown_all, "radius": r,
         "rho_optimal_actions": {str(e): short(v) for e, v in rho.items()}})


CLAIMS = [
    Claim("thm_geometric", "Abstract; main theorem", "theorem",
          "With decaying epsilon and omega_0 in the local region, the DQN iterates approach the optimal Q-function "
          "geometrically, up to a statistical error.", measure=measure_geometric,
          criterion=Criterion(AtMost("final_error", STAY_SMALL * Q_ERR0 + O_EPS * STAT_ERR, "||Q_T - Q*||_inf")),
          hypotheses=(DECAYING, LOCAL),
          control=ControlArm(FROZEN, "target network never refreshed (omega_0 kept as the target)")),
    Claim("thm_eps_region", "Abstract; main theorem", "figure",
          "A larger epsilon enlarges the region of initial networks from which DQN converges (a region: a figure "
          "claim).", measure=measure_region,
          criterion=Criterion(Above("region_gain", 0.0, "R(larger eps) - R(smaller eps), R = the largest swept radius "
                                    f"up to which every run ends with optimal-action error <= {STAY_SMALL:g} x "
                                    "max|Q*|"))),
    Claim("thm_eps_rate", "Abstract; main theorem", "figure",
          "A larger epsilon slows convergence (a smaller one speeds it up) from an initial network inside both "
          "regions (a rate: a figure claim).", measure=measure_rate,
          criterion=Criterion(Above("slowdown", 0.0, f"iterations to reach {STAY_SMALL:g} x the start error on optimal "
                                    "actions, "
                                    "larger eps minus smaller eps, at the smallest radius"))),
]
