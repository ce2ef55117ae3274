"""The colored-digits experiment (seed Figs. 23-24 of Li et al., ICLR 2025) as claims on one ensemble
(>= 5 seeds; every seed has its own Psi0 and fine-tuned models). Accuracies are means over seeds; the best
lambda is chosen on the seed-mean curves (its per-seed spread is reported).

Selection rules (section 1.7 [D], fixed in advance):
- multi-task: lambda in [lam_lo, lam_hi] maximising (acc_T1 + acc_T2) / 2 of Psi0 + dPsi_T1 + lambda dPsi_T2;
- unlearning: lambda <= 0 minimising acc_T2 subject to acc_T1 >= ref_T1 - 0.01, ref_T1 = acc of Psi*_T1
  (lambda = 0) on T1; lambda = 0 is always feasible;
- OOD: (lambda1, lambda2) in [lam_lo, lam_hi]^2 maximising acc_T' (oracle on test data, as the paper).

Thresholds (fixed before any run, not fitted):
- alpha_hat_order: alpha-hat(aligned) > alpha-hat(irrelevant) > alpha-hat(contradictory), and
  alpha-hat(contradictory) < 0 (the calibration rule's sign pattern; alpha-hat of evaluate.alpha_hat).
- multitask_lambda: best multi-task lambda irrelevant >= 1.0 and > best multi-task lambda aligned.
- contradictory_no_joint: no lambda gives both acc_T1 >= 0.90 and acc_T2 >= 0.90.
- unlearning: irrelevant |acc_T2 - 0.5| <= 0.10; contradictory acc_T2 <= 0.25; aligned best lambda >= -0.2
  or acc_T2 >= 0.75 (T2 cannot be forgotten while T1 is kept); T1 kept by the selection rule.
- ood_best: best (lambda1, lambda2) has lambda2 < 0 and acc_T' above both Psi*_T1 (1, 0) and Psi*_T2 (0, 1).
  Also reported: the gap to fine-tuning on T' and whether the best point is inside region (8), with gamma
  from regress_gammas, c = 0.2 and beta = 0.1 (c / beta = 2: the right edge lambda1 = 2 of the seed figure).
- lwptv_ood: the LwPTV merge (salient_mass, ratio 0.5: one of the two blocks per task) of the OOD pair
  (T1 shape-only, T2 colour) has a higher T' accuracy than plain task arithmetic Psi0 + dPsi_T1 + dPsi_T2 and
  than uniform shrinkage Psi0 + lambda (dPsi_T1 + dPsi_T2) at the same ID level (mean ID accuracy within
  0.01; lambda on a 0.05 grid in [0, 1]). relative_update is reported beside it.
"""
from __future__ import annotations

import torch

from theorylab.core.claims import Claim, ClaimContext, Outcome
from theorylab.edit import TaskVector, apply_layer_masks, lwptv_masks
from theorylab.edit.coefficients import lam_grid, pair_lambdas, plane_lambdas, region8
from theorylab.studies.colored_digits.evaluate import (Experiment, alpha_hat, evaluate_grid, experiment,
                                                       regress_gammas)

C_REGION, BETA = 0.2, 0.1
KEEP_T1 = 0.01
IRR_CHANCE_TOL, CONTRA_MAX, ALIGNED_LAM, ALIGNED_T2 = 0.10, 0.25, -0.2, 0.75
JOINT = 0.90
ID_MATCH = 0.01
LWPTV_RATIO = 0.5

# the seed's numbers (section 1.7, Table 1 and Table 2), in %
PAPER_T1 = {("irrelevant", "multi-task"): (1.4, 91.83, 88.40), ("irrelevant", "unlearning"): (-0.6, 95.02, 50.34),
            ("aligned", "multi-task"): (0.2, 95.62, 92.46), ("aligned", "unlearning"): (0.0, 95.20, 90.51),
            ("contradictory", "multi-task"): (0.6, 79.54, 62.52), ("contradictory", "unlearning"): (-1.0, 94.21, 4.97)}
PAPER_OOD = {"finetune": 92.21, "T1": 88.10, "T2": 45.06, "best": 91.74, "best_lambda": (1.2, -0.6)}


def _r(x) -> float:
    return round(float(x), 4)


def setup(ctx: ClaimContext) -> Experiment:
    def build():
        cfgs = ctx.configs()
        params, _ = ctx.trained(cfgs)
        return experiment(cfgs, params, ctx.device)
    return ctx.memo("cd:setup", build)


def pairs(cfg) -> dict[str, tuple[float, float]]:
    return {"irrelevant": (cfg.p_T1, cfg.p_irrelevant), "aligned": (cfg.p_T1, cfg.p_aligned),
            "contradictory": (cfg.p_T1, cfg.p_contradictory)}


def line(ctx: ClaimContext, kind: str) -> dict:
    """Psi0 + dPsi_T1 + lambda dPsi_T2 over the lambda grid: accuracy [G, E] on T1 and T2."""
    def compute():
        ex = setup(ctx)
        cfg = ex.cfgs[0]
        p1, p2 = pairs(cfg)[kind]
        lams = lam_grid(cfg.lam_step, cfg.lam_lo, cfg.lam_hi)
        acc = evaluate_grid(ex, (p1, p2), pair_lambdas(lams), (p1, p2))
        return {"lams": lams, "T1": acc[p1], "T2": acc[p2]}
    return ctx.memo(f"cd:line:{kind}", compute)


def select(d: dict, mode: str) -> dict:
    """Best lambda by the section 1.7 rule on the seed-mean curves, with per-seed choices."""
    lams = torch.tensor(d["lams"])
    i0 = int(torch.argmin(lams.abs()))

    def pick(a1, a2):  # a1, a2: [G]
        if mode == "multi-task":
            return int(torch.argmax((a1 + a2) / 2))
        ok = (lams <= 1e-9) & (a1 >= a1[i0] - KEEP_T1)
        return int(torch.argmin(torch.where(ok, a2, torch.inf)))

    m1, m2 = d["T1"].mean(1), d["T2"].mean(1)
    i = pick(m1, m2)
    per_seed = [float(lams[pick(d["T1"][:, e], d["T2"][:, e])]) for e in range(d["T1"].shape[1])]
    return {"lambda": float(lams[i]), "T1": _r(m1[i]), "T2": _r(m2[i]), "ref_T1": _r(m1[i0]), "ref_T2": _r(m2[i0]),
            "per_seed_lambda": per_seed}


def fig23(ctx: ClaimContext) -> dict:
    def compute():
        ex = setup(ctx)
        out = {}
        for kind, (p1, p2) in pairs(ex.cfgs[0]).items():
            d = line(ctx, kind)
            out[kind] = {"multi-task": select(d, "multi-task"), "unlearning": select(d, "unlearning"),
                         "alpha_hat": _r(alpha_hat(ex, p1, p2).mean()),
                         "own_acc": [_r(d["T1"].mean(1)[int(torch.argmin(torch.tensor(d["lams"]).abs()))]),
                                     _r(evaluate_grid(ex, (p2,), torch.ones(1, 1), (p2,))[p2].mean())]}
        return out
    return ctx.memo("cd:fig23", compute)


def fig23_markdown(t: dict) -> str:
    cols = [(k, m) for k in ("irrelevant", "aligned", "contradictory") for m in ("multi-task", "unlearning")]
    head = "| ours (seed's) | " + " | ".join(f"{k}: {m}" for k, m in cols) + " |"
    md = [head, "|---" * (len(cols) + 1) + "|"]
    md.append("| best lambda | " + " | ".join(f"{t[k][m]['lambda']:+.1f} ({PAPER_T1[(k, m)][0]:+.1f})" for k, m in cols) + " |")
    md.append("| per-seed best lambda | " + " | ".join(" ".join(f"{x:+.1f}" for x in t[k][m]["per_seed_lambda"])
                                                        for k, m in cols) + " |")
    for j, task in ((1, "T1"), (2, "T2")):
        md.append(f"| {task} acc % | " + " | ".join(
            f"{100 * t[k][m][task]:.2f} ({100 * (t[k][m][task] - t[k]['own_acc'][j - 1]):+.2f}) "
            f"[{PAPER_T1[(k, m)][j]:.2f}]" for k, m in cols) + " |")
    md.append("| alpha-hat (T1, T2) | " + " | ".join(f"{t[k]['alpha_hat']:+.3f}" for k, _ in cols) + " |")
    return "\n".join(md) + ("\n\nCells: ours (change vs the fine-tuned Psi*_T on its own task, as the seed's) [seed's]; best lambda: "
                            "ours (seed's). Own-task accuracy of Psi*_T1, Psi*_T2: " +
                            "; ".join(f"{k} {t[k]['own_acc']}" for k in t))


def ood(ctx: ClaimContext) -> dict:
    def compute():
        ex = setup(ctx)
        cfg = ex.cfgs[0]
        p1, p2, pt = cfg.ood_p_T1, cfg.ood_p_T2, cfg.ood_p_target
        lams = lam_grid(cfg.lam_step, cfg.lam_lo, cfg.lam_hi)
        grid = plane_lambdas(lams, lams)
        acc = evaluate_grid(ex, (p1, p2), grid, (pt,))[pt]  # [G, E]
        ft = evaluate_grid(ex, (pt,), torch.ones(1, 1), (pt,))[pt][0]  # [E]
        gam, r2 = regress_gammas(ex.tvs[pt], ex.tvs[p1], ex.tvs[p2])
        return {"lams": lams, "acc": acc, "finetune": ft, "gamma": gam, "r2": r2,
                "alpha_hat_T1": alpha_hat(ex, pt, p1), "alpha_hat_T2": alpha_hat(ex, pt, p2)}
    return ctx.memo("cd:ood", compute)


# ---- claims ----

def alpha_order(ctx: ClaimContext) -> Outcome:
    t = fig23(ctx)
    a = {k: t[k]["alpha_hat"] for k in t}
    passed = a["aligned"] > a["irrelevant"] > a["contradictory"] and a["contradictory"] < 0
    return Outcome(passed, f"alpha-hat aligned {a['aligned']} > irrelevant {a['irrelevant']} > contradictory "
                           f"{a['contradictory']} (< 0); own-task acc (T1, T2): "
                           + "; ".join(f"{k} {t[k]['own_acc']}" for k in t), {"alpha_hat": a})


def multitask_lambda(ctx: ClaimContext) -> Outcome:
    t = fig23(ctx)
    li, la = t["irrelevant"]["multi-task"]["lambda"], t["aligned"]["multi-task"]["lambda"]
    seeds = sum(x > y for x, y in zip(t["irrelevant"]["multi-task"]["per_seed_lambda"],
                                      t["aligned"]["multi-task"]["per_seed_lambda"]))
    passed = li >= 1.0 and li > la
    return Outcome(passed, f"best multi-task lambda: irrelevant {li:+.1f} (>= 1.0, margin {li - 1:+.1f}; seed 1.4) vs "
                           f"aligned {la:+.1f} (seed 0.2); irrelevant > aligned in {seeds}/{len(ctx.configs())} seeds",
                   {"table": t, "tables": {"Fig. 23: Psi0 + dPsi_T1 + lambda dPsi_T2 (ours vs the seed's)":
                                           fig23_markdown(t)}})


def contradictory(ctx: ClaimContext) -> Outcome:
    d = line(ctx, "contradictory")
    m1, m2 = d["T1"].mean(1), d["T2"].mean(1)
    worst = torch.minimum(m1, m2)
    i = int(torch.argmax(worst))
    passed = bool(worst[i] < JOINT)
    return Outcome(passed, f"best min(acc_T1, acc_T2) over lambda: {_r(worst[i])} at lambda {d['lams'][i]:+.1f} "
                           f"(T1 {_r(m1[i])}, T2 {_r(m2[i])}); < {JOINT} (margin {_r(JOINT - worst[i])})",
                   {"best_min": _r(worst[i]), "lambda": d["lams"][i],
                    "curves": {"lams": d["lams"], "T1": m1.tolist(), "T2": m2.tolist()}})


def unlearning(ctx: ClaimContext) -> Outcome:
    t = fig23(ctx)
    u = {k: t[k]["unlearning"] for k in t}
    irr = abs(u["irrelevant"]["T2"] - 0.5) <= IRR_CHANCE_TOL
    con = u["contradictory"]["T2"] <= CONTRA_MAX
    ali = u["aligned"]["lambda"] >= ALIGNED_LAM or u["aligned"]["T2"] >= ALIGNED_T2
    s = "; ".join(f"{k}: lambda {v['lambda']:+.1f} T1 {v['T1']} (ref {v['ref_T1']}) T2 {v['T2']}" for k, v in u.items())
    s += (f" | irrelevant T2 within {IRR_CHANCE_TOL} of 0.5: {irr}; contradictory T2 <= {CONTRA_MAX}: {con}; aligned "
          f"lambda >= {ALIGNED_LAM} or T2 >= {ALIGNED_T2}: {ali}")
    curves = {k: {"lams": line(ctx, k)["lams"], "T1": line(ctx, k)["T1"].mean(1).tolist(),
                  "T2": line(ctx, k)["T2"].mean(1).tolist(), "multi": t[k]["multi-task"]["lambda"],
                  "unlearn": t[k]["unlearning"]["lambda"]} for k in t}
    return Outcome(irr and con and ali, s, {"unlearning": u, "irrelevant_ok": irr, "contradictory_ok": con,
                                            "aligned_ok": ali}, {"acc_vs_lambda": curves})


def ood_best(ctx: ClaimContext) -> Outcome:
    d = ood(ctx)
    lams = d["lams"]
    n = len(lams)
    grid = plane_lambdas(lams, lams)
    acc = d["acc"].mean(1)
    best = int(torch.argmax(acc))
    at = lambda p: int(torch.argmin((grid - torch.tensor(p)).abs().sum(1)))
    a1, a2 = float(acc[at([1.0, 0.0])]), float(acc[at([0.0, 1.0])])
    gam = d["gamma"].mean(0)
    region = region8(lams, gam, BETA, C_REGION)
    bl = grid[best].tolist()
    ft = float(d["finetune"].mean())
    passed = bl[1] < 0 and float(acc[best]) > max(a1, a2)
    per_seed = [grid[int(torch.argmax(d["acc"][:, e]))].tolist() for e in range(d["acc"].shape[1])]
    table = ["| acc on T' % (ours [seed's]) | fine-tune on T' | Psi*_T1 (1, 0) | Psi*_T2 (0, 1) | best (lambda1, lambda2) |",
             "|---|---|---|---|---|",
             f"| accuracy | {100 * ft:.2f} [{PAPER_OOD['finetune']}] | {100 * a1:.2f} [{PAPER_OOD['T1']}] | "
             f"{100 * a2:.2f} [{PAPER_OOD['T2']}] | {100 * float(acc[best]):.2f} at ({bl[0]:+.1f}, {bl[1]:+.1f}) "
             f"[{PAPER_OOD['best']} at {PAPER_OOD['best_lambda']}] |"]
    g_txt = (f"gamma (regression of dPsi_T' on dPsi_T1, dPsi_T2): ({_r(gam[0])}, {_r(gam[1])}), R^2 {_r(d['r2'].mean())}; "
             f"alpha-hat(T', T1) {_r(d['alpha_hat_T1'].mean())}, alpha-hat(T', T2) {_r(d['alpha_hat_T2'].mean())}; "
             f"seed's gamma (0.792, -0.637)")
    s = (f"best {100 * float(acc[best]):.2f}% at ({bl[0]:+.1f}, {bl[1]:+.1f}) (lambda2 < 0: {bl[1] < 0}) vs Psi*_T1 "
         f"{100 * a1:.2f}%, Psi*_T2 {100 * a2:.2f}% (margin {100 * (float(acc[best]) - max(a1, a2)):+.2f} pt); fine-tune on T' "
         f"{100 * ft:.2f}% (gap {100 * (ft - float(acc[best])):+.2f} pt); inside region (8): {bool(region[best])}; " + g_txt)
    fig = {"lams": lams, "acc": acc.reshape(n, n).tolist(), "region": region.reshape(n, n).int().tolist(),
           "gamma": gam.tolist(), "c": C_REGION, "beta": BETA, "best": bl}
    return Outcome(passed, s, {"best_lambda": bl, "best_acc": _r(acc[best]), "T1_only": _r(a1), "T2_only": _r(a2),
                               "finetune": _r(ft), "inside_region8": bool(region[best]), "per_seed_best": per_seed,
                               "gamma": [_r(x) for x in gam], "r2": _r(d["r2"].mean()),
                               "tables": {"Fig. 24: OOD T' accuracy (ours vs the seed's)": "\n".join(table) + "\n\n" + g_txt}},
                   {"ood_heatmap": fig})


def lwptv(ctx: ClaimContext) -> Outcome:
    ex = setup(ctx)
    cfg = ex.cfgs[0]
    ps, pt = (cfg.ood_p_T1, cfg.ood_p_T2), cfg.ood_p_target

    def accs(e: Experiment, coefs: torch.Tensor) -> dict[str, torch.Tensor]:  # seed-mean accuracy [G] per test
        a = evaluate_grid(e, ps, coefs, (*ps, pt))
        return {"T1": a[ps[0]].mean(1), "T2": a[ps[1]].mean(1), "OOD": a[pt].mean(1)}

    shrink_l = torch.arange(0, 21) * 0.05
    shrink = accs(ex, shrink_l[:, None].expand(-1, 2))
    shrink_id = (shrink["T1"] + shrink["T2"]) / 2
    rows = [("task arithmetic Psi0 + dPsi_T1 + dPsi_T2", accs(ex, torch.ones(1, 2)), "-")]
    for score in ("salient_mass", "relative_update"):
        tvs = [ex.tvs[p] for p in ps]
        masks = lwptv_masks(tvs, ex.base, LWPTV_RATIO, score=score, model_axis=True)
        masked = apply_layer_masks(tvs, masks, model_axis=True)
        e2 = ex.with_tvs({**ex.tvs, **{p: TaskVector(vector=v) for p, v in zip(ps, masked)}})
        pruned = "; ".join(f"{n}: " + "/".join(f"block {l} {float((~masks.keep[i, j]).float().mean()):.0%}"
                                              for j, l in enumerate(masks.layers)) for i, n in enumerate(("T1", "T2")))
        a = accs(e2, torch.ones(1, 2))
        rows.append((f"+ LwPTV ({score}, ratio {LWPTV_RATIO})", a, pruned))
        id_l = float((a["T1"] + a["T2"]) / 2)
        j = int(torch.argmin((shrink_id - id_l).abs()))
        rows.append((f"control: uniform shrink lambda = {float(shrink_l[j]):.2f} (ID matched to {score})",
                     {k: v[j : j + 1] for k, v in shrink.items()}, "-"))
    md = ["| merge | acc T1 (ID) | acc T2 (ID) | mean ID | acc T' (OOD) | blocks pruned (share of seeds) |",
          "|---|---|---|---|---|---|"]
    out = []
    for name, a, pruned in rows:
        r = {k: _r(v[0]) for k, v in a.items()}
        r["ID"] = _r((r["T1"] + r["T2"]) / 2)
        out.append({"merge": name, **r, "pruned": pruned})
        md.append(f"| {name} | {r['T1']:.4f} | {r['T2']:.4f} | {r['ID']:.4f} | {r['OOD']:.4f} | {pruned} |")
    ta, lw, ctl = out[0], out[1], out[2]
    matched = abs(lw["ID"] - ctl["ID"]) <= ID_MATCH
    passed = lw["OOD"] > ta["OOD"] and lw["OOD"] > ctl["OOD"] and matched
    s = (f"OOD pair (T1 p={ps[0]}, T2 p={ps[1]}, T' p={pt}): T' acc TA {ta['OOD']}, LwPTV salient_mass {lw['OOD']} "
         f"(ID {lw['ID']} vs TA {ta['ID']}), uniform shrink at matched ID {ctl['OOD']} (ID {ctl['ID']}, matched within "
         f"{ID_MATCH}: {matched}); margin vs best baseline {_r(lw['OOD'] - max(ta['OOD'], ctl['OOD']))}; "
         f"relative_update {out[3]['OOD']} vs its control {out[4]['OOD']}")
    return Outcome(passed, s, {"rows": out, "tables": {"LwPTV on the OOD pair (ID: T1, T2; OOD: T')": "\n".join(md)}})


CLAIMS = [
    Claim("alpha_hat_order", "Sec. 5 calibration", "figure", "The output-similarity correlation alpha-hat of the fine-tuned "
          "models orders the pairs: aligned > irrelevant > contradictory, contradictory < 0.", alpha_order),
    Claim("multitask_lambda", "Thm 4 / Fig. 23", "figure", "Multi-task: the best lambda of Psi0 + dPsi_T1 + lambda dPsi_T2 is "
          ">= 1 for irrelevant tasks and larger than for aligned tasks.", multitask_lambda),
    Claim("contradictory_no_joint", "Thm 4 / Fig. 23", "figure", "Contradictory tasks: no lambda gives both tasks >= 90%.",
          contradictory),
    Claim("unlearning", "Thm 5 / Fig. 23", "figure", "Unlearning with T1 kept: irrelevant T2 goes to chance, contradictory "
          "T2 well below chance; for aligned tasks negation cannot forget T2 (best lambda ~ 0).", unlearning),
    Claim("ood_best", "Thm 6 / Fig. 24", "figure", "OOD: the best (lambda1, lambda2) over [-2, 3]^2 has lambda2 < 0 and beats "
          "both single-task models on T'.", ood_best),
    Claim("lwptv_ood", "LwPTV (issue 5)", "figure", "LwPTV masks on the OOD pair raise T' accuracy over task arithmetic and "
          "over uniform lambda shrinkage at the same in-domain accuracy.", lwptv),
]
