"""Thms 4-6 and Cors. 1-2 of Li et al. (ICLR 2025) as claims on one shared set of trained cells
(5 seeds x alpha in ALPHAS; T1 and T2 fine-tuned from one Psi0 per cell).

Thresholds fixed in advance (not fitted):
- eps_hat: the theorem's epsilon, measured: test hinge loss of each fine-tuned Psi*_T on its own task.
  "Small loss" = hinge <= 2 eps_hat (+ |lambda| beta on T1, as Thms 4-5 state); beta = 1/d (beta = Theta(1/d)).
- "Theta(1) loss" = hinge >= 0.25 (a quarter of the loss of f = 0).
- Thm 4 "below the line": lambda = 1 - alpha - 0.5.  Thm 5 range: lambda in [-1, 0].
- Thm 6: c = 0.2 in (8), so the lines are sum lambda_i gamma_i >= 1.2 and sum lambda_i gamma_i^2 >= 1.2,
  |lambda_i| beta <= 0.2; success = OOD hinge <= 2 mean(eps_hat). Needs precision >= 0.9 (cells inside
  region (8) succeed) and agreement >= 0.8.
- Cors. 1-2: the rank-1 / row-pruned task vectors give the same verdict on every sub-check of Thms 4-6,
  and Thm 6's agreement moves by <= 0.05. Cor. 2 bimodality: the rows below the largest ratio gap of the
  sorted dV row norms have norms <= 0.2 x the mean large-row norm, and the large rows are 10-90%.
Both hinge loss (what the theorems bound) and sign error are reported (calibration note).
"""
from __future__ import annotations

import torch

from theorylab.core.claims import Claim, ClaimContext, Outcome
from theorylab.edit.coefficients import lam_grid, pair_lambdas, plane_lambdas, region8
from theorylab.studies.task_vectors.data import ood_gammas
from theorylab.studies.task_vectors.evaluate import Experiment, evaluate_grid, experiment, low_rank_tvs, pruned_tvs
from theorylab.studies.task_vectors.lwptv_demo import lwptv_table

ALPHAS = (0.0, 0.6, -0.6)  # irrelevant, aligned, contradictory (the calibration note's pairs)
THETA1 = 0.25  # "Theta(1)" hinge loss
EPS_FACTOR = 2.0  # "Theta(eps)" = 2 eps_hat
C_REGION = 0.2  # c in conditions (8)
THM5_RANGE = (-1.0, 0.0)
BELOW = 0.5  # Thm 4's "below the line" point: lambda = 1 - alpha - BELOW
PRECISION_MIN, AGREEMENT_MIN, AGREEMENT_DRIFT = 0.9, 0.8, 0.05
SMALL_ROW_RATIO = 0.2


def _r(x) -> float:
    return round(float(x), 4)


def setup(ctx: ClaimContext) -> tuple[Experiment, dict[float, list[int]]]:
    """All cells of all alphas as one ensemble; which model indices belong to each alpha."""
    def build():
        cfgs, idx = [], {}
        for a in ALPHAS:
            part = ctx.configs(alpha=a)
            idx[a] = list(range(len(cfgs), len(cfgs) + len(part)))
            cfgs += part
        params, _ = ctx.trained(cfgs)
        return experiment(cfgs, params, ctx.device), idx
    return ctx.memo("tv:setup", build)


def eps_hat(ctx: ClaimContext) -> dict[str, torch.Tensor]:
    """Test hinge loss of Psi*_T1 on T1 and of Psi*_T2 on T2, [E] each (dense task vectors)."""
    ex, _ = setup(ctx)
    def compute():
        lam = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        return {"T1": evaluate_grid(ex, lam, "T1")["loss"][0], "T2": evaluate_grid(ex, lam, "T2")["loss"][1]}
    return ctx.memo("tv:eps", compute)


def line(ctx: ClaimContext, variant: str, ex: Experiment) -> dict:
    """Psi0 + dPsi_T1 + lambda dPsi_T2 over the lambda grid: loss/error [G, E] on T1 and T2."""
    def compute():
        lams = lam_grid(ex.cfgs[0].lam_step)
        grid = pair_lambdas(lams)
        return {"lams": lams, **{t: evaluate_grid(ex, grid, t) for t in ("T1", "T2")}}
    return ctx.memo(f"tv:line:{variant}", compute)


def plane(ctx: ClaimContext, variant: str, ex: Experiment, idx: list[int]) -> dict:
    """Psi0 + l1 dPsi_T1 + l2 dPsi_T2 over [-2, 3]^2 on T' (orthogonal pair, alpha = 0): loss/error [G, E0]."""
    def compute():
        lams = lam_grid(ex.cfgs[0].lam_step)
        return {"lams": lams, **evaluate_grid(ex.subset(idx), plane_lambdas(lams, lams), "OOD")}
    return ctx.memo(f"tv:plane:{variant}", compute)


def variant_ex(ctx: ClaimContext, variant: str) -> Experiment:
    ex, _ = setup(ctx)
    if variant == "dense":
        return ex
    if variant == "rank1":
        return ex.with_tvs(low_rank_tvs(ex.tvs, 1))
    kind, frac = variant.split(":")  # "prune_smallest:0.5"
    return ex.with_tvs(pruned_tvs(ex.tvs, float(frac), kind.removeprefix("prune_")))


def _mean(x: torch.Tensor, cols: list[int]) -> torch.Tensor:
    return x[:, cols].mean(1)  # [G]


def _line_inputs(ctx: ClaimContext, variant: str):
    ex, idx = setup(ctx)
    d = line(ctx, variant, variant_ex(ctx, variant))
    return idx, d, eps_hat(ctx), 1.0 / ex.cfgs[0].d, torch.tensor(d["lams"])


# ---- the checks, shared by Thms 4-6 and by Cors. 1-2 (which rerun them on edited task vectors) ----

def check_thm4(ctx: ClaimContext, variant: str) -> dict:
    idx, d, eps, beta, lams = _line_inputs(ctx, variant)
    out, ok = {}, True
    for a in (x for x in ALPHAS if x >= 0):
        cols = idx[a]
        e1, e2 = float(eps["T1"][cols].mean()), float(eps["T2"][cols].mean())
        above = (lams >= 1 - a + beta - 1e-9) & (lams <= 2.0 + 1e-9)
        l1, l2 = _mean(d["T1"]["loss"], cols), _mean(d["T2"]["loss"], cols)
        r1, r2 = _mean(d["T1"]["error"], cols), _mean(d["T2"]["error"], cols)
        bound1 = EPS_FACTOR * e1 + lams.abs() * beta
        good = bool(((l1 <= bound1) & (l2 <= EPS_FACTOR * e2))[above].all())
        below = int(torch.argmin((lams - (1 - a - BELOW)).abs()))
        fails_below = float(l2[below]) >= THETA1
        small = (l1 <= bound1) & (l2 <= EPS_FACTOR * e2)
        lam_min = float(lams[small].min()) if bool(small.any()) else None
        first_above = int(torch.nonzero(above)[0])
        out[str(a)] = {"line": round(1 - a + beta, 4), "above_ok": good, "worst_above": {
            "T1_loss": _r(l1[above].max()), "T1_bound_at_lambda": _r(bound1[above].min()), "T2_loss": _r(l2[above].max()),
            "T2_bound": _r(EPS_FACTOR * e2), "T1_error": _r(r1[above].max()), "T2_error": _r(r2[above].max())},
            "at_line": {"lambda": float(lams[first_above]), "T1_loss": _r(l1[first_above]), "T2_loss": _r(l2[first_above])},
            "below": {"lambda": float(lams[below]), "T2_loss": _r(l2[below]), "T2_error": _r(r2[below]),
                      "fails": fails_below}, "lambda_min_measured": lam_min, "eps_hat": [_r(e1), _r(e2)]}
        ok = ok and good and fails_below
    return {"passed": ok, "by_alpha": out}


def check_thm5(ctx: ClaimContext, variant: str) -> dict:
    idx, d, eps, beta, lams = _line_inputs(ctx, variant)
    rng = (lams >= THM5_RANGE[0] - 1e-9) & (lams <= THM5_RANGE[1] + 1e-9)
    out, ok = {}, True
    for a in ALPHAS:
        cols = idx[a]
        e1 = float(eps["T1"][cols].mean())
        l1, l2 = _mean(d["T1"]["loss"], cols), _mean(d["T2"]["loss"], cols)
        r1, r2 = _mean(d["T1"]["error"], cols), _mean(d["T2"]["error"], cols)
        bound1 = EPS_FACTOR * e1 + lams.abs() * beta
        keep1 = bool((l1 <= bound1)[rng].all())
        forget2 = bool((l2 >= THETA1)[rng].all())
        forgotten = (r2 >= 0.4) & (lams <= 0)  # negations that forget T2 (error >= 40%, spec S3)
        harm1 = bool((l1 >= THETA1)[forgotten].all()) if bool(forgotten.any()) else None
        out[str(a)] = {"keeps_T1": keep1, "forgets_T2": forget2, "T1_loss_max": _r(l1[rng].max()),
                       "T1_bound_min": _r(bound1[rng].min()), "T2_loss_min": _r(l2[rng].min()),
                       "T2_error_min": _r(r2[rng].min()), "T1_error_max": _r(r1[rng].max()),
                       "T1_loss_where_T2_forgotten_min": _r(l1[forgotten].min()) if bool(forgotten.any()) else None,
                       "negation_harms_T1": harm1}
        if a <= 0:
            ok = ok and keep1 and forget2
        else:  # aligned: forgetting T2 by negation also costs T1 a Theta(1) loss
            ok = ok and bool(harm1)
    return {"passed": ok, "by_alpha": out}


def check_thm6(ctx: ClaimContext, variant: str) -> dict:
    ex, idx = setup(ctx)
    cols = idx[0.0]
    d = plane(ctx, variant, variant_ex(ctx, variant), cols)
    eps = eps_hat(ctx)
    e = float(torch.cat([eps["T1"][cols], eps["T2"][cols]]).mean())
    beta = 1.0 / ex.cfgs[0].d
    gam = ood_gammas([ex.cfgs[i] for i in cols], ex.a.device).mean(0)  # measured (gamma1, gamma2, kappa)
    theory = region8(d["lams"], gam[:2], beta, C_REGION)
    loss, err = d["loss"].mean(1), d["error"].mean(1)  # [G]
    success = loss <= EPS_FACTOR * e
    agree = float((theory == success).float().mean())
    precision = float(success[theory].float().mean()) if bool(theory.any()) else 0.0
    recall = float(theory[success].float().mean()) if bool(success.any()) else 0.0
    best = int(torch.argmin(loss))
    grid = plane_lambdas(d["lams"], d["lams"])
    single = {name: int(torch.argmin((grid - torch.tensor(p)).abs().sum(1))) for name, p in
              (("T1_only", [1.0, 0.0]), ("T2_only", [0.0, 1.0]))}
    passed = bool(theory.any()) and precision >= PRECISION_MIN and agree >= AGREEMENT_MIN
    n = len(d["lams"])
    return {"passed": passed, "agreement": round(agree, 4), "precision": round(precision, 4), "recall": round(recall, 4),
            "region_cells": int(theory.sum()), "success_cells": int(success.sum()), "cells": int(theory.numel()),
            "gamma": [_r(x) for x in gam.tolist()], "c": C_REGION, "beta": beta, "success_loss": _r(EPS_FACTOR * e),
            "best": {"lambda": grid[best].tolist(), "loss": _r(loss[best]), "error": _r(err[best])},
            **{k: {"loss": _r(loss[i]), "error": _r(err[i])} for k, i in single.items()},
            "_figure": {"lams": d["lams"], "loss": loss.reshape(n, n).tolist(), "error": err.reshape(n, n).tolist(),
                        "region": theory.reshape(n, n).int().tolist(), "gamma": gam.tolist(), "c": C_REGION,
                        "beta": beta, "best": grid[best].tolist(), "success_loss": EPS_FACTOR * e}}


# ---- claims ----

def thm4(ctx: ClaimContext) -> Outcome:
    r = check_thm4(ctx, "dense")
    parts = [f"alpha={a}: lambda>={v['line']}: worst T1/T2 loss {v['worst_above']['T1_loss']}/{v['worst_above']['T2_loss']} "
             f"(bounds {v['worst_above']['T1_bound_at_lambda']}+/{v['worst_above']['T2_bound']}, err "
             f"{v['worst_above']['T1_error']}/{v['worst_above']['T2_error']}) ok={v['above_ok']}; at lambda={v['below']['lambda']} "
             f"T2 loss {v['below']['T2_loss']} (>= {THETA1}: {v['below']['fails']}, err {v['below']['T2_error']})"
             for a, v in r["by_alpha"].items()]
    d = line(ctx, "dense", setup(ctx)[0])
    ex, idx = setup(ctx)
    fig = {"lams": d["lams"], "beta": 1.0 / ex.cfgs[0].d, "curves": {str(a): {
        f"{t}_{k}": _mean(d[t][k], idx[a]).tolist() for t in ("T1", "T2") for k in ("loss", "error")} for a in ALPHAS}}
    return Outcome(r["passed"], "; ".join(parts), r, {"loss_vs_lambda": fig})


def thm5(ctx: ClaimContext) -> Outcome:
    r = check_thm5(ctx, "dense")
    parts = []
    for a, v in r["by_alpha"].items():
        if float(a) <= 0:
            parts.append(f"alpha={a}, lambda in {list(THM5_RANGE)}: T1 loss <= {v['T1_loss_max']} (bound >= "
                         f"{v['T1_bound_min']}) keeps={v['keeps_T1']}; T2 loss >= {v['T2_loss_min']} (err >= "
                         f"{v['T2_error_min']}) forgets={v['forgets_T2']}")
        else:
            parts.append(f"alpha={a}: where negation forgets T2 (err >= 0.4), T1 loss >= "
                         f"{v['T1_loss_where_T2_forgotten_min']} (>= {THETA1}: {v['negation_harms_T1']})")
    return Outcome(r["passed"], "; ".join(parts), r)


def thm6(ctx: ClaimContext) -> Outcome:
    r = check_thm6(ctx, "dense")
    fig = r.pop("_figure")
    ex, idx = setup(ctx)
    table = lwptv_table(ex.subset(idx[0.0]))
    r["lwptv_table"] = table
    s = (f"gamma=({r['gamma'][0]}, {r['gamma'][1]}), c={C_REGION}, beta={r['beta']}: region (8) {r['region_cells']}/"
         f"{r['cells']} cells, success (OOD hinge <= {r['success_loss']}) {r['success_cells']}; agreement "
         f"{r['agreement']} (>= {AGREEMENT_MIN}), precision {r['precision']} (>= {PRECISION_MIN}), recall {r['recall']}; "
         f"best {r['best']['lambda']} loss {r['best']['loss']} err {r['best']['error']} vs Psi*_T1 loss "
         f"{r['T1_only']['loss']} err {r['T1_only']['error']}, Psi*_T2 err {r['T2_only']['error']}")
    return Outcome(r["passed"], s, {**r, "tables": {"LwPTV on the theory models (alpha = 0 pair; T' OOD)": table["markdown"]}},
                   {"ood_heatmap": fig})


def _compare(ctx: ClaimContext, variant: str) -> dict:
    dense = {"thm4": check_thm4(ctx, "dense"), "thm5": check_thm5(ctx, "dense"), "thm6": check_thm6(ctx, "dense")}
    edit = {"thm4": check_thm4(ctx, variant), "thm5": check_thm5(ctx, variant), "thm6": check_thm6(ctx, variant)}
    for r in (*dense.values(), *edit.values()):
        r.pop("_figure", None)
    same = all(dense[k]["passed"] == edit[k]["passed"] for k in dense)
    sub = lambda r: {k: {a: {kk: vv for kk, vv in v.items() if isinstance(vv, bool)} for a, v in r[k]["by_alpha"].items()}
                     for k in ("thm4", "thm5")}
    same_sub = sub(dense) == sub(edit)
    drift = abs(dense["thm6"]["agreement"] - edit["thm6"]["agreement"])
    ex, _ = setup(ctx)
    dl, el = line(ctx, "dense", ex), line(ctx, variant, variant_ex(ctx, variant))
    dloss = max(float((dl[t]["loss"] - el[t]["loss"]).abs().mean(1).max()) for t in ("T1", "T2"))
    derr = max(float((dl[t]["error"] - el[t]["error"]).abs().mean(1).max()) for t in ("T1", "T2"))
    return {"same_verdicts": same, "same_subchecks": same_sub, "agreement_drift": round(drift, 4),
            "max_loss_change": _r(dloss), "max_error_change": _r(derr),
            "verdicts": {k: [dense[k]["passed"], edit[k]["passed"]] for k in dense},
            "thm6_agreement": [dense["thm6"]["agreement"], edit["thm6"]["agreement"]], "edited": edit}


def cor1(ctx: ClaimContext) -> Outcome:
    ex, _ = setup(ctx)
    lr = low_rank_tvs(ex.tvs, 1)
    rel = {f"{t}.{k}": _r((ex.tvs[t][k] - lr[t][k]).flatten(1).norm(dim=1).div(ex.tvs[t][k].flatten(1).norm(dim=1)).mean())
           for t in ex.tvs for k in ("W", "V")}
    r = _compare(ctx, "rank1")
    passed = r["same_subchecks"] and r["same_verdicts"] and r["agreement_drift"] <= AGREEMENT_DRIFT
    return Outcome(passed, f"rank-1 dW, dV (relative Frobenius residual {rel}): verdicts dense/rank-1 {r['verdicts']}, "
                           f"sub-checks identical: {r['same_subchecks']}; Thm 6 agreement {r['thm6_agreement']} (drift <= "
                           f"{AGREEMENT_DRIFT}); max mean change along the lambda line: loss {r['max_loss_change']}, "
                           f"error {r['max_error_change']}", {**r, "relative_residual": rel})


def row_split(tv_V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[E, m, d] -> (small-row fraction [E], max small / mean large norm [E]) at the largest ratio gap."""
    norms = tv_V.norm(dim=-1).sort(dim=1).values  # [E, m]
    gaps = norms[:, 1:] / norms[:, :-1].clamp_min(1e-12)
    n_small = gaps.argmax(dim=1) + 1
    m = norms.shape[1]
    small_frac = n_small.float() / m
    ratio = torch.stack([norms[e, n_small[e] - 1] / norms[e, n_small[e]:].mean() for e in range(norms.shape[0])])
    return small_frac, ratio


def cor2(ctx: ClaimContext) -> Outcome:
    ex, _ = setup(ctx)
    fr, ratio = zip(*(row_split(ex.tvs[t]["V"]) for t in ex.tvs))
    small_frac, ratio = torch.cat(fr), torch.cat(ratio)
    bimodal = bool(((1 - small_frac >= 0.1) & (1 - small_frac <= 0.9) & (ratio <= SMALL_ROW_RATIO)).all())
    frac = float(small_frac.min())  # prune only rows that are small in every model
    frac = round(int(frac * ex.a.shape[-1]) / ex.a.shape[-1], 6)
    keep = _compare(ctx, f"prune_smallest:{frac}")
    control = _compare(ctx, f"prune_largest:{frac}") if frac > 0 else None
    breaks = control is not None and not (control["same_subchecks"] and control["same_verdicts"])
    passed = bimodal and frac > 0 and keep["same_subchecks"] and keep["same_verdicts"] \
        and keep["agreement_drift"] <= AGREEMENT_DRIFT and breaks
    return Outcome(passed, f"dV rows: small fraction {_r(small_frac.mean())} (min {_r(small_frac.min())}), max small/mean "
                           f"large norm {_r(ratio.max())} (<= {SMALL_ROW_RATIO}: bimodal={bimodal}); pruning the {frac:.0%} "
                           f"smallest rows: verdicts {keep['verdicts']}, sub-checks same {keep['same_subchecks']}, Thm 6 "
                           f"agreement {keep['thm6_agreement']}; control (largest) breaks an outcome: {breaks}",
                   {"small_fraction": small_frac.tolist(), "small_over_large": ratio.tolist(), "bimodal": bimodal,
                    "pruned_fraction": frac, "smallest": keep, "largest": control})


CLAIMS = [
    Claim("thm4_multitask", "Thm 4", "theorem", "alpha >= 0 and lambda >= 1 - alpha + beta: hinge loss small on T1 (<= Theta(eps) + "
          "|lambda| beta) and on T2 (<= Theta(eps)); below the line T2 fails (loss Theta(1)).", thm4),
    Claim("thm5_unlearning", "Thm 5", "theorem", "alpha <= 0 and lambda in [-Theta(alpha^-2), 0]: T1 kept (loss <= Theta(eps) + "
          "|lambda| beta) and T2 forgotten (loss >= Theta(1)); for aligned tasks, negation also harms T1.", thm5),
    Claim("thm6_ood", "Thm 6", "theorem", "Over (lambda1, lambda2) in [-2, 3]^2, region (8) with gamma measured is where the OOD "
          "loss on T' is small (agreement and precision over grid cells).", thm6),
    Claim("cor1_low_rank", "Cor. 1", "theorem", "Rank-1 task vectors (SVD of dW, dV) keep the outcomes of Thms 4-6.", cor1),
    Claim("cor2_sparse", "Cor. 2", "theorem", "A constant fraction of dV rows are large and the rest small; pruning the small rows "
          "keeps the outcomes of Thms 4-6 (pruning as many large rows does not).", cor2),
]
