"""The abstract's statements (section 4.3 of the spec) as checks graded per seed; every sweep trains through the
sweep engine (ctx.trained), one cell per (seed, swept value, N).

Constants, fixed before any run:
- "success" in the phase diagrams: ||W - W*||_F / ||W*||_F <= SUCCESS_SHARE x init_radius (GD from the local init
  ends at least twice as close to W* as it started); the sample complexity of a sweep value is the smallest N of
  n_grid at which the seeds' success rate is >= 1/2 (reported).
- covariance: at the largest N, the relative error's argmin over sigma_grid is an interior grid point (the medium
  regime beats both extremes); means: at the largest N, the error at the smallest |mu1| is below the largest.
- imbalance (existence): with a minority of std sigma2_out (outside the medium regime), raising its fraction from
  min(lam_grid) to max(lam_grid) raises its own excess risk E_x[KL(H*(x) || H(x))] (x from the minority); the control
  is a minority in the medium regime: sigma2 = the sigma of sigma_grid with the smallest seed-mean error in the
  covariance sweep (measured, the same trained cells as thm_covariance), where the same test should fail.
"""
from __future__ import annotations

import math

import torch

from theorylab.core.claims import Claim, ClaimContext, Control, Outcome
from theorylab.core.measures import r4

SUCCESS_SHARE = 0.5


def _list(x) -> list[float]:
    return [r4(v) for v in torch.as_tensor(x, dtype=torch.float32).flatten().tolist()]


def _metric(ctx: ClaimContext, name: str, **changes) -> torch.Tensor:
    """[S] the cells' metric `name` over the seeds at config changes (trained through the sweep engine)."""
    key = "gi:cells:" + repr(sorted(changes.items()))
    cells = ctx.memo(key, lambda: ctx.trained(ctx.configs(**changes))[1])
    return torch.tensor([float(c.metrics.get(name, math.nan)) for c in cells])


def _sweep(ctx: ClaimContext, field: str, values, name: str, **fixed) -> torch.Tensor:
    """[len(values), len(n_grid), S] metric over a (field, N) grid, all cells trained in one call (grouped by N)."""
    base = ctx.configs()[0]
    def compute():
        cfgs = [c for v in values for n in base.n_grid for c in ctx.configs(**{field: v, "N": n, **fixed})]
        _, cells = ctx.trained(cfgs)
        S = ctx.seeds
        vals = torch.tensor([float(c.metrics.get(name, math.nan)) for c in cells])
        return vals.reshape(len(values), len(base.n_grid), S)
    return ctx.memo(f"gi:sweep:{field}:{name}:{sorted(fixed.items())}", compute)


def _phase(ctx: ClaimContext, field: str, values, **fixed) -> dict:
    base = ctx.configs()[0]
    err = _sweep(ctx, field, values, "rel_err", **fixed)  # [V, n, S]
    success = (err <= SUCCESS_SHARE * base.init_radius).float()
    rate = success.mean(-1)  # [V, n]
    ns = list(base.n_grid)
    complexity = [next((ns[j] for j in range(len(ns)) if rate[i, j] >= 0.5), None) for i in range(len(values))]
    return {"err": err, "rate": rate, "complexity": complexity,
            "fig": {"x": list(values), "x_name": field, "N": ns, "rate": rate.tolist(),
                    "err": err.mean(-1).tolist()}}


def _extras(ctx, field, values, **fixed) -> dict:
    acc_min = _sweep(ctx, field, values, "acc_min", **fixed)[:, -1].mean(-1)
    acc_maj = _sweep(ctx, field, values, "acc_maj", **fixed)[:, -1].mean(-1)
    conv = _sweep(ctx, field, values, "conv_iters", **fixed)[:, -1].mean(-1)
    return {"acc_group1": _list(acc_maj), "acc_group2": _list(acc_min), "acc_avg": _list((acc_min + acc_maj) / 2),
            "conv_iters": _list(conv)}


def thm_covariance(ctx: ClaimContext) -> Outcome:
    base = ctx.configs()[0]
    vals = base.sigma_grid
    ph = _phase(ctx, "sigma1", vals)
    err = ph["err"][:, -1]  # [V, S] at the largest N
    arg = err.nan_to_num(math.inf).argmin(0)
    ok = (arg > 0) & (arg < len(vals) - 1)
    ex = _extras(ctx, "sigma1", vals)
    init = torch.full_like(err, base.init_radius)  # the untrained model: W0 is init_radius from W* by construction
    c_arg = init.argmin(0)
    return Outcome(
        ok.tolist(), "argmin over sigma1 of the relative error (as sigma1)", [float(vals[i]) for i in arg],
        f"at N = {base.n_grid[-1]}, the sigma1 of sigma_grid {list(vals)} with the smallest ||W - W*||_F/||W*||_F is "
        "interior (a medium covariance beats both extremes)",
        f"relative error by sigma1 (seed mean, largest N) {_list(err.mean(-1))}; sample complexity (smallest N with "
        f"success rate >= 1/2) {ph['complexity']}; group-1/group-2 accuracy {ex['acc_group1']}/{ex['acc_group2']}; "
        f"GD iterations to within 1% of the end point {ex['conv_iters']}",
        {"rel_err": [_list(v) for v in err], "success_rate": [_list(v) for v in ph["rate"]],
         "sample_complexity": ph["complexity"], **ex},
        {"phase_sigma": ph["fig"]},
        control=Control("the untrained model (W0, at init_radius from W* for every sigma1)",
                        ((c_arg > 0) & (c_arg < len(vals) - 1)).tolist()))


def thm_means(ctx: ClaimContext) -> Outcome:
    base = ctx.configs()[0]
    vals = tuple(sorted(base.mu_grid, key=abs))
    ph = _phase(ctx, "mu1", base.mu_grid)
    order = [base.mu_grid.index(v) for v in vals]
    err = ph["err"][order, -1]  # [V, S], by increasing |mu1|
    ok = err[0] < err[-1]
    ex = _extras(ctx, "mu1", base.mu_grid)
    return Outcome(
        ok.tolist(), "relative error at the largest |mu1| / at the smallest", (err[-1] / err[0]).tolist(),
        f"at N = {base.n_grid[-1]}: ||W - W*||_F/||W*||_F at mu1 = {vals[0]} is below the error at mu1 = {vals[-1]}",
        f"relative error by mu1 {list(base.mu_grid)} (seed mean) {_list(ph['err'][:, -1].mean(-1))}; sample complexity "
        f"{ph['complexity']}; group-1/group-2 accuracy {ex['acc_group1']}/{ex['acc_group2']}; GD iterations "
        f"{ex['conv_iters']}",
        {"success_rate": [_list(v) for v in ph["rate"]], "sample_complexity": ph["complexity"], **ex},
        {"phase_mu": ph["fig"]},
        control=Control("the untrained model (equal errors at every mu1)", [False] * ctx.seeds))


def _lam_curve(ctx: ClaimContext, name: str, **fixed) -> torch.Tensor:
    """[len(lam_grid), S] metric along the minority fraction."""
    base = ctx.configs()[0]
    return torch.stack([_metric(ctx, name, lam2=l, **fixed) for l in base.lam_grid])


def thm_minority(ctx: ClaimContext) -> Outcome:
    base = ctx.configs()[0]
    best = base.sigma_grid[int(_phase(ctx, "sigma1", base.sigma_grid)["err"][:, -1].nanmean(-1).nan_to_num(math.inf).argmin())]
    out = _lam_curve(ctx, "excess_min", sigma2=base.sigma2_out)
    med = _lam_curve(ctx, "excess_min", sigma2=best)
    ok = out[-1] > out[0]
    acc_out = _lam_curve(ctx, "acc_min", sigma2=base.sigma2_out)
    acc_med = _lam_curve(ctx, "acc_min", sigma2=best)
    return Outcome(
        ok.tolist(), "minority excess risk at max lam2 / at min lam2", (out[-1] / out[0]).tolist(),
        f"minority std sigma2 = {base.sigma2_out}: its excess risk E[KL(H* || H)] at lam2 = {base.lam_grid[-1]} exceeds "
        f"the one at lam2 = {base.lam_grid[0]} (raising the minority fraction does not help the minority)",
        f"minority excess by lam2 {list(base.lam_grid)} (seed mean): sigma2 = {base.sigma2_out}: {_list(out.mean(-1))}, "
        f"sigma2 = {best} (medium, measured): {_list(med.mean(-1))}; minority accuracy {_list(acc_out.mean(-1))} vs "
        f"{_list(acc_med.mean(-1))}",
        {"excess_out": [_list(v) for v in out], "excess_medium": [_list(v) for v in med],
         "acc_out": _list(acc_out.mean(-1)), "acc_medium": _list(acc_med.mean(-1))},
        {"minority_fraction": {"lam": list(base.lam_grid), "series": {
            f"sigma2 = {base.sigma2_out}": out.mean(-1).tolist(), f"sigma2 = {best} (medium)": med.mean(-1).tolist()},
            "ylabel": "minority excess risk E[KL(H*||H)]"}},
        control=Control(f"a minority in the medium regime (sigma2 = {best}, the covariance sweep's best sigma)", (med[-1] > med[0]).tolist(),
                        f"ratios {_list(med[-1] / med[0])}"))


def fig_digits(ctx: ClaimContext) -> Outcome:
    base = ctx.configs()[0]
    fixed = {"dataset": "digits", "d": base.digits_d, "N": min(base.N, base.digits_N)}
    lo, hi = base.noise_grid[0], base.noise_grid[-1]
    acc = {s: _lam_curve(ctx, "acc_min", noise2=s, **fixed) for s in (lo, hi)}  # [L, S]
    avg = {s: _lam_curve(ctx, "acc_avg", noise2=s, **fixed) for s in (lo, hi)}
    gain = {s: acc[s][-1] - acc[s][0] for s in (lo, hi)}
    ok = gain[hi] < gain[lo]
    return Outcome(
        ok.tolist(), "minority accuracy gain (max vs min lam2), large-noise minus medium-noise", (gain[hi] - gain[lo]).tolist(),
        f"digits (odd vs even, {base.digits_d} PCs): raising the minority fraction from {base.lam_grid[0]} to "
        f"{base.lam_grid[-1]} gains less minority accuracy for a minority with noise std {hi} than with {lo}",
        f"minority accuracy by lam2 {list(base.lam_grid)}: noise {lo}: {_list(acc[lo].mean(-1))}, noise {hi}: "
        f"{_list(acc[hi].mean(-1))}; average accuracy {_list(avg[lo].mean(-1))} / {_list(avg[hi].mean(-1))}",
        {"acc_min": {str(s): [_list(v) for v in acc[s]] for s in acc}, "gain": {str(s): _list(gain[s]) for s in gain}},
        {"digits_minority": {"lam": list(base.lam_grid), "series": {f"noise {s}": acc[s].mean(-1).tolist() for s in acc},
                             "ylabel": "minority test accuracy (digits)"}})


CLAIMS = [
    Claim("thm_covariance", "Thm (covariance)", "theorem", "A medium covariance gives the smallest estimation error "
          "(and sample complexity); very small and very large covariances are worse.", thm_covariance),
    Claim("thm_means", "Thm (means)", "theorem", "Means near zero give a smaller estimation error than means far "
          "from zero.", thm_means),
    Claim("thm_minority", "Thm (group imbalance)", "theorem", "Increasing the minority fraction does not necessarily "
          "improve the minority group's generalization (shown with a large-variance minority).", thm_minority),
    Claim("fig_digits", "Sec. 4.4 (real data)", "figure", "On real data, a larger-variance minority gains less from a "
          "larger training fraction than a medium-variance one.", fig_digits),
]
