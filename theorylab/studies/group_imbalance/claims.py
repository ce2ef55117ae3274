"""The abstract's statements (section 4.3 of the spec) as claims (core.claims on core.contract). Every sweep trains
through the sweep engine with the world shared across its cells (common random numbers: the config's
swept_fields), one cell per (seed, swept value, N).

The statements compare regions and shapes (a medium covariance is best, means near zero are better, a larger
minority fraction need not help the minority), so they are `figure` claims. Constants are core's:
- "success" in the phase diagrams: GD closes at least CLOSE_GAP of the local initialisation's relative error
  ||W0 - W*||_F / ||W*||_F (= init_radius, measured on the same cell's curve); the sample complexity of a sweep
  value is the smallest N of n_grid where most seeds succeed (reported, not graded).
- Control arm of the covariance and means shapes: the same sweep at the largest N with the training labels
  shuffled across samples (labels = "shuffled": they carry no information about x, so the estimation error has
  no reason to follow the data model's shape; it could by chance).
- Control arm of the minority claim: a minority in the medium regime (sigma2 = the sigma of sigma_grid with the
  smallest seed-mean error in the covariance sweep: measured, the same trained cells as fig_covariance).
"""
from __future__ import annotations

import math

import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import CLOSE_GAP, MAIN, Above, ControlArm, Criterion, Hypothesis, Measurement, short
from theorylab.core.measures import gap_closed

SHUFFLED = "shuffled_labels"
GMM = Hypothesis("the Gaussian mixture with a teacher (dataset=gmm): W* and the excess risk exist only there",
                 lambda ctx: None if ctx.configs()[0].dataset == "gmm" else f"dataset = {ctx.configs()[0].dataset}")
MEDIUM = "medium_minority"


def _nanstd(x: torch.Tensor) -> list[float]:
    """Std over seeds (the last dim), ignoring NaN seeds: the figures' spread."""
    m = x.nanmean(-1, keepdim=True)
    n = (~x.isnan()).sum(-1).clamp_min(2) - 1
    return ((x - m).pow(2).nansum(-1) / n).sqrt().tolist()


def _metric(cells, name: str) -> torch.Tensor:
    return torch.tensor([float(c.metrics.get(name, math.nan)) if c.status == "done" else math.nan for c in cells],
                        dtype=torch.float64)


def _sweep(ctx: ClaimContext, field: str, values, ns, **fixed) -> dict:
    """{metric: [len(values), len(ns), S]} over a (field, N) grid, every cell trained in one call."""
    def compute():
        grid = {n: ctx.sweep(field, values, N=n, **fixed) for n in ns}
        every = [c for by_v in grid.values() for cfgs in by_v.values() for c in cfgs]
        ctx.trained(list({c.hash: c for c in every}.values()))  # one call: cells sharing shapes train together
        cells = [[ctx.trained(grid[n][v])[1] for n in ns] for v in values]
        names = ("rel_err", "acc_min", "acc_maj", "conv_iters", "excess_min", "grad_ratio", "lr_used")
        out = {k: torch.stack([torch.stack([_metric(c, k) for c in row]) for row in cells]) for k in names}
        out["init_err"] = torch.stack([torch.stack([torch.tensor([cl.curves["rel_err"][0] for cl in c],
                                                                 dtype=torch.float64) for c in row]) for row in cells])
        return out
    return ctx.memo(f"gi:sweep:{field}:{tuple(values)}:{tuple(ns)}:{sorted(fixed.items())}", compute)


def _phase(ctx: ClaimContext, field: str, values, arm: str = MAIN) -> dict:
    """The sweep on an arm: MAIN over every N of n_grid (the phase diagram), SHUFFLED at the largest N only."""
    base = ctx.configs()[0]
    ns = list(base.n_grid) if arm == MAIN else [base.n_grid[-1]]
    sw = _sweep(ctx, field, values, ns, **({} if arm == MAIN else {"labels": "shuffled"}))
    success = gap_closed(sw["init_err"].flatten(), sw["rel_err"].flatten(), 0.0).reshape(sw["rel_err"].shape) \
        >= CLOSE_GAP  # [V, n, S]
    rate = success.double().mean(-1)  # [V, n]
    complexity = [next((ns[j] for j in range(len(ns)) if rate[i, j] > 0.5), None) for i in range(len(values))]
    return {**sw, "rate": rate, "complexity": complexity, "ns": ns,
            "fig": {"x": list(values), "x_name": field, "N": ns, "rate": rate.tolist(), "seeds": int(success.shape[-1]),
                    "err": sw["rel_err"].nanmean(-1).tolist()}}


def _extras(ph: dict) -> dict:
    last = lambda k: short(ph[k][:, -1].nanmean(-1))  # noqa: E731
    return {"acc_group1": last("acc_maj"), "acc_group2": last("acc_min"), "conv_iters": last("conv_iters"),
            "grad_ratio": last("grad_ratio"), "lr_used": last("lr_used")}


def measure_covariance(ctx: ClaimContext, arm: str) -> Measurement:
    base = ctx.configs()[0]
    vals = base.sigma_grid
    ph = _phase(ctx, "sigma1", vals, arm)
    err = ph["rel_err"][:, -1]  # [V, S] at the largest N
    margin = torch.minimum(err[0], err[-1]) - err[1:-1].min(0).values  # > 0: an interior sigma beats both extremes
    arg = err.nan_to_num(math.inf).argmin(0)
    ex = _extras(ph)
    return Measurement(
        {"medium_margin": margin},
        f"relative error by sigma1 {list(vals)} (seed mean, N = {ph['ns'][-1]}) {short(err.nanmean(-1))}; argmin "
        f"sigma1 per seed {[vals[i] for i in arg.tolist()]}; sample complexity (smallest N where most seeds close "
        f">= {CLOSE_GAP:g} of the init error) {ph['complexity']}; group-1/group-2 accuracy {ex['acc_group1']}/"
        f"{ex['acc_group2']}; GD iterations to within 1% of the end point {ex['conv_iters']}; final/initial training "
        f"gradient norm {ex['grad_ratio']}; step size {ex['lr_used']}",
        {"rel_err": [short(v) for v in err], "success_rate": [short(v) for v in ph["rate"]],
         "sample_complexity": ph["complexity"], "argmin_sigma1": [vals[i] for i in arg.tolist()], **ex},
        {"phase_sigma": ph["fig"]} if arm == MAIN else {})


def measure_means(ctx: ClaimContext, arm: str) -> Measurement:
    base = ctx.configs()[0]
    near, far = min(base.mu_grid, key=abs), max(base.mu_grid, key=abs)
    ph = _phase(ctx, "mu1", base.mu_grid, arm)
    err = ph["rel_err"][:, -1]  # [V, S]
    i, j = base.mu_grid.index(near), base.mu_grid.index(far)
    ex = _extras(ph)
    return Measurement(
        {"far_minus_near": err[j] - err[i]},
        f"relative error by mu1 {list(base.mu_grid)} (seed mean, N = {ph['ns'][-1]}) {short(err.nanmean(-1))}; "
        f"sample complexity {ph['complexity']}; group-1/group-2 accuracy {ex['acc_group1']}/{ex['acc_group2']}; "
        f"GD iterations {ex['conv_iters']}; final/initial training gradient norm {ex['grad_ratio']}; step size "
        f"{ex['lr_used']}",
        {"rel_err": [short(v) for v in err], "success_rate": [short(v) for v in ph["rate"]],
         "sample_complexity": ph["complexity"], **ex},
        {"phase_mu": ph["fig"]} if arm == MAIN else {})


def _medium_sigma(ctx: ClaimContext) -> float:
    base = ctx.configs()[0]
    err = _phase(ctx, "sigma1", base.sigma_grid)["rel_err"][:, -1].nanmean(-1).nan_to_num(math.inf)
    return base.sigma_grid[int(err.argmin())]


def _lam_curve(ctx: ClaimContext, name: str, **fixed) -> torch.Tensor:
    """[len(lam_grid), S] a metric along the minority fraction (every lam2 cell of the world trained at once)."""
    base = ctx.configs()[0]
    def compute():
        by_lam = ctx.trained_sweep("lam2", base.lam_grid, **fixed)
        return {k: torch.stack([_metric(by_lam[lam][1], k) for lam in base.lam_grid])
                for k in ("excess_min", "acc_min", "acc_avg", "grad_ratio", "lr_used")}
    return ctx.memo(f"gi:lam:{sorted(fixed.items())}", compute)[name]


def measure_minority(ctx: ClaimContext, arm: str) -> Measurement:
    base = ctx.configs()[0]
    sigma2 = base.sigma2_out if arm == MAIN else _medium_sigma(ctx)
    ex = _lam_curve(ctx, "excess_min", sigma2=sigma2)
    acc = _lam_curve(ctx, "acc_min", sigma2=sigma2)
    grad = _lam_curve(ctx, "grad_ratio", sigma2=sigma2)
    lr = _lam_curve(ctx, "lr_used", sigma2=sigma2)
    numbers = {"sigma2": sigma2, "excess_min": [short(v) for v in ex], "acc_min": short(acc.nanmean(-1)),
               "grad_ratio": short(grad.nanmean(-1)), "lr_used": short(lr.nanmean(-1))}
    figures = {}
    if arm == MAIN:
        med = _medium_sigma(ctx)
        mex = _lam_curve(ctx, "excess_min", sigma2=med)
        figures = {"minority_fraction": {"lam": list(base.lam_grid), "series": {
            f"sigma2 = {sigma2}": ex.nanmean(-1).tolist(), f"sigma2 = {med} (medium)": mex.nanmean(-1).tolist()},
            "spread": {f"sigma2 = {sigma2}": _nanstd(ex), f"sigma2 = {med} (medium)": _nanstd(mex)},
            "ylabel": "minority excess risk E[KL(H*||H)] (nats)"}}
    same = arm != MAIN and sigma2 == base.sigma2_out  # the measured medium regime is the main arm's sigma2
    return Measurement(
        {"excess_rise": ex[-1] - ex[0]},
        ("the covariance sweep's best sigma1 equals sigma2_out, so this control is the main arm; " if same else "") +
        f"minority sigma2 = {sigma2}: excess risk E[KL(H* || H)] by lam2 {list(base.lam_grid)} (seed mean) "
        f"{short(ex.nanmean(-1))}; minority accuracy {short(acc.nanmean(-1))}; final/initial training gradient norm "
        f"{short(grad.nanmean(-1))}; step size {short(lr.nanmean(-1))}", numbers, figures)


def measure_digits(ctx: ClaimContext, arm: str) -> Measurement:
    base = ctx.configs()[0]
    fixed = {"dataset": "digits", "d": base.digits_d, "N": min(base.N, base.digits_N)}
    lo, hi = base.noise_grid[0], base.noise_grid[-1]
    acc = {s: _lam_curve(ctx, "acc_min", noise2=s, **fixed) for s in (lo, hi)}  # [L, S]
    avg = {s: _lam_curve(ctx, "acc_avg", noise2=s, **fixed) for s in (lo, hi)}
    gain = {s: acc[s][-1] - acc[s][0] for s in (lo, hi)}
    return Measurement(
        {"gain_difference": gain[lo] - gain[hi]},
        f"minority accuracy by lam2 {list(base.lam_grid)}: noise {lo}: {short(acc[lo].nanmean(-1))}, noise {hi}: "
        f"{short(acc[hi].nanmean(-1))}; average accuracy {short(avg[lo].nanmean(-1))} / {short(avg[hi].nanmean(-1))}",
        {"acc_min": {str(s): [short(v) for v in acc[s]] for s in acc}, "gain": {str(s): short(gain[s]) for s in gain}},
        {"digits_minority": {"lam": list(base.lam_grid), "series": {f"noise {s}": acc[s].nanmean(-1).tolist()
                                                                    for s in acc},
                             "spread": {f"noise {s}": _nanstd(acc[s]) for s in acc},
                             "ylabel": "minority test accuracy (fraction; digits)"}})


SHUFFLED_ARM = ControlArm(SHUFFLED, "the same sweep at the largest N with the training labels shuffled across "
                          "samples (no information about x)")

CLAIMS = [
    Claim("fig_covariance", "Thm (covariance)", "figure", "A medium covariance gives the smallest estimation error "
          "(and sample complexity); very small and very large covariances are worse (a region: a figure claim).",
          measure=measure_covariance, hypotheses=(GMM,),
          criterion=Criterion(Above("medium_margin", 0.0, "at the largest N, the smaller of the relative errors "
                                    "||W - W*||_F/||W*||_F at the two extreme sigma1 of sigma_grid minus the smallest "
                                    "at an interior sigma1")),
          control=SHUFFLED_ARM),
    Claim("fig_means", "Thm (means)", "figure", "Means near zero give a smaller estimation error than means far "
          "from zero (a comparison of regions: a figure claim).", measure=measure_means, hypotheses=(GMM,),
          criterion=Criterion(Above("far_minus_near", 0.0, "at the largest N, the relative error at the largest "
                                    "|mu1| of mu_grid minus the one at the smallest")),
          control=SHUFFLED_ARM),
    Claim("fig_minority", "Thm (group imbalance)", "figure", "Increasing the minority fraction does not "
          "necessarily improve the minority group's generalization (an existence statement, shown with a "
          "large-variance minority: a figure claim).", measure=measure_minority, hypotheses=(GMM,),
          criterion=Criterion(Above("excess_rise", 0.0, "minority excess risk E[KL(H*||H)] at the largest lam2 of "
                                    "lam_grid minus at the smallest, minority std sigma2_out")),
          control=ControlArm(MEDIUM, "a minority in the medium regime (sigma2 = the covariance sweep's best sigma1, "
                             "measured)")),
    Claim("fig_digits", "Sec. 4.4 (real data)", "figure", "On real data, a larger-variance minority gains less from a "
          "larger training fraction than a medium-variance one.", measure=measure_digits,
          criterion=Criterion(Above("gain_difference", 0.0, "minority accuracy gain from the smallest to the largest "
                                    "lam2, medium-noise minus large-noise minority"))),
]
