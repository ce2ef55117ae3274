"""Thms 4-6 and Cors. 1-2 of Li et al. (ICLR 2025) as claims on the kit (core.claims, core.contract), on one shared
set of trained cells: the seeds of the base config x alpha in ALPHAS, T1 and T2 fine-tuned from one Psi0 per
cell. Seed j's test uses its own cells of every alpha.

References, measured in the same run (per seed and per alpha):
- eps_hat: each fine-tuned Psi*_T's own test hinge loss on T, at least the rule-of-three resolution 3/n_test.
  "Theta(eps)" = O_EPS x eps_hat (+ |lambda| beta on T1, as Thms 4-5 state); beta = 1/d (Theta(1/d)).
  On T' (no fine-tuned model) eps_hat is the mean of the seed's eps_hat on T1 and T2.
- "Theta(1)" (T2 forgotten, not learned): T2 hinge >= FAR_FROM_CHANCE x the hinge of Psi0 (the model before
  fine-tuning) on the same test set.
Because eps_hat differs per alpha and per task, the measured values are ratios to these limits (the criterion
compares them with 1) and each bound's meaning spells the limit out.
The theorem parameters (not contract constants): Thm 4's range lambda in [1 - alpha + beta, THM4_END]; Thm 5's
lambda in THM5_RANGE (inside [-Theta(alpha^-2), 0]); Thm 6's region (8) with c = C_REGION; a region "predicts"
small OOD loss when PRECISION_MIN of its cells have it.
Cor. 1, eq. (9): ||dW - dW_LR||_F <= M eps_hat + 1/log M (the paper's bound as written) and ||dV - dV_LR||_F <=
O_EPS eps_hat ||dV||_F, dW_LR, dV_LR the top-1 SVD. Cor. 2: the dV rows below the largest ratio gap of the sorted
row norms (core.measures) are pruned; max pruned / min kept row norm <= O_EPS eps_hat. Cors. 1-2 "keep Thms 4-6":
on each seed, every test of Thms 4, 5, 6 that the dense task vectors pass also passes with the edited ones.
"""
from __future__ import annotations

import math

import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import (FAR_FROM_CHANCE, MAIN, O_EPS, AtLeast, AtMost, ControlArm, Criterion, Holds,
                                     Hypothesis, Measurement, short)
from theorylab.core.ensemble import rng_for
from theorylab.core.measures import r4, small_group_size, zero_count_bound
from theorylab.edit import low_rank
from theorylab.shared.task_arithmetic import (Experiment, evaluate_grid, guard_finite, heatmap_data, in_region8,
                                              lam_grid, lwptv_table, nearest, pair_lambdas, plane_lambdas,
                                              seed_argbest)
from theorylab.studies.task_vectors.config import LAM_HI, LAM_LO
from theorylab.studies.task_vectors.data import TASKS, ood_gammas
from theorylab.studies.task_vectors.evaluate import experiment, pruned, rank1

ALPHAS = (0.0, 0.6, -0.6)  # irrelevant, aligned, contradictory (the calibration note's pairs)
C_REGION = 0.2
THM4_END = 2.0
THM5_RANGE = (-1.0, 0.0)
BELOW = 0.5  # the Thm 4 figure's point below the line: lambda = 1 - alpha - BELOW
PRECISION_MIN = 0.9
CHANCE = 0.5  # sign error of a coin on balanced labels


def _setup(ctx: ClaimContext) -> dict:
    """All cells of all alphas as one ensemble: the experiment, its configs, and which model indices belong
    to each alpha (in seed order)."""
    def build():
        cfgs, idx = [], {}
        for a in ALPHAS:
            part = ctx.configs(alpha=a)
            idx[a] = list(range(len(cfgs), len(cfgs) + len(part)))
            cfgs += part
        params, _ = ctx.trained(cfgs)
        return {"ex": experiment(cfgs, params, ctx.device), "idx": idx, "cfgs": cfgs}
    return ctx.memo("tv:setup", build)


def setup(ctx: ClaimContext) -> tuple[Experiment, dict[float, list[int]]]:
    s = _setup(ctx)
    return s["ex"], s["idx"]


def _cfgs(ctx: ClaimContext):
    return _setup(ctx)["cfgs"]


def refs(ctx: ClaimContext) -> dict:
    """eps_hat [E] per task (own test hinge, >= 3/n_test), own test error [E] per task, and Psi0's hinge [E] on
    T1, T2, T'."""
    def compute():
        ex, _ = setup(ctx)
        own = evaluate_grid(ex, TASKS, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), TASKS)
        floor = zero_count_bound(_cfgs(ctx)[0].n_test)
        eps = {t: own[t]["loss"][i].clamp_min(floor) for i, t in enumerate(TASKS)}
        psi0 = evaluate_grid(ex, TASKS, torch.zeros(1, 2), ("T1", "T2", "OOD"))
        return {"eps": eps, "own_error": {t: own[t]["error"][i] for i, t in enumerate(TASKS)},
                "psi0": {t: v["loss"][0] for t, v in psi0.items()}}
    return ctx.memo("tv:refs", compute)


def _fine_tuned(ctx: ClaimContext) -> str | None:
    err = torch.stack([refs(ctx)["own_error"][t] for t in TASKS])  # [2, E_all]
    finite = torch.stack([refs(ctx)["eps"][t] for t in TASKS]).isfinite().all(0)  # diverged cells fail the verdict
    learned = (err <= FAR_FROM_CHANCE * CHANCE).all(0)[finite]
    if learned.numel() and learned.float().mean() > 0.5:
        return None
    return (f"Psi*_T1, Psi*_T2 test error <= {FAR_FROM_CHANCE:g} x chance on {int(learned.sum())}/{learned.numel()} "
            f"finite cells (errors T1 {short(err[0])}, T2 {short(err[1])})")


FINE_TUNED = Hypothesis(f"the task vectors come from fine-tuned models: on most cells that did not diverge Psi*_T1 and Psi*_T2 reach test "
                        f"error <= FAR_FROM_CHANCE ({FAR_FROM_CHANCE:g}) x chance on their own tasks", _fine_tuned)


def _gaussian(ctx: ClaimContext) -> Experiment:
    """Cor. 1's control: every task-vector matrix replaced by a Gaussian one of its shape and Frobenius norm."""
    ex, _ = setup(ctx)
    g = rng_for(_cfgs(ctx), ctx.device)

    def draw(t, tv):
        out = {}
        for k, v in tv.items():
            z = g.normal(tuple(v.shape[1:]), "cor1 control", t, k).to(v.device, v.dtype)
            out[k] = z * (v.flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1))[:, None, None]
        return out
    return ex.map_tvs(draw)


def variant(ctx: ClaimContext, name: str) -> Experiment:
    def compute():
        ex, _ = setup(ctx)
        if name == "dense":
            return ex
        if name == "rank1":
            return rank1(ex)
        if name == "gaussian":
            return _gaussian(ctx)
        if name == "gaussian_rank1":
            return rank1(variant(ctx, "gaussian"))
        n_small = cor2_split(ctx)["n_small"]  # {task: [E]}
        return pruned(ex, n_small, name.removeprefix("prune_"))
    return ctx.memo(f"tv:variant:{name}", compute)


def line(ctx: ClaimContext, name: str) -> dict:
    """Psi0 + dPsi_T1 + lambda dPsi_T2 over the lambda grid: {"T1": metrics, "T2": metrics} [G, E] each."""
    def compute():
        lams = lam_grid(_cfgs(ctx)[0].lam_step, LAM_LO, LAM_HI)
        return {"lams": torch.tensor(lams, dtype=torch.float64),
                **evaluate_grid(variant(ctx, name), TASKS, pair_lambdas(lams), TASKS)}
    return ctx.memo(f"tv:line:{name}", compute)


def plane(ctx: ClaimContext, name: str) -> dict:
    """Psi0 + l1 dPsi_T1 + l2 dPsi_T2 over the plane on T' (the orthogonal pair, alpha = 0): metrics [G, S]."""
    def compute():
        ex, idx = setup(ctx)
        lams = lam_grid(_cfgs(ctx)[0].lam_step, LAM_LO, LAM_HI)
        grid = plane_lambdas(lams, lams)
        return {"lams": lams, "grid": grid,
                **evaluate_grid(variant(ctx, name).subset(idx[0.0]), TASKS, grid, ("OOD",))["OOD"]}
    return ctx.memo(f"tv:plane:{name}", compute)


def _beta(ctx: ClaimContext) -> float:
    return 1.0 / _cfgs(ctx)[0].d


# ---- the per-seed tests, shared by the theorem claims and by Cors. 1-2 (which rerun them on edited vectors) ----

def thm4_test(ctx: ClaimContext, name: str, alphas=(0.0, 0.6)) -> dict:
    """Per seed [S]: worst = max over alphas and grid lambdas in [1 - alpha + beta, THM4_END] of the hinge over its
    bound (T1: O_EPS eps_hat_T1 + |lambda| beta; T2: O_EPS eps_hat_T2); ok = worst <= 1."""
    _, idx = setup(ctx)
    d, r, beta = line(ctx, name), refs(ctx), _beta(ctx)
    lams = d["lams"]
    worst, by = None, {}
    for a in alphas:
        c = idx[a]
        rng = (lams >= 1 - a + beta - 1e-9) & (lams <= THM4_END + 1e-9)
        b1 = O_EPS * r["eps"]["T1"][c][None] + lams.abs()[:, None] * beta  # [G, S]
        b2 = (O_EPS * r["eps"]["T2"][c])[None].expand_as(b1)
        ratio = torch.maximum(d["T1"]["loss"][:, c] / b1, d["T2"]["loss"][:, c] / b2)[rng]  # [g, S]
        w = ratio.nan_to_num(math.inf).max(0).values
        worst = w if worst is None else torch.maximum(worst, w)
        by[str(a)] = {"range": [r4(1 - a + beta), THM4_END], "worst_ratio": short(w),
                      "T1_loss_max": short(d["T1"]["loss"][:, c][rng].max(0).values),
                      "T2_loss_max": short(d["T2"]["loss"][:, c][rng].max(0).values)}
    return {"ok": worst <= 1, "worst": worst, "by_alpha": by}


def thm5_test(ctx: ClaimContext, name: str, alphas=(0.0, -0.6)) -> dict:
    """Per seed [S]: over grid lambdas in THM5_RANGE and the alphas, worst = max T1 hinge / (O_EPS eps_hat_T1 +
    |lambda| beta) and forgot = min T2 hinge / Psi0's T2 hinge; ok = worst <= 1 and forgot >= FAR_FROM_CHANCE."""
    _, idx = setup(ctx)
    d, r, beta = line(ctx, name), refs(ctx), _beta(ctx)
    lams = d["lams"]
    rng = (lams >= THM5_RANGE[0] - 1e-9) & (lams <= THM5_RANGE[1] + 1e-9)
    i0 = nearest(lams, 0.0)
    worst, forgot, by = None, None, {}
    for a in alphas:
        c = idx[a]
        l1, l2 = d["T1"]["loss"][:, c], d["T2"]["loss"][:, c]
        b1 = O_EPS * r["eps"]["T1"][c][None] + lams.abs()[:, None] * beta
        w = (l1 / b1)[rng].nan_to_num(math.inf).max(0).values
        f = (l2 / r["psi0"]["T2"][c][None])[rng].nan_to_num(-math.inf).min(0).values
        worst = w if worst is None else torch.maximum(worst, w)
        forgot = f if forgot is None else torch.minimum(forgot, f)
        by[str(a)] = {"T1_worst_ratio": short(w), "T2_share_of_psi0_min": short(f),
                      "T2_loss_at_lambda0": short(l2[i0]), "T2_loss_psi0": short(r["psi0"]["T2"][c])}
    return {"ok": (worst <= 1) & (forgot >= FAR_FROM_CHANCE), "worst": worst, "forgot": forgot, "by_alpha": by}


def thm6_test(ctx: ClaimContext, name: str, inside: bool = True) -> dict:
    """Per seed [S]: the share of region (8)'s cells (measured gamma, c = C_REGION, beta = 1/d) with OOD hinge <=
    O_EPS x eps_hat (the seed's mean over T1, T2), and the region's size; inside=False: the cells outside it."""
    _, idx = setup(ctx)
    c = idx[0.0]
    d, r = plane(ctx, name), refs(ctx)
    gam = ood_gammas([_cfgs(ctx)[i] for i in c], ctx.device)[:, :2].cpu()  # [S, 2]: projections of mu_T'
    region = in_region8(d["grid"], gam, _beta(ctx), C_REGION)  # [G, S]
    cells = region if inside else ~region
    eps = (r["eps"]["T1"][c] + r["eps"]["T2"][c]) / 2
    success = d["loss"] <= O_EPS * eps[None]  # [G, S] (NaN loss: not a success)
    precision = (success & cells).sum(0) / cells.sum(0).clamp_min(1)
    # the PRECISION_MIN-quantile of hinge / limit over the cells: <= 1 exactly when precision >= PRECISION_MIN
    ratio = (d["loss"] / (O_EPS * eps[None])).double().nan_to_num(math.inf).masked_fill(~cells, math.inf)
    n = cells.sum(0)
    k = (torch.ceil(PRECISION_MIN * n.double()).long() - 1).clamp(0, ratio.shape[0] - 1)
    quantile = ratio.sort(0).values.gather(0, k[None])[0]
    return {"ok": cells.any(0) & (precision >= PRECISION_MIN), "precision": precision, "cells": n, "quantile": quantile,
            "region": region, "success": success, "agreement": (region == success).float().mean(0),
            "baseline": (~success).float().mean(0), "gamma": gam, "eps": eps}


def keeps(ctx: ClaimContext, name: str) -> tuple[torch.Tensor, dict]:
    """[S]: every Thm 4-6 test the dense vectors pass on a seed also passes with variant `name`."""
    tests = {"thm4": thm4_test, "thm5": thm5_test, "thm6": thm6_test}
    dense = {k: f(ctx, "dense")["ok"] for k, f in tests.items()}
    edit = {k: f(ctx, name)["ok"] for k, f in tests.items()}
    ok = torch.stack([~dense[k] | edit[k] for k in tests]).all(0)
    return ok, {k: {"dense": dense[k].tolist(), name: edit[k].tolist()} for k in tests}


# ---- measurements (arm: MAIN or the claim's control arm) ----

def measure_thm4(ctx: ClaimContext, arm: str) -> Measurement:
    t = thm4_test(ctx, "dense", (0.0, 0.6) if arm == MAIN else (-0.6,))
    by = t["by_alpha"]
    summary = "; ".join(f"alpha={a}: max T1/T2 hinge over {v['range']} {r4(sum(v['T1_loss_max']) / len(v['T1_loss_max']))}"
                        f"/{r4(sum(v['T2_loss_max']) / len(v['T2_loss_max']))} (seed means)" for a, v in by.items())
    if arm != MAIN:
        return Measurement({"worst_ratio": t["worst"]}, summary, {"by_alpha": by})
    _, idx = setup(ctx)
    d = line(ctx, "dense")
    fig = {"lams": d["lams"].tolist(), "beta": _beta(ctx), "curves": {str(a): {
        f"{task}_{k}": d[task][k][:, idx[a]].mean(1).tolist() for task in TASKS for k in ("loss", "error")}
        for a in ALPHAS}, "std": {str(a): {
            f"{task}_{k}": d[task][k][:, idx[a]].double().std(1).tolist() for task in TASKS for k in ("loss", "error")}
            for a in ALPHAS}}
    return Measurement({"worst_ratio": t["worst"]}, summary + f"; eps_hat T1 {short(refs(ctx)['eps']['T1'][idx[0.0]])}",
                       {"by_alpha": by, "irrelevant_sign": _cfgs(ctx)[0].irrelevant_sign}, {"loss_vs_lambda": fig})


def measure_fig_thm4_below(ctx: ClaimContext, arm: str) -> Measurement:
    _, idx = setup(ctx)
    d, r = line(ctx, "dense"), refs(ctx)
    lams = d["lams"]
    share, by = None, {}
    for a in (0.0, 0.6):
        c = idx[a]
        i = nearest(lams, 1 - a - BELOW)
        s = d["T2"]["loss"][i, c] / r["psi0"]["T2"][c]
        share = s if share is None else torch.minimum(share, s)
        by[str(a)] = {"lambda": float(lams[i]), "T2_loss": short(d["T2"]["loss"][i, c]),
                      "T2_error": short(d["T2"]["error"][i, c]), "psi0_T2_loss": short(r["psi0"]["T2"][c])}
    return Measurement({"t2_share": share}, "; ".join(f"alpha={a}: lambda {v['lambda']}: T2 hinge {v['T2_loss']} "
                                                      f"error {v['T2_error']}" for a, v in by.items()), {"by_alpha": by})


def measure_thm5(ctx: ClaimContext, arm: str) -> Measurement:
    t = thm5_test(ctx, "dense", (0.0, -0.6) if arm == MAIN else (0.6,))
    by = t["by_alpha"]
    return Measurement(
        {"t1_ratio": t["worst"], "t2_share": t["forgot"]},
        "; ".join(f"alpha={a}: T1 hinge / bound {v['T1_worst_ratio']}, min T2 hinge / Psi0's {v['T2_share_of_psi0_min']}; "
                  f"Observation (is forgetting due to the negation?): T2 hinge at lambda = 0 {v['T2_loss_at_lambda0']} "
                  f"vs Psi0 {v['T2_loss_psi0']}" for a, v in by.items()),
        {"by_alpha": by})


def measure_fig_thm5_aligned(ctx: ClaimContext, arm: str) -> Measurement:
    _, idx = setup(ctx)
    d, r, beta = line(ctx, "dense"), refs(ctx), _beta(ctx)
    lams, c = d["lams"], idx[0.6]
    neg = lams <= 1e-9
    l1, l2 = d["T1"]["loss"][:, c], d["T2"]["loss"][:, c]
    feasible = ((l1 <= O_EPS * r["eps"]["T1"][c][None] + lams.abs()[:, None] * beta)
                & (l2 >= FAR_FROM_CHANCE * r["psi0"]["T2"][c][None]))[neg]  # [g, S]
    i = nearest(lams, -1.0)
    return Measurement(
        {"feasible": feasible.sum(0)},
        f"at lambda = -1: T1 hinge {short(l1[i])} (eps_hat {short(r['eps']['T1'][c])}), T2 hinge {short(l2[i])}",
        {"feasible_lambdas": [lams[neg][feasible[:, j]].tolist() for j in range(len(c))]})


def measure_thm6(ctx: ClaimContext, arm: str) -> Measurement:
    t = thm6_test(ctx, "dense", inside=arm == MAIN)
    values = {"quantile": t["quantile"], "cells": t["cells"], "precision": t["precision"]}
    if arm != MAIN:
        return Measurement(values, f"cells outside region (8) {t['cells'].tolist()}")
    d = plane(ctx, "dense")
    ex, idx = setup(ctx)
    loss, acc = d["loss"].mean(1), d["acc"].mean(1)
    best = short(d["grid"][int(seed_argbest(loss[:, None], maximise=False)[0])])
    gam = t["gamma"].mean(0)
    n = len(d["lams"])
    table = lwptv_table(ex.subset(idx[0.0]), TASKS, TASKS, "OOD", lambda m: m["acc"],
                        block_names={"W": "blocks.0.W", "V": "blocks.1.V"})
    fig = heatmap_data(d["lams"], {"accuracy on T'": acc, "hinge loss on T'": loss},
                       in_region8(d["grid"], gam, _beta(ctx), C_REGION), gam.tolist(), C_REGION, _beta(ctx), best,
                       contour=("hinge loss on T'", float(O_EPS * t["eps"].mean()),
                                f"criterion: hinge <= {O_EPS:g} x eps_hat = {float(O_EPS * t['eps'].mean()):.3g} "
                                "(eps_hat: T1, T2 own hinge, same run; seed mean)"))
    return Measurement(
        values, f"gamma ({r4(gam[0])}, {r4(gam[1])}); region cells {t['cells'].tolist()} of {n * n}; agreement "
        f"{short(t['agreement'])} vs the all-False baseline {short(t['baseline'])}; best (seed mean) {best}",
        {"agreement": short(t["agreement"]), "all_false_baseline": short(t["baseline"]),
         "success_cells": t["success"].sum(0).tolist(), "cells": n * n, "gamma": short(gam), "lwptv": table["rows"],
         "tables": {"LwPTV on the theory models (alpha = 0 pair; T' OOD; blocks: W attention, V value)": table["markdown"]}},
        {"ood_heatmap": fig})


def _frobenius(ctx: ClaimContext, ex: Experiment) -> dict:
    """Eq. (9) for each task vector's (dW, dV) [E_all, ...]: residuals of the top-1 SVD over their bounds; worst
    [S] over every task vector of the seed (all alphas, T1 and T2)."""
    _, idx = setup(ctx)
    r, M = refs(ctx), _cfgs(ctx)[0].M
    worst, out = torch.zeros(len(idx[0.0]), dtype=torch.float64), {}
    for t in TASKS:
        dW, dV = ex.tvs[t]["W"], ex.tvs[t]["V"]
        resW = rank1_residual(dW)
        relV = rank1_residual(dV) / dV.flatten(1).norm(dim=1)
        bW, bV = M * r["eps"][t] + 1 / math.log(M), O_EPS * r["eps"][t]
        ratio = torch.maximum(resW / bW, relV / bV).nan_to_num(math.inf).double()  # [E_all]
        for a in ALPHAS:
            worst = torch.maximum(worst, ratio[idx[a]])
        out[t] = {"W_residual": short(resW), "W_bound": short(bW), "W_norm": short(dW.flatten(1).norm(dim=1)),
                  "V_relative_residual": short(relV), "V_bound": short(bV)}
    return {"worst": worst, "by_task": out}


def rank1_residual(x: torch.Tensor) -> torch.Tensor:
    """x [E, a, b] -> [E]: ||x - its best rank-1 approximation||_F (NaN for a diverged model)."""
    return (x - guard_finite(lambda v: low_rank(v, rank=1, model_axis=True), x)).flatten(1).norm(dim=1)


def measure_cor1(ctx: ClaimContext, arm: str) -> Measurement:
    """MAIN: the trained task vectors; control: Gaussian matrices of the same shapes and norms. The same eq. (9)
    residuals, and the same test that their top-1 SVD keeps every Thm 4-6 test the trained dense vectors pass."""
    full, lr = ("dense", "rank1") if arm == MAIN else ("gaussian", "gaussian_rank1")
    frob = _frobenius(ctx, variant(ctx, full))
    keep, parts = keeps(ctx, lr)
    mean = lambda v: r4(sum(v) / len(v))  # noqa: E731
    by = frob["by_task"]
    return Measurement(
        {"worst_ratio": frob["worst"], "kept": keep},
        f"eq. (9) holds on {int((frob['worst'] <= 1).sum())}/{len(keep)} seeds, Thms 4-6 kept on "
        f"{int(keep.sum())}/{len(keep)}; "
        + "; ".join(f"d{t}: W residual {mean(v['W_residual'])} (bound {mean(v['W_bound'])}; ||dW||_F "
                    f"{mean(v['W_norm'])}), V relative residual {mean(v['V_relative_residual'])} (bound "
                    f"{mean(v['V_bound'])})" for t, v in by.items()),
        {"frobenius": by, "keeps": parts, "irrelevant_sign": _cfgs(ctx)[0].irrelevant_sign})


def cor2_split(ctx: ClaimContext) -> dict:
    """The small dV rows of every task vector: the rows below the largest ratio gap of the sorted norms."""
    def compute():
        ex, _ = setup(ctx)
        out = {"n_small": {}, "norms": {}}
        for t in TASKS:
            norms = ex.tvs[t]["V"].norm(dim=-1).nan_to_num(0.0)  # [E, m]
            out["n_small"][t] = small_group_size(norms)
            out["norms"][t] = norms
        return out
    return ctx.memo("tv:cor2_split", compute)


def measure_cor2(ctx: ClaimContext, arm: str) -> Measurement:
    """MAIN prunes each dV's small group (n rows below the largest ratio gap); the control prunes as many of the
    largest rows. Both: max pruned / min kept row norm over O_EPS eps_hat, and whether the pruned vectors keep
    every Thm 4-6 test the dense ones pass."""
    ex, idx = setup(ctx)
    sp, r = cor2_split(ctx), refs(ctx)
    m = ex.tvs["T1"]["V"].shape[1]
    worst = torch.zeros(len(idx[0.0]), dtype=torch.float64)
    ratio = {}
    for t in TASKS:
        norms, n = sp["norms"][t], sp["n_small"][t]
        if arm == MAIN:  # the small group against the smallest large row
            s = norms.sort(dim=1).values
            rel = s.gather(1, (n - 1)[:, None])[:, 0] / s.gather(1, n[:, None].clamp_max(m - 1))[:, 0]
        else:  # the n largest rows pruned: the largest row against the smallest (kept) one
            rel = norms.max(1).values / norms.min(1).values.clamp_min(1e-12)
        ratio[t] = short(rel)
        scaled = (rel / (O_EPS * r["eps"][t])).double().nan_to_num(math.inf)
        for a in ALPHAS:
            worst = torch.maximum(worst, scaled[idx[a]])
    keep, parts = keeps(ctx, "prune_small" if arm == MAIN else "prune_large")
    frac = {t: short(sp["n_small"][t].float() / m) for t in TASKS}
    return Measurement(
        {"worst_ratio": worst, "kept": keep},
        f"row split holds on {int((worst <= 1).sum())}/{len(keep)} seeds, Thms 4-6 kept on {int(keep.sum())}/"
        f"{len(keep)}. Observation (bimodality): pruned-row fraction {frac}, max pruned / min kept norm {ratio}",
        {"small_fraction": frac, "pruned_over_kept": ratio, "keeps": parts})


KEPT = Holds("kept", meaning="every Thm 4-6 test the dense task vectors pass on the seed still passes with the edited ones")
CLAIMS = [
    Claim("thm4_multitask", "Thm 4", "theorem", "alpha >= 0 and lambda >= 1 - alpha + beta: hinge loss on T1 <= "
          "Theta(eps) + |lambda| beta and on T2 <= Theta(eps).", measure=measure_thm4,
          criterion=Criterion(AtMost("worst_ratio", 1.0, f"max over the arm's alphas and grid lambdas in [1 - alpha + "
                                     f"beta, {THM4_END:g}] of hinge / bound (T1: {O_EPS:g} eps_hat_T1 + |lambda| beta; "
                                     f"T2: {O_EPS:g} eps_hat_T2; eps_hat own test hinge >= 3/n_test; beta = 1/d)")),
          hypotheses=(FINE_TUNED, Hypothesis("alpha >= 0 (the main arm's pairs alpha in {0, 0.6})", lambda ctx: None)),
          control=ControlArm("alpha=-0.6", "the contradictory pair alpha = -0.6 (hypothesis alpha >= 0 false)")),
    Claim("fig_thm4_below", "Thm 4 (converse)", "figure", "Below the line (lambda = 1 - alpha - 0.5) T2 fails: loss "
          "Theta(1) (a converse the theorem does not state).", measure=measure_fig_thm4_below,
          criterion=Criterion(AtLeast("t2_share", FAR_FROM_CHANCE, f"min over alpha in {{0, 0.6}} of T2 hinge at "
                                      f"lambda = 1 - alpha - {BELOW:g} / Psi0's T2 hinge"))),
    Claim("thm5_unlearning", "Thm 5", "theorem", "alpha <= 0 and lambda in [-Theta(alpha^-2), 0]: T1 kept (loss <= "
          "Theta(eps) + |lambda| beta) and T2 forgotten (loss >= Theta(1)).", measure=measure_thm5,
          # key: the forgetting part (the keeping part's worst case is lambda = 0, the fine-tuned Psi*_T1 itself,
          # whose ratio is 1/O_EPS by construction; forgetting is what tells the arms apart)
          criterion=Criterion(AtLeast("t2_share", FAR_FROM_CHANCE, f"min over the arm's alphas and grid lambdas in "
                                      f"{list(THM5_RANGE)} of T2 hinge / Psi0's T2 hinge"),
                              AtMost("t1_ratio", 1.0, f"max over the same of T1 hinge / ({O_EPS:g} eps_hat_T1 + "
                                     "|lambda| beta)")),
          hypotheses=(FINE_TUNED, Hypothesis("alpha <= 0 (the main arm's pairs alpha in {0, -0.6})", lambda ctx: None)),
          control=ControlArm("alpha=0.6", "the aligned pair alpha = 0.6 (hypothesis alpha <= 0 false)")),
    Claim("fig_thm5_aligned", "Thm 5 (converse)", "figure", "Aligned tasks: no negation keeps T1 and forgets T2 "
          "(the theorem covers alpha <= 0 only).", measure=measure_fig_thm5_aligned,
          criterion=Criterion(AtMost("feasible", 0.0, f"alpha = 0.6: grid lambdas <= 0 with T1 hinge <= {O_EPS:g} "
                                     f"eps_hat_T1 + |lambda| beta and T2 hinge >= {FAR_FROM_CHANCE:g} x Psi0's"))),
    Claim("thm6_ood", "Thm 6", "theorem", "Every (lambda1, lambda2) in region (8) with gamma measured has a small OOD "
          "loss on T' (precision over grid cells).", measure=measure_thm6,
          criterion=Criterion(AtMost("quantile", 1.0, f"the {PRECISION_MIN:.0%} quantile over the arm's grid cells "
                                     f"of OOD hinge / ({O_EPS:g} x eps_hat) (mean of the seed's T1, T2 eps_hat): <= 1 "
                                     f"exactly when >= {PRECISION_MIN:.0%} of the cells have small OOD hinge"),
                              AtLeast("cells", 1.0, f"grid cells in the arm (region (8): measured gamma, c = "
                                      f"{C_REGION:g}, beta = 1/d)")),
          hypotheses=(FINE_TUNED,),
          control=ControlArm("outside", "the cells outside region (8) (hypothesis false)")),
    Claim("cor1_low_rank", "Cor. 1", "theorem", "The top-1 SVD of dW, dV meets eq. (9)'s Frobenius bounds, and the "
          "rank-1 task vectors keep Thms 4-6.", measure=measure_cor1,
          criterion=Criterion(AtMost("worst_ratio", 1.0, "max over the seed's task vectors of the top-1 SVD residual / "
                                     f"eq. (9)'s bound (dW: M eps_hat + 1/log M; dV: {O_EPS:g} eps_hat ||dV||_F)"), KEPT),
          hypotheses=(FINE_TUNED,),
          control=ControlArm("gaussian", "Gaussian matrices of the task vectors' shapes and norms (not trained)")),
    Claim("cor2_sparse", "Cor. 2", "theorem", "dV's rows split into large rows and rows O(eps) smaller; pruning the "
          "small rows keeps Thms 4-6 (pruning as many large rows is the control).", measure=measure_cor2,
          criterion=Criterion(AtMost("worst_ratio", 1.0, f"max over the seed's dV of (max pruned / min kept row norm) "
                                     f"/ ({O_EPS:g} eps_hat)"), KEPT),
          hypotheses=(FINE_TUNED,),
          control=ControlArm("prune_large", "pruning as many of the largest dV rows")),
]
