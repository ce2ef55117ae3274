"""The abstract's two statements (arXiv 2310.16173) as claims, graded per seed (core.claims).

Constants, fixed before any run, relative to what the same run measures:
- DROP: "approaches Q*" = ||Q_t - Q*||_inf falls to DROP x its value at t = 0 within the T outer iterations; the
  geometric rate rho = exp(slope) of the least-squares line through log ||Q_t - Q*||_inf over t = 0 .. tau, tau the
  first iteration at DROP x the start (all T when never); "geometric" = that line explains >= R2_MIN of the variance.
- SUCCESS_SHARE: a run converged when its final ||Q_T - Q*||_inf <= SUCCESS_SHARE x max |Q*|.
- The region of convergence at a given epsilon: the largest swept radius r (relative ||omega_0 - omega*||) such
  that every radius <= r converged (0 when the smallest did not).
"""
from __future__ import annotations

import math

import numpy as np

from theorylab.core.claims import Claim, ClaimContext, Control, NotApplicable, Outcome
from theorylab.core.measures import r4

DROP = 0.1
R2_MIN = 0.8
SUCCESS_SHARE = 0.1


def fit_rate(err: list[float]) -> dict:
    """rho, R^2 and tau of one error curve (see DROP)."""
    e = np.asarray(err, dtype=float)
    if not np.isfinite(e).all() or e[0] <= 0:
        return {"rho": math.nan, "r2": math.nan, "tau": None, "reached": False}
    hit = np.nonzero(e <= DROP * e[0])[0]
    tau = int(hit[0]) if len(hit) else len(e) - 1
    t, y = np.arange(tau + 1, dtype=float), np.log(np.maximum(e[: tau + 1], 1e-12))
    if tau < 1:
        return {"rho": math.nan, "r2": math.nan, "tau": tau, "reached": bool(len(hit))}
    slope, icpt = np.polyfit(t, y, 1)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - (slope * t + icpt)) ** 2).sum()) / ss if ss > 0 else 1.0
    return {"rho": float(math.exp(slope)), "r2": r2, "tau": tau, "reached": bool(len(hit))}


def _curves(cells) -> list[list[float]]:
    return [c.curves["q_err"] for c in cells]


# ---- Theorem (decaying epsilon): geometric convergence to Q* -------------------------------------------------------

def check_geometric(ctx: ClaimContext) -> Outcome:
    base = ctx.configs()
    if base[0].eps_decay >= 1:
        raise NotApplicable(f"eps_decay = {base[0].eps_decay}: epsilon does not decay, the hypothesis of the theorem")
    ctrl = ctx.configs(target_update="never")
    _, cells = ctx.trained(base + ctrl)
    S = len(base)
    fits = [fit_rate(c) for c in _curves(cells[:S])]
    cfits = [fit_rate(c) for c in _curves(cells[S:])]

    def ok(f):
        return bool(f["reached"] and f["tau"] and f["tau"] >= 1 and f["r2"] >= R2_MIN)

    per = [ok(f) for f in fits]
    rho = [f["rho"] for f in fits]
    gamma = base[0].gamma
    finals = [cell.metrics["q_err_final"] for cell in cells[:S]]
    return Outcome(
        per_seed=per, key="geometric rate rho (per outer iteration)", values=rho,
        criterion=f"||Q_t - Q*||_inf reaches {DROP} x its start within T = {base[0].T} iterations and log-error is "
                  f"linear in t (R^2 >= {R2_MIN}) until then (constants fixed a priori)",
        summary=f"rho = exp(slope) {', '.join(f'{r:.3f}' for r in rho)} (gamma = {gamma}); iterations to "
                f"{DROP}x: {[f['tau'] if f['reached'] else None for f in fits]}; R^2 {[r4(f['r2']) for f in fits]}; "
                f"final error {[r4(x) for x in finals]}",
        numbers={"rho": [r4(r) for r in rho], "r2": [r4(f["r2"]) for f in fits], "tau": [f["tau"] for f in fits],
                 "final_error": [r4(x) for x in finals], "gamma": gamma,
                 "control_final_error": [r4(cell.metrics["q_err_final"]) for cell in cells[S:]]},
        figures={"q_error_curves": {"dqn": _curves(cells[:S]), "control": _curves(cells[S:]),
                                    "eps": cells[0].curves["eps"], "drop": DROP}},
        control=Control("target network never refreshed (omega_0 kept as the target)", [ok(f) for f in cfits],
                        f"final error {[r4(cell.metrics['q_err_final']) for cell in cells[S:]]}"))


# ---- Theorem (epsilon level): larger epsilon -> larger region of convergence, slower convergence -------------------

def _levels(ctx: ClaimContext) -> dict:
    """Constant epsilon at each level x each radius x each seed, from omega* + radius u (paired across levels)."""
    def compute():
        c0 = ctx.configs()[0]
        grid = [(eps, r) for eps in c0.eps_levels for r in c0.radii]
        cfgs = [c for eps, r in grid for c in ctx.configs(eps0=eps, eps_min=0.0, eps_decay=1.0, init="perturbed", radius=r)]
        _, cells = ctx.trained(cfgs)
        S = ctx.seeds
        curves = {key: _curves(cells[i * S:(i + 1) * S]) for i, key in enumerate(grid)}  # (eps, r) -> S curves
        qmax = cells[0].metrics["qstar_max"]
        return {"levels": c0.eps_levels, "radii": c0.radii, "curves": curves, "qmax": qmax,
                "seeds": [c.seed for c in ctx.configs()]}
    return ctx.memo("dqn:levels", compute)


def region(d: dict, eps: float, seed_ix: int, untrained: bool = False) -> float:
    """The largest radius r such that every swept radius <= r converged (0 when the smallest did not)."""
    best = 0.0
    for r in d["radii"]:
        e = d["curves"][(eps, r)][seed_ix]
        final = e[0] if untrained else e[-1]
        if not (math.isfinite(final) and final <= SUCCESS_SHARE * d["qmax"]):
            break
        best = r
    return best


def _success_table(d: dict, untrained: bool = False) -> dict:
    return {str(eps): [[bool(math.isfinite(c[0 if untrained else -1]) and c[0 if untrained else -1] <= SUCCESS_SHARE * d["qmax"])
                        for c in d["curves"][(eps, r)]] for r in d["radii"]] for eps in d["levels"]}


def check_region(ctx: ClaimContext) -> Outcome:
    d = _levels(ctx)
    lo, hi = d["levels"]
    S = len(d["seeds"])
    R = {eps: [region(d, eps, j) for j in range(S)] for eps in (lo, hi)}
    R0 = {eps: [region(d, eps, j, untrained=True) for j in range(S)] for eps in (lo, hi)}
    per = [R[hi][j] > R[lo][j] for j in range(S)]
    return Outcome(
        per_seed=per, key=f"R(eps={hi}) - R(eps={lo})", values=[R[hi][j] - R[lo][j] for j in range(S)],
        criterion=f"R(eps={hi}) > R(eps={lo}); R = largest swept radius up to which every run ends at "
                  f"||Q_T - Q*||_inf <= {SUCCESS_SHARE} max|Q*| (constant epsilon, same omega_0 at both levels)",
        summary=f"R(eps={lo}) {R[lo]}, R(eps={hi}) {R[hi]} over radii {list(d['radii'])}",
        numbers={"R": {str(k): v for k, v in R.items()}, "radii": list(d["radii"]), "success": _success_table(d)},
        figures={"eps_region": {"radii": list(d["radii"]), "success": _success_table(d),
                                "curves": {f"{eps}|{r}": d["curves"][(eps, r)] for eps in (lo, hi) for r in d["radii"]},
                                "success_share": SUCCESS_SHARE, "qmax": d["qmax"]}},
        control=Control("the untrained networks omega_0 (no DQN update)", [R0[hi][j] > R0[lo][j] for j in range(S)],
                        f"R(eps={lo}) {R0[lo]}, R(eps={hi}) {R0[hi]}"))


def check_rate(ctx: ClaimContext) -> Outcome:
    d = _levels(ctx)
    lo, hi = d["levels"]
    r = d["radii"][0]
    S = len(d["seeds"])
    f = {eps: [fit_rate(c) for c in d["curves"][(eps, r)]] for eps in (lo, hi)}
    conv = [all(d["curves"][(eps, r)][j][-1] <= SUCCESS_SHARE * d["qmax"] for eps in (lo, hi)) for j in range(S)]
    if not any(conv):
        raise NotApplicable(f"at radius {r} no seed converges at both epsilon levels: the comparison needs an initial "
                            "network inside both regions of convergence")
    rho = {eps: [x["rho"] for x in f[eps]] for eps in (lo, hi)}
    per = [conv[j] and rho[hi][j] > rho[lo][j] for j in range(S)]
    return Outcome(
        per_seed=per, key=f"rho(eps={hi}) - rho(eps={lo})", values=[rho[hi][j] - rho[lo][j] for j in range(S)],
        criterion=f"At radius {r}, inside both regions (both converge), the geometric rate is slower at the larger "
                  f"epsilon: rho(eps={hi}) > rho(eps={lo}) (rho fitted as in thm_geometric; a seed where either "
                  "level does not converge counts as failing)",
        summary=f"rho(eps={lo}) {[r4(x) for x in rho[lo]]}, rho(eps={hi}) {[r4(x) for x in rho[hi]]}; both converge "
                f"on {sum(conv)}/{S} seeds",
        numbers={"rho": {str(k): [r4(x) for x in v] for k, v in rho.items()}, "radius": r, "both_converge": conv},
        control=Control("the untrained networks omega_0 (their error curve stays at its start)", untrained_rate(d, r, S)))


def untrained_rate(d: dict, r: float, S: int) -> list[bool]:
    """The rate test on the untrained omega_0: its error curve is flat at the start value."""
    lo, hi = d["levels"]
    out = []
    for j in range(S):
        flat = {eps: [d["curves"][(eps, r)][j][0]] * len(d["curves"][(eps, r)][j]) for eps in (lo, hi)}
        conv = all(c[-1] <= SUCCESS_SHARE * d["qmax"] for c in flat.values())
        out.append(bool(conv and fit_rate(flat[hi])["rho"] > fit_rate(flat[lo])["rho"]))
    return out


CLAIMS = [
    Claim("thm_geometric", "Abstract; main theorem", "theorem",
          "With decaying epsilon, the DQN iterates approach the optimal Q-function geometrically (up to a statistical "
          "error).", check_geometric),
    Claim("thm_eps_region", "Abstract; main theorem", "theorem",
          "A larger epsilon enlarges the region of initial networks from which DQN converges.", check_region),
    Claim("thm_eps_rate", "Abstract; main theorem", "theorem",
          "A larger epsilon slows convergence (a smaller one speeds it up) for an initial network inside both "
          "regions of convergence.", check_rate),
]
