"""Thms 4-6 and Cors. 1-2 of Li et al. (ICLR 2025) as claims, graded per seed (core.claims), on one shared
set of trained cells: the seeds of the base config x alpha in ALPHAS, T1 and T2 fine-tuned from one Psi0 per
cell. Seed j's test uses its own cells of every alpha.

Constants, fixed before any run and relative to what the same run measures:
- eps_hat: each fine-tuned Psi*_T's own test hinge loss on T, at least the rule-of-three resolution 3/n_test.
  "Theta(eps)" = EPS_MULT x eps_hat (+ |lambda| beta on T1, as Thms 4-5 state); beta = 1/d (Theta(1/d)).
  On T' (no fine-tuned model) eps_hat is the mean of the seed's eps_hat on T1 and T2.
- "Theta(1)" = THETA1_SHARE x the hinge loss of Psi0 (the model before fine-tuning) on the same test set.
- Thm 4's range: lambda in [1 - alpha + beta, THM4_END]; Thm 5's: lambda in THM5_RANGE (inside [-Theta(alpha^-2), 0]).
- Thm 6: c = C_REGION in (8); region (8) holds on a seed when at least PRECISION_MIN of its cells have
  OOD hinge <= Theta(eps) (precision is what the theorem states; agreement is reported with its all-False baseline).
- Cor. 1, eq. (9): ||dW - dW_LR||_F <= M eps_hat + 1/log M (the paper's bound as written) and
  ||dV - dV_LR||_F <= EPS_MULT eps_hat ||dV||_F (Theta(eps) on dV's own scale), dW_LR, dV_LR the top-1 SVD.
- Cor. 2: the dV rows below the largest ratio gap of the sorted row norms (core.measures) are the small rows;
  max small / min large row norm <= EPS_MULT x eps_hat (O(m^-1/2 eps) against Omega(m^-1/2)).
- Cors. 1-2 "keep Thms 4-6": on each seed, every test of Thms 4, 5, 6 that the dense task vectors pass also
  passes with the rank-1 (row-pruned) ones.
"""
from __future__ import annotations

import math

import torch

from theorylab.core.claims import Claim, ClaimContext, Control, Outcome
from theorylab.core.ensemble import rng_for
from theorylab.shared.task_arithmetic import (Experiment, evaluate_grid, guard_finite, heatmap_data, in_region8, lam_grid,
                                       lwptv_table, nearest, pair_lambdas, plane_lambdas, seed_argbest)
from theorylab.core.measures import r4, small_group_size, zero_count_bound
from theorylab.edit import low_rank
from theorylab.studies.task_vectors.config import LAM_HI, LAM_LO
from theorylab.studies.task_vectors.data import TASKS, ood_gammas
from theorylab.studies.task_vectors.evaluate import experiment, pruned, rank1

ALPHAS = (0.0, 0.6, -0.6)  # irrelevant, aligned, contradictory (the calibration note's pairs)
EPS_MULT = 2.0
THETA1_SHARE = 0.5
C_REGION = 0.2
THM4_END = 2.0
THM5_RANGE = (-1.0, 0.0)
BELOW = 0.5  # the Thm 4 figure's point below the line: lambda = 1 - alpha - BELOW
PRECISION_MIN = 0.9


def _list(x) -> list[float]:
    return [r4(v) for v in torch.as_tensor(x).tolist()]


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
    """eps_hat [E] per task (own test hinge, >= 3/n_test) and Psi0's hinge [E] on T1, T2, T'."""
    def compute():
        ex, _ = setup(ctx)
        own = evaluate_grid(ex, TASKS, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), TASKS)
        floor = zero_count_bound(_cfgs(ctx)[0].n_test)
        eps = {t: own[t]["loss"][i].clamp_min(floor) for i, t in enumerate(TASKS)}
        psi0 = evaluate_grid(ex, TASKS, torch.zeros(1, 2), ("T1", "T2", "OOD"))
        return {"eps": eps, "psi0": {t: v["loss"][0] for t, v in psi0.items()}}
    return ctx.memo("tv:refs", compute)


def variant(ctx: ClaimContext, name: str) -> Experiment:
    def compute():
        ex, _ = setup(ctx)
        if name == "dense":
            return ex
        if name == "rank1":
            return rank1(ex)
        n_small = cor2_split(ctx)["n_small"]  # {task: [E]}
        return pruned(ex, n_small, name.removeprefix("prune_"))
    return ctx.memo(f"tv:variant:{name}", compute)


def line(ctx: ClaimContext, name: str) -> dict:
    """Psi0 + dPsi_T1 + lambda dPsi_T2 over the lambda grid: {"T1": metrics, "T2": metrics} [G, E] each."""
    def compute():
        lams = lam_grid(_cfgs(ctx)[0].lam_step, LAM_LO, LAM_HI)
        return {"lams": torch.tensor(lams, dtype=torch.float64), **evaluate_grid(variant(ctx, name), TASKS, pair_lambdas(lams), TASKS)}
    return ctx.memo(f"tv:line:{name}", compute)


def plane(ctx: ClaimContext, name: str) -> dict:
    """Psi0 + l1 dPsi_T1 + l2 dPsi_T2 over the plane on T' (the orthogonal pair, alpha = 0): metrics [G, S]."""
    def compute():
        ex, idx = setup(ctx)
        lams = lam_grid(_cfgs(ctx)[0].lam_step, LAM_LO, LAM_HI)
        grid = plane_lambdas(lams, lams)
        return {"lams": lams, "grid": grid, **evaluate_grid(variant(ctx, name).subset(idx[0.0]), TASKS, grid, ("OOD",))["OOD"]}
    return ctx.memo(f"tv:plane:{name}", compute)


def _beta(ctx: ClaimContext) -> float:
    return 1.0 / _cfgs(ctx)[0].d


# ---- the per-seed tests, shared by the theorem claims and by Cors. 1-2 (which rerun them on edited vectors) ----

def thm4_test(ctx: ClaimContext, name: str, alphas=(0.0, 0.6)) -> dict:
    """Per seed [S]: at every grid lambda in [1 - alpha + beta, THM4_END], T1 hinge <= EPS_MULT eps_hat_T1 +
    |lambda| beta and T2 hinge <= EPS_MULT eps_hat_T2, for each alpha. worst: max loss / bound."""
    _, idx = setup(ctx)
    d, r, beta = line(ctx, name), refs(ctx), _beta(ctx)
    lams = d["lams"]
    ok, worst, by = None, None, {}
    for a in alphas:
        c = idx[a]
        rng = (lams >= 1 - a + beta - 1e-9) & (lams <= THM4_END + 1e-9)
        b1 = EPS_MULT * r["eps"]["T1"][c][None] + lams.abs()[:, None] * beta  # [G, S]
        b2 = (EPS_MULT * r["eps"]["T2"][c])[None].expand_as(b1)
        ratio = torch.maximum(d["T1"]["loss"][:, c] / b1, d["T2"]["loss"][:, c] / b2)[rng]  # [g, S]
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.tensor(math.inf))
        w = ratio.max(0).values
        ok = (w <= 1) if ok is None else ok & (w <= 1)
        worst = w if worst is None else torch.maximum(worst, w)
        by[str(a)] = {"range": [r4(1 - a + beta), THM4_END], "worst_ratio": _list(w),
                      "T1_loss_max": _list(d["T1"]["loss"][:, c][rng].max(0).values),
                      "T2_loss_max": _list(d["T2"]["loss"][:, c][rng].max(0).values)}
    return {"ok": ok, "worst": worst, "by_alpha": by}


def thm5_test(ctx: ClaimContext, name: str, alphas=(0.0, -0.6)) -> dict:
    """Per seed [S]: at every grid lambda in THM5_RANGE, T1 hinge <= EPS_MULT eps_hat_T1 + |lambda| beta and
    T2 hinge >= THETA1_SHARE x Psi0's T2 hinge, for each alpha. worst: max T1 loss / bound."""
    _, idx = setup(ctx)
    d, r, beta = line(ctx, name), refs(ctx), _beta(ctx)
    lams = d["lams"]
    rng = (lams >= THM5_RANGE[0] - 1e-9) & (lams <= THM5_RANGE[1] + 1e-9)
    i0 = nearest(lams, 0.0)
    ok, worst, by = None, None, {}
    for a in alphas:
        c = idx[a]
        l1, l2 = d["T1"]["loss"][:, c], d["T2"]["loss"][:, c]
        b1 = EPS_MULT * r["eps"]["T1"][c][None] + lams.abs()[:, None] * beta
        theta1 = THETA1_SHARE * r["psi0"]["T2"][c]
        keep = (l1 <= b1)[rng].all(0)
        forget = (l2 >= theta1[None])[rng].all(0)
        w = (l1 / b1)[rng].nan_to_num(math.inf).max(0).values
        ok = (keep & forget) if ok is None else ok & keep & forget
        worst = w if worst is None else torch.maximum(worst, w)
        by[str(a)] = {"keeps_T1": keep.tolist(), "forgets_T2": forget.tolist(), "T1_worst_ratio": _list(w),
                      "T2_loss_min": _list(l2[rng].min(0).values), "theta1": _list(theta1),
                      "T2_loss_at_lambda0": _list(l2[i0]), "T2_loss_psi0": _list(r["psi0"]["T2"][c])}
    return {"ok": ok, "worst": worst, "by_alpha": by}


def thm6_test(ctx: ClaimContext, name: str) -> dict:
    """Per seed [S]: region (8) (measured gamma, c = C_REGION, beta = 1/d) is non-empty and >= PRECISION_MIN of
    its cells have OOD hinge <= EPS_MULT x eps_hat (the seed's mean over T1, T2). Also the cells outside."""
    _, idx = setup(ctx)
    c = idx[0.0]
    d, r = plane(ctx, name), refs(ctx)
    gam = ood_gammas([_cfgs(ctx)[i] for i in c], ctx.device)[:, :2].cpu()  # [S, 2]: projections of mu_T'
    region = in_region8(d["grid"], gam, _beta(ctx), C_REGION)  # [G, S]
    eps = (r["eps"]["T1"][c] + r["eps"]["T2"][c]) / 2
    success = d["loss"] <= EPS_MULT * eps[None]  # [G, S] (NaN loss: not a success)
    share = lambda m: (success & m).sum(0) / m.sum(0).clamp_min(1)  # noqa: E731
    precision, outside = share(region), share(~region)
    return {"ok": region.any(0) & (precision >= PRECISION_MIN), "precision": precision, "outside": outside,
            "control_ok": (~region).any(0) & (outside >= PRECISION_MIN), "region": region, "success": success,
            "agreement": (region == success).float().mean(0), "baseline": (~success).float().mean(0),
            "gamma": gam, "eps": eps}


def keeps(ctx: ClaimContext, name: str) -> tuple[torch.Tensor, dict]:
    """[S]: every Thm 4-6 test the dense vectors pass on a seed also passes with variant `name`."""
    tests = {"thm4": thm4_test, "thm5": thm5_test, "thm6": thm6_test}
    dense = {k: f(ctx, "dense")["ok"] for k, f in tests.items()}
    edit = {k: f(ctx, name)["ok"] for k, f in tests.items()}
    ok = torch.stack([~dense[k] | edit[k] for k in tests]).all(0)
    return ok, {k: {"dense": dense[k].tolist(), name: edit[k].tolist()} for k in tests}


# ---- claims ----

def thm4(ctx: ClaimContext) -> Outcome:
    t = thm4_test(ctx, "dense")
    ctl = thm4_test(ctx, "dense", alphas=(-0.6,))
    _, idx = setup(ctx)
    d = line(ctx, "dense")
    fig = {"lams": d["lams"].tolist(), "beta": _beta(ctx), "curves": {str(a): {
        f"{task}_{k}": d[task][k][:, idx[a]].mean(1).tolist() for task in TASKS for k in ("loss", "error")} for a in ALPHAS}}
    by = t["by_alpha"]
    return Outcome(
        t["ok"].tolist(), "max over the range of hinge / bound (both alphas)", t["worst"].tolist(),
        f"alpha in {{0, 0.6}}, every grid lambda in [1 - alpha + beta, {THM4_END}]: T1 hinge <= {EPS_MULT:g} eps_hat_T1 + "
        f"|lambda| beta and T2 hinge <= {EPS_MULT:g} eps_hat_T2 (eps_hat: own test hinge >= 3/n_test; beta = 1/d)",
        "; ".join(f"alpha={a}: max T1/T2 hinge over {v['range']} {r4(sum(v['T1_loss_max']) / len(v['T1_loss_max']))}/"
                  f"{r4(sum(v['T2_loss_max']) / len(v['T2_loss_max']))} (seed means)" for a, v in by.items())
        + f"; eps_hat T1 {_list(refs(ctx)['eps']['T1'][idx[0.0]])}",
        {"by_alpha": by, "irrelevant_sign": _cfgs(ctx)[0].irrelevant_sign},
        {"loss_vs_lambda": fig},
        control=Control("the contradictory pair alpha = -0.6 (hypothesis alpha >= 0 false) on its own range",
                        ctl["ok"].tolist(), f"worst hinge / bound {_list(ctl['worst'])}"))


def fig_thm4_below(ctx: ClaimContext) -> Outcome:
    _, idx = setup(ctx)
    d, r = line(ctx, "dense"), refs(ctx)
    lams = d["lams"]
    ok, share, by = None, None, {}
    for a in (0.0, 0.6):
        c = idx[a]
        i = nearest(lams, 1 - a - BELOW)
        s = d["T2"]["loss"][i, c] / r["psi0"]["T2"][c]
        ok = (s >= THETA1_SHARE) if ok is None else ok & (s >= THETA1_SHARE)
        share = s if share is None else torch.minimum(share, s)
        by[str(a)] = {"lambda": float(lams[i]), "T2_loss": _list(d["T2"]["loss"][i, c]),
                      "T2_error": _list(d["T2"]["error"][i, c]), "psi0_T2_loss": _list(r["psi0"]["T2"][c])}
    return Outcome(
        ok.tolist(),
        "T2 hinge below the line / Psi0's T2 hinge (min over alphas)", share.tolist(),
        f"alpha in {{0, 0.6}}, at lambda = 1 - alpha - {BELOW}: T2 hinge >= {THETA1_SHARE:g} x Psi0's T2 hinge "
        "(the converse Thm 4 does not state: 'below the line T2 fails')",
        "; ".join(f"alpha={a}: lambda {v['lambda']}: T2 hinge {v['T2_loss']} error {v['T2_error']}" for a, v in by.items()),
        {"by_alpha": by})


def thm5(ctx: ClaimContext) -> Outcome:
    t = thm5_test(ctx, "dense")
    ctl = thm5_test(ctx, "dense", alphas=(0.6,))
    by = t["by_alpha"]
    return Outcome(
        t["ok"].tolist(), "max over the range of T1 hinge / bound (both alphas)", t["worst"].tolist(),
        f"alpha in {{0, -0.6}}, every grid lambda in {list(THM5_RANGE)}: T1 hinge <= {EPS_MULT:g} eps_hat_T1 + |lambda| "
        f"beta and T2 hinge >= {THETA1_SHARE:g} x Psi0's T2 hinge",
        "; ".join(f"alpha={a}: keeps T1 {sum(v['keeps_T1'])}/{len(v['keeps_T1'])}, T2 hinge >= "
                  f"{r4(min(v['T2_loss_min']))} (Theta(1) {r4(max(v['theta1']))}); Observation (is forgetting due to the "
                  f"negation?): T2 hinge at lambda = 0 {_list(v['T2_loss_at_lambda0'])} vs Psi0 {_list(v['T2_loss_psi0'])}"
                  for a, v in by.items()),
        {"by_alpha": by},
        control=Control("the aligned pair alpha = 0.6 (hypothesis alpha <= 0 false)", ctl["ok"].tolist(),
                        f"keeps T1 {ctl['by_alpha']['0.6']['keeps_T1']}, forgets T2 {ctl['by_alpha']['0.6']['forgets_T2']}"))


def fig_thm5_aligned(ctx: ClaimContext) -> Outcome:
    _, idx = setup(ctx)
    d, r, beta = line(ctx, "dense"), refs(ctx), _beta(ctx)
    lams, c = d["lams"], idx[0.6]
    neg = lams <= 1e-9
    l1, l2 = d["T1"]["loss"][:, c], d["T2"]["loss"][:, c]
    feasible = ((l1 <= EPS_MULT * r["eps"]["T1"][c][None] + lams.abs()[:, None] * beta)
                & (l2 >= THETA1_SHARE * r["psi0"]["T2"][c][None]))[neg]  # [g, S]
    n = feasible.sum(0)
    i = nearest(lams, -1.0)
    return Outcome(
        (n == 0).tolist(), "negative lambdas that keep T1 and forget T2 (aligned pair)", n.float().tolist(),
        f"alpha = 0.6: no grid lambda <= 0 has T1 hinge <= {EPS_MULT:g} eps_hat_T1 + |lambda| beta and T2 hinge >= "
        f"{THETA1_SHARE:g} x Psi0's T2 hinge (the converse of Thm 5; spec [M])",
        f"at lambda = -1: T1 hinge {_list(l1[i])} (eps_hat {_list(r['eps']['T1'][c])}), T2 hinge {_list(l2[i])}",
        {"feasible_lambdas": [lams[neg][feasible[:, j]].tolist() for j in range(len(c))]})


def thm6(ctx: ClaimContext) -> Outcome:
    t = thm6_test(ctx, "dense")
    d = plane(ctx, "dense")
    ex, idx = setup(ctx)
    loss, acc = d["loss"].mean(1), d["acc"].mean(1)
    best = _list(d["grid"][int(seed_argbest(loss[:, None], maximise=False)[0])])
    gam = t["gamma"].mean(0)
    n = len(d["lams"])
    table = lwptv_table(ex.subset(idx[0.0]), TASKS, TASKS, "OOD", lambda m: m["acc"],
                        block_names={"W": "blocks.0.W", "V": "blocks.1.V"})
    per = lambda k: _list(t[k])  # noqa: E731
    fig = heatmap_data(d["lams"], {"accuracy on T'": acc, "hinge loss on T'": loss},
                       in_region8(d["grid"], gam, _beta(ctx), C_REGION), gam.tolist(), C_REGION, _beta(ctx), best,
                       contour=("hinge loss on T'", float(EPS_MULT * t["eps"].mean())))
    return Outcome(
        t["ok"].tolist(), "precision of region (8): share of its cells with small OOD hinge", t["precision"].tolist(),
        f"region (8) with measured gamma, c = {C_REGION}, beta = 1/d is non-empty and >= {PRECISION_MIN:.0%} of its cells "
        f"have OOD hinge <= {EPS_MULT:g} x eps_hat (mean of the seed's T1, T2 eps_hat)",
        f"gamma ({r4(gam[0])}, {r4(gam[1])}); region cells {t['region'].sum(0).tolist()} of {n * n}; agreement "
        f"{per('agreement')} vs the all-False baseline {per('baseline')}; best (seed mean) {best}",
        {"precision": per("precision"), "outside_share": per("outside"), "agreement": per("agreement"),
         "all_false_baseline": per("baseline"), "region_cells": t["region"].sum(0).tolist(),
         "success_cells": t["success"].sum(0).tolist(), "cells": n * n, "gamma": _list(gam), "lwptv": table["rows"],
         "tables": {"LwPTV on the theory models (alpha = 0 pair; T' OOD; blocks: W attention, V value)": table["markdown"]}},
        {"ood_heatmap": fig},
        control=Control("the cells outside region (8) (hypothesis false)", t["control_ok"].tolist(),
                        f"share with small OOD hinge {per('outside')}"))


def _frobenius(ctx: ClaimContext, mats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Eq. (9) for (dW, dV) [E_all, ...] per task: residuals of the top-1 SVD against their bounds; ok [S] when
    every task vector of the seed (all alphas, T1 and T2) meets both."""
    _, idx = setup(ctx)
    r, M = refs(ctx), _cfgs(ctx)[0].M
    S = len(idx[0.0])
    ok, worst, out = torch.ones(S, dtype=torch.bool), torch.zeros(S), {}
    for t, (dW, dV) in mats.items():
        resW = rank1_residual(dW)
        relV = rank1_residual(dV) / dV.flatten(1).norm(dim=1)
        bW, bV = M * r["eps"][t] + 1 / math.log(M), EPS_MULT * r["eps"][t]
        ratio = torch.maximum(resW / bW, relV / bV).nan_to_num(math.inf)  # [E_all]
        for a in ALPHAS:
            ok &= ratio[idx[a]] <= 1
            worst = torch.maximum(worst, ratio[idx[a]])
        out[t] = {"W_residual": _list(resW), "W_bound": _list(bW), "W_norm": _list(dW.flatten(1).norm(dim=1)),
                  "V_relative_residual": _list(relV), "V_bound": _list(bV)}
    return {"ok": ok, "worst": worst, "by_task": out}


def rank1_residual(x: torch.Tensor) -> torch.Tensor:
    """x [E, a, b] -> [E]: ||x - its best rank-1 approximation||_F (NaN for a diverged model)."""
    return (x - guard_finite(lambda v: low_rank(v, rank=1, model_axis=True), x)).flatten(1).norm(dim=1)


def cor1(ctx: ClaimContext) -> Outcome:
    ex, _ = setup(ctx)
    frob = _frobenius(ctx, {t: (tv["W"], tv["V"]) for t, tv in ex.tvs.items()})
    g = rng_for(_cfgs(ctx), ctx.device)

    def gaussian(t, k):  # the control: a Gaussian matrix of the task vector's shape and Frobenius norm
        v = ex.tvs[t][k]
        z = g.normal(tuple(v.shape[1:]), "cor1 control", t, k).to(v.device)
        return z * (v.flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1))[:, None, None]

    ctl = _frobenius(ctx, {t: (gaussian(t, "W"), gaussian(t, "V")) for t in TASKS})
    keep, parts = keeps(ctx, "rank1")
    by = frob["by_task"]
    mean = lambda v: r4(sum(v) / len(v))  # noqa: E731
    return Outcome(
        (frob["ok"] & keep).tolist(), "max residual / eq. (9) bound over the seed's task vectors", frob["worst"].tolist(),
        f"eq. (9) for the top-1 SVD: ||dW - dW_LR||_F <= M eps_hat + 1/log M and ||dV - dV_LR||_F <= {EPS_MULT:g} eps_hat "
        "||dV||_F for every task vector of the seed; and every Thm 4-6 test the dense vectors pass still passes",
        f"eq. (9) holds on {int(frob['ok'].sum())}/{len(keep)} seeds, Thms 4-6 kept on {int(keep.sum())}/{len(keep)}; "
        + "; ".join(f"d{t}: W residual {mean(v['W_residual'])} (bound {mean(v['W_bound'])}; ||dW||_F "
                    f"{mean(v['W_norm'])}), V relative residual "
                    f"{mean(v['V_relative_residual'])} (bound {mean(v['V_bound'])})" for t, v in by.items()),
        {"frobenius": by, "eq9_ok": frob["ok"].tolist(), "keeps": parts, "irrelevant_sign": _cfgs(ctx)[0].irrelevant_sign},
        control=Control("Gaussian matrices of the same shapes and norms (not trained)", ctl["ok"].tolist(),
                        f"worst residual / bound {_list(ctl['worst'])}"))


def cor2_split(ctx: ClaimContext) -> dict:
    """The small dV rows of every task vector: the rows below the largest ratio gap of the sorted norms."""
    def compute():
        ex, _ = setup(ctx)
        out = {"n_small": {}, "ratio": {}}
        for t in TASKS:
            norms = ex.tvs[t]["V"].norm(dim=-1).nan_to_num(0.0)  # [E, m]
            n = small_group_size(norms)
            s = norms.sort(dim=1).values
            out["n_small"][t] = n
            out["ratio"][t] = s.gather(1, (n - 1)[:, None])[:, 0] / s.gather(1, n[:, None].clamp_max(s.shape[1] - 1))[:, 0]
        return out
    return ctx.memo("tv:cor2_split", compute)


def cor2(ctx: ClaimContext) -> Outcome:
    ex, idx = setup(ctx)
    sp, r = cor2_split(ctx), refs(ctx)
    m = ex.tvs["T1"]["V"].shape[1]
    S = len(idx[0.0])
    split_ok, worst = torch.ones(S, dtype=torch.bool), torch.zeros(S)
    for t in TASKS:
        rel = sp["ratio"][t] / (EPS_MULT * r["eps"][t])  # [E_all]
        for a in ALPHAS:
            split_ok &= rel[idx[a]] <= 1
            worst = torch.maximum(worst, rel[idx[a]].nan_to_num(math.inf))
    keep, parts = keeps(ctx, "prune_small")
    ctl, ctl_parts = keeps(ctx, "prune_large")
    frac = {t: _list(sp["n_small"][t].float() / m) for t in TASKS}
    ratio = {t: _list(sp["ratio"][t]) for t in TASKS}
    return Outcome(
        (split_ok & keep).tolist(), "max (small / large row norm) / (EPS_MULT eps_hat) over the seed's dV", worst.tolist(),
        f"the dV rows below the largest ratio gap have norm <= {EPS_MULT:g} eps_hat x the smallest large row, for every "
        "task vector of the seed; and pruning them keeps every Thm 4-6 test the dense vectors pass",
        f"row split holds on {int(split_ok.sum())}/{S} seeds, Thms 4-6 kept on {int(keep.sum())}/{S}. Observation "
        f"(bimodality): small-row fraction {frac}, max small / min large norm {ratio}",
        {"small_fraction": frac, "small_over_large": ratio, "split_ok": split_ok.tolist(), "keeps": parts,
         "control_keeps": ctl_parts},
        control=Control("pruning as many of the largest rows", ctl.tolist()))


CLAIMS = [
    Claim("thm4_multitask", "Thm 4", "theorem", "alpha >= 0 and lambda >= 1 - alpha + beta: hinge loss on T1 <= Theta(eps) "
          "+ |lambda| beta and on T2 <= Theta(eps).", thm4),
    Claim("fig_thm4_below", "Thm 4 (converse)", "figure", "Below the line (lambda = 1 - alpha - 0.5) T2 fails: loss "
          "Theta(1) (a converse the theorem does not state).", fig_thm4_below),
    Claim("thm5_unlearning", "Thm 5", "theorem", "alpha <= 0 and lambda in [-Theta(alpha^-2), 0]: T1 kept (loss <= "
          "Theta(eps) + |lambda| beta) and T2 forgotten (loss >= Theta(1)).", thm5),
    Claim("fig_thm5_aligned", "Thm 5 (converse)", "figure", "Aligned tasks: no negation keeps T1 and forgets T2 "
          "(the theorem covers alpha <= 0 only).", fig_thm5_aligned),
    Claim("thm6_ood", "Thm 6", "theorem", "Every (lambda1, lambda2) in region (8) with gamma measured has a small OOD "
          "loss on T' (precision over grid cells).", thm6),
    Claim("cor1_low_rank", "Cor. 1", "theorem", "The top-1 SVD of dW, dV meets eq. (9)'s Frobenius bounds, and the "
          "rank-1 task vectors keep Thms 4-6.", cor1),
    Claim("cor2_sparse", "Cor. 2", "theorem", "dV's rows split into large rows and rows O(eps) smaller; pruning the "
          "small rows keeps Thms 4-6 (pruning as many large rows is the control).", cor2),
]
