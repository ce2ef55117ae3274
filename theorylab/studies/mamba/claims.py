"""The Mamba paper's statements as claims (core.claims on core.contract).

The bounds of the paper (iterations T = Theta(L^2 / (eta s^2)), samples N = Omega(L^2 d / s^2), s the effective
signal) are shapes with unknown constants, so the sweeps over s and over the noise tau are `figure` claims: per
seed, the log-log slope of T and of N* on s (or tau) has the bound's sign. They assume the theorem's width
m >= d^2 (a Hypothesis: below it they are "not applicable").

- "learned" = test error <= FAR_FROM_CHANCE x chance (core's constant; chance = 1/2, the labels are balanced).
  T = the first recorded GD step from which the error on the fixed probe set stays learned (largest N of the
  grid); N* = the smallest N of the grid n_pool / (32, 16, 8, 4, 2, 1) from which the trained model's test
  error stays learned. Not reached within the steps / the grid, or already reached at step 0 / at the grid's smallest N
  (only a bound either way), is censored: left out of the slope fit (core.measures.log_log_slope), never entered
  as a placeholder.
- Control arm of every sweep: the same sweep with the gating vector frozen at w = 0 (train_gate=False). There
  the scan weights a token at distance k from the end by (1/2)^k and only the MLP learns: the shape it gives
  belongs to the data and the fixed scan, not to gate training. If the frozen arm passes the same test the
  verdict is inconclusive (the shape does not show what the gate adds); `gate_adds_locality` measures what it
  adds directly.
- fig_ssm_vs_transformer compares tuned models: each architecture trains every (optimizer, lr) of one fixed grid
  (tuning.py) at the same budget, and each seed keeps the candidate with the lowest validation error; the test
  error of the kept candidate is graded, the untuned default (GD, lr 1) is reported beside it.
"""
from __future__ import annotations

import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import (ALIGN_ANGLE, CLOSE_GAP, FAR_FROM_CHANCE, MAIN, Above, AtLeast, AtMost, Below,
                                     ControlArm, Criterion, Hypothesis, Measurement, short)
from theorylab.core.measures import first_stable, gap_closed, log_log_slope, r4
from theorylab.studies.mamba import tuning

CHANCE = 0.5  # balanced labels: the error of a constant guess
LEARNED = FAR_FROM_CHANCE * CHANCE
N_DIVISORS = (32, 16, 8, 4, 2, 1)  # the sample-size grid: n_pool / 32 .. / 1 (4..128 at quick size)
SIGNAL_PAIRS = ((0.25, 0.15), (0.3, 0.1), (0.35, 0.05), (0.4, 0.0))  # (alpha_r, alpha_c): 8 relevant tokens in L = 20
NEAR_GRID = (1, 2, 3)  # locality: dl_near swept below the config's dl_far
TAU_MULTS = (0.5, 1.0, 2.0, 4.0)  # tau = mult / d: inside the theory's tau = O(1/d)
FROZEN = "frozen_gate"
SEEDS = 5


# ---- hypotheses ----
def _wide(ctx: ClaimContext) -> str | None:
    c = ctx.configs()[0]
    return None if c.m >= c.d**2 else f"m = {c.m} < d^2 = {c.d ** 2}"


WIDE = Hypothesis("the MLP width m >= d^2 (the theorems' over-parameterisation)", _wide)
SSM = Hypothesis("the model is the selective SSM (arch=ssm): the transformer has no gating vector",
                 lambda ctx: None if ctx.configs()[0].arch == "ssm" else f"arch = {ctx.configs()[0].arch}")


def _majority(ctx: ClaimContext) -> str | None:
    if ctx.configs()[0].regime != "majority":
        return f"regime = {ctx.configs()[0].regime}"
    if len(_signal_pairs(ctx)) < 2:
        return f"L = {ctx.configs()[0].L} leaves fewer than two distinct signals alpha_r - alpha_c to fit a slope on"
    return None


MAJORITY = Hypothesis("majority-voting data (regime=majority) with at least two distinct signals at this L", _majority)


def _near_grid(ctx: ClaimContext) -> list[int]:
    return [n for n in NEAR_GRID if n < ctx.configs()[0].dl_far]


TWO_DISTANCES = Hypothesis("at least two distances dl_near below dl_far to fit a slope on",
                           lambda ctx: None if len(_near_grid(ctx)) >= 2 else
                           f"dl_far = {ctx.configs()[0].dl_far} leaves {len(_near_grid(ctx))}")


# ---- the sweeps: T and N* per point and seed, on the trained-gate arm or the frozen-gate arm ----
def n_grid(ctx: ClaimContext) -> list[int]:
    pool = ctx.configs()[0].n_pool
    return sorted({max(1, pool // k) for k in N_DIVISORS})


def _sweep(ctx: ClaimContext, name: str, points: list[dict], arm: str) -> dict:
    """Trains every (point, N) cell of every seed as one call; per point [P, E]: T at the largest N, N*, each with
    its censored flag, and the test error [P, N, E]."""
    def build():
        grid = n_grid(ctx)
        train_gate = arm == MAIN
        by_cell = {(i, n): ctx.configs(**changes, n_train=n, train_gate=train_gate)
                   for i, changes in enumerate(points) for n in grid}
        every = [c for cfgs in by_cell.values() for c in cfgs]
        ctx.trained(list({c.hash: c for c in every}.values()))  # one call: cells sharing shapes train together
        cells = {k: ctx.trained(cfgs)[1] for k, cfgs in by_cell.items()}
        T, T_cens, N, N_cens, err = [], [], [], [], []
        for i in range(len(points)):
            ok_n = torch.stack([torch.tensor([c.status == "done" and c.metrics["test_error"] <= LEARNED
                                              for c in cells[(i, n)]]) for n in grid])  # [N, E]
            err.append([[c.metrics["test_error"] if c.status == "done" else float("nan") for c in cells[(i, n)]]
                        for n in grid])
            n_star, n_cens = first_stable(ok_n, grid)
            top = cells[(i, grid[-1])]
            steps = top[0].curves["step"]
            probe = torch.tensor([c.curves["probe_error"] for c in top], dtype=torch.float64).T  # [steps, E]
            done = torch.tensor([c.status == "done" for c in top])
            t, t_cens = first_stable((probe <= LEARNED) & done, steps)
            T.append(t)
            T_cens.append(t_cens | (t <= 0))  # learned at step 0 (no training needed): only a bound, left out
            N.append(n_star)
            N_cens.append(n_cens | (n_star <= grid[0]))  # learned at the grid's smallest N: only N* <= grid[0]
        st = lambda xs: torch.stack(xs)  # noqa: E731
        return {"T": st(T), "T_cens": st(T_cens), "N": st(N), "N_cens": st(N_cens), "err": err, "grid": grid,
                "steps": ctx.configs()[0].steps}
    return ctx.memo(f"mamba:sweep:{name}:{arm}", build)


def _show(v: torch.Tensor, cens: torch.Tensor, floor: int) -> list:
    """Per-seed numbers for a report, a censored one as a string: '>x' (not reached within the grid or the
    steps) or '<=floor' (already learned at step 0 / at the grid's smallest N: only a bound)."""
    return [(f"<={floor}" if x <= floor else f">{int(x)}") if c else int(x) for x, c in zip(v.tolist(), cens.tolist())]


def _slope_measure(ctx: ClaimContext, arm: str, name: str, points: list[dict], xs: list[float], xname: str,
                   exponent: float | None) -> Measurement:
    sw = _sweep(ctx, name, points, arm)
    sT, nT = log_log_slope(xs, sw["T"], sw["T_cens"])
    sN, nN = log_log_slope(xs, sw["N"], sw["N_cens"])
    numbers = {"x": xs, "T": [_show(sw["T"][i], sw["T_cens"][i], 0) for i in range(len(xs))],
               "N_star": [_show(sw["N"][i], sw["N_cens"][i], sw["grid"][0]) for i in range(len(xs))],
               "points_fitted_T": nT.tolist(), "points_fitted_N": nN.tolist(), "test_error": sw["err"]}
    summary = (f"{xname} {[r4(x) for x in xs]}: T per point and seed {numbers['T']}, N* {numbers['N_star']} "
               f"('>' = censored, left out of the fit); slope of log N* {short(sN)}")
    figures = {}
    if arm == MAIN:
        fr = _sweep(ctx, name, points, FROZEN)  # the control arm's sweep (memoised: measured once)
        numbers.update({"T_frozen_gate": [_show(fr["T"][i], fr["T_cens"][i], 0) for i in range(len(xs))],
                        "N_star_frozen_gate": [_show(fr["N"][i], fr["N_cens"][i], fr["grid"][0]) for i in range(len(xs))]})
        summary += (f"; what gate training adds over the frozen w = 0 scan: T frozen {numbers['T_frozen_gate']}, "
                    f"N* frozen {numbers['N_star_frozen_gate']}")
        if exponent is not None:
            summary += f"; the bound's exponent {exponent} (shown for comparison, not graded)"
        figures = {f"sweep_{name}": {
            "x": xs, "xname": xname, "exponent": exponent, "steps": sw["steps"], "n_cap": 2 * sw["grid"][-1],
            # plotted: not reached at the cap line, reached at once at the floor (T >= 1 for the log axis)
            **{f"{k}{suffix}": torch.where(d[f"{k}_cens"] & (d[k] > floor), cap, d[k].clamp_min(1)).tolist()
               for suffix, d in (("", sw), ("_frozen", fr))
               for k, cap, floor in (("T", float(sw["steps"] + 1), 0), ("N", float(2 * sw["grid"][-1]), sw["grid"][0]))}}}
    return Measurement({"slope_T": sT, "slope_N": sN}, summary, numbers, figures)


def _signal_pairs(ctx: ClaimContext) -> list[tuple[float, float]]:
    L = ctx.configs()[0].L
    pairs, seen = [], set()
    for a, c in SIGNAL_PAIRS:  # the pairs whose token counts at this L are valid and give distinct signals
        x = round(a * L) - round(c * L)
        if x > 0 and round(a * L) + round(c * L) <= L and x not in seen:
            pairs.append((a, c))
            seen.add(x)
    return pairs


def measure_signal(ctx: ClaimContext, arm: str) -> Measurement:
    L = ctx.configs()[0].L
    pairs = _signal_pairs(ctx)
    xs = [(round(a * L) - round(c * L)) / L for a, c in pairs]
    return _slope_measure(ctx, arm, "signal", [{"alpha_r": a, "alpha_c": c} for a, c in pairs], xs,
                          "alpha_r - alpha_c", -2.0)


def measure_locality(ctx: ClaimContext, arm: str) -> Measurement:
    far = ctx.configs()[0].dl_far
    near = _near_grid(ctx)
    xs = [0.5**n - 0.5**far for n in near]
    return _slope_measure(ctx, arm, "locality", [{"regime": "locality", "dl_near": n} for n in near], xs,
                          "(1/2)^dl_near - (1/2)^dl_far", -2.0)


def measure_noise(ctx: ClaimContext, arm: str) -> Measurement:
    taus = [m / ctx.configs()[0].d for m in TAU_MULTS]
    return _slope_measure(ctx, arm, "noise", [{"tau": t} for t in taus], taus, "tau", None)


# ---- mechanisms: gate alignment, and what gate training adds on locality data ----
def measure_gate(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs = ctx.configs()
    params, cells = ctx.trained(cfgs)
    w = params["w"].double().cpu()  # [E, d]; o_+ = e_1, o_- = e_2
    angle = torch.atan2(w[:, 2:].norm(dim=-1), w[:, :2].norm(dim=-1))  # to span(o_+, o_-); at w = 0 it is 0, and w.o_+- > 0 fails
    rows = [c.metrics for c in cells]
    mean = lambda k: r4(sum(r[k] for r in rows) / len(rows))  # noqa: E731
    c0 = cells[0].curves
    return Measurement(
        {"angle_to_relevant": angle, "w_relevant_min": w[:, :2].min(dim=-1).values},
        f"w.o+ {mean('w_o_plus')}, w.o- {mean('w_o_minus')}, max abs(w.nu_j) {mean('w_irrelevant_max')}, "
        f"|w| {mean('w_norm')}; gate on relevant tokens {mean('gate_relevant')}, on confusing "
        f"{mean('gate_confusing')}, on irrelevant {mean('gate_irrelevant')} (1/2 at init)",
        {k: [r4(r[k]) for r in rows] for k in ("w_o_plus", "w_o_minus", "w_irrelevant_max", "gate_relevant",
                                               "gate_irrelevant", "test_error")},
        {"gate_alignment": {"steps": c0["step"], **{k: [c.curves[k] for c in cells] for k in
                            ("w_o_plus", "w_o_minus", "w_irrelevant_max", "gate_relevant", "gate_irrelevant")}}})


def measure_gate_adds(ctx: ClaimContext, arm: str) -> Measurement:
    trained = ctx.trained(ctx.configs(regime="locality", train_gate=True))[1]
    frozen = ctx.trained(ctx.configs(regime="locality", train_gate=False))[1]
    err = lambda cells: torch.tensor([c.metrics["test_error"] if c.status == "done" else float("nan")  # noqa: E731
                                      for c in cells], dtype=torch.float64)
    e_tr, e_fr = err(trained), err(frozen)
    contrast = lambda cells, i: [r4(c.curves["weight_relevant"][i] - c.curves["weight_confusing"][i])  # noqa: E731
                                 for c in cells]
    return Measurement(
        {"gap_closed": gap_closed(e_fr, e_tr, target=0.0)},
        f"locality test error with the gate trained {short(e_tr)} vs frozen at w = 0 {short(e_fr)}; token-weight "
        f"contrast c(o_y) - c(o_-y) in h_L: {contrast(trained, 0)} at w = 0 -> {contrast(trained, -1)} trained",
        {"error_trained_gate": short(e_tr), "error_frozen_gate": short(e_fr),
         "contrast_init": contrast(trained, 0), "contrast_trained": contrast(trained, -1)})


def tuned_errors(ctx: ClaimContext, regime: str, arch: str) -> dict:
    """The tuning protocol (tuning.py) for one architecture on one regime: every (optimizer, lr) of the grid
    trained on each seed's world, the kept candidate per seed chosen on validation error alone; then its test
    error, and the untuned default's beside it."""
    by_cand = {cand: ctx.configs(regime=regime, arch=arch, optimizer=cand[0], lr=cand[1]) for cand in tuning.GRID}
    ctx.trained([c for cfgs in by_cand.values() for c in cfgs])  # one call: the store groups what shares shapes
    cells = {cand: ctx.trained(cfgs)[1] for cand, cfgs in by_cand.items()}
    test = lambda cell: cell.metrics["test_error"] if cell.status == "done" else float("nan")  # noqa: E731
    chosen, tuned, untuned, val = [], [], [], []
    for e in range(len(ctx.seed_values)):
        row = [cells[cand][e] for cand in tuning.GRID]
        k = tuning.select([c.metrics for c in row], [c.status == "done" for c in row])  # validation only
        chosen.append(None if k is None else tuning.GRID[k])
        tuned.append(float("nan") if k is None else test(row[k]))  # the test set, read after the choice
        val.append(float("nan") if k is None else row[k].metrics["val_error"])
        untuned.append(test(cells[tuning.UNTUNED][e]))
    f64 = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return {"chosen": chosen, "tuned": f64(tuned), "untuned": f64(untuned), "val": val,
            "diverged_candidates": [sum(cells[cand][e].status != "done" for cand in tuning.GRID)
                                    for e in range(len(ctx.seed_values))]}


def measure_versus(ctx: ClaimContext, arm: str) -> Measurement:
    before = set(ctx.diverged)
    res = {(r, a): tuned_errors(ctx, r, a) for r in ("majority", "locality") for a in ("ssm", "transformer")}
    # a candidate that diverges is an outcome of the grid, not a failed seed (it is never chosen): only a seed
    # whose every candidate diverged counts as diverged
    lost = {s for t in res.values() for s, c in zip(ctx.seed_values, t["chosen"]) if c is None}
    ctx.diverged.clear()
    ctx.diverged.update(before | lost)
    errs = {k: t["tuned"] for k, t in res.items()}
    worst = torch.stack([errs[("majority", "ssm")], errs[("majority", "transformer")], errs[("locality", "ssm")]])
    mean = lambda k, which="tuned": r4(res[k][which].mean())  # noqa: E731
    name = lambda c: "diverged" if c is None else f"{c[0]} {c[1]:g}"  # noqa: E731
    numbers = {}
    for (r, a), t in res.items():
        numbers.update({f"{r}_{a}": short(t["tuned"]), f"{r}_{a}_chosen": [name(c) for c in t["chosen"]],
                        f"{r}_{a}_val_error": [r4(v) for v in t["val"]],
                        f"{r}_{a}_untuned": short(t["untuned"]),
                        f"{r}_{a}_diverged_candidates": t["diverged_candidates"]})
    numbers["grid"] = [name(c) for c in tuning.GRID]
    return Measurement(
        {"margin": errs[("locality", "transformer")] - errs[("locality", "ssm")], "worst_learned": worst.max(0).values},
        f"tuned on validation (grid {numbers['grid']}, per seed): test error majority SSM {mean(('majority', 'ssm'))} "
        f"vs transformer {mean(('majority', 'transformer'))}; locality SSM {mean(('locality', 'ssm'))} vs transformer "
        f"{mean(('locality', 'transformer'))}; chosen on locality: SSM {numbers['locality_ssm_chosen']}, transformer "
        f"{numbers['locality_transformer_chosen']}. Untuned (gd 1): majority {mean(('majority', 'ssm'), 'untuned')} "
        f"vs {mean(('majority', 'transformer'), 'untuned')}, locality {mean(('locality', 'ssm'), 'untuned')} vs "
        f"{mean(('locality', 'transformer'), 'untuned')}",
        numbers,
        {"ssm_vs_transformer": {**{f"{r}|{a}": v.tolist() for (r, a), v in errs.items()},
                                **{f"{r}|{a}|untuned": t["untuned"].tolist() for (r, a), t in res.items()}}})


FROZEN_ARM = ControlArm(FROZEN, "the gating vector frozen at w = 0 (the scan's fixed (1/2)^k token weights; only "
                        "the MLP learns)")


def _slope_criterion(sign: int, xname: str) -> Criterion:
    bound = Below if sign < 0 else Above
    word = "fall" if sign < 0 else "rise"
    return Criterion(bound("slope_T", 0.0, f"log-log slope of T on {xname} (T {word}s)"),
                     bound("slope_N", 0.0, f"log-log slope of N* on {xname} (N* {word}s)"))


CLAIMS = [
    Claim("fig_signal", "Thms (majority voting)", "figure",
          "Iterations T = Theta(L^2 / (eta (alpha_r - alpha_c)^2)) and samples N = Omega(L^2 d / (alpha_r - alpha_c)^2): "
          "both fall as the effective signal alpha_r - alpha_c rises (the bound's shape: a figure claim)",
          seeds=SEEDS, measure=measure_signal, criterion=_slope_criterion(-1, "alpha_r - alpha_c"),
          hypotheses=(WIDE, MAJORITY), control=FROZEN_ARM),
    Claim("fig_locality", "Thms (locality)", "figure",
          "On locality-structured data the bounds scale with [(1/2)^dl_near - (1/2)^dl_far]^-2 [I exponent]: T and N "
          "fall as the label-consistent token moves nearer the end", seeds=SEEDS, measure=measure_locality,
          criterion=_slope_criterion(-1, "(1/2)^dl_near - (1/2)^dl_far"), hypotheses=(WIDE, TWO_DISTANCES),
          control=FROZEN_ARM),
    Claim("fig_noise", "Thms (noise)", "figure",
          "The sample-complexity and iteration bounds improve as the token noise tau falls (inside tau = O(1/d))",
          seeds=SEEDS, measure=measure_noise, criterion=_slope_criterion(+1, "tau"), hypotheses=(WIDE,),
          control=FROZEN_ARM),
    Claim("gate_alignment", "abstract, mechanism", "mechanism",
          "Training aligns the gating vector w with the class-relevant patterns o_+, o_- and leaves it near "
          "orthogonal to the irrelevant ones", seeds=SEEDS, measure=measure_gate,
          criterion=Criterion(AtMost("angle_to_relevant", ALIGN_ANGLE, "angle between w and span(o_+, o_-)"),
                              Above("w_relevant_min", 0.0, "min(w.o_+, w.o_-)")),
          hypotheses=(WIDE, SSM)),
    Claim("gate_adds_locality", "Thms (locality), mechanism", "mechanism",
          "On locality data, training the gate removes most of the error the fixed w = 0 scan ((1/2)^k token "
          "weights, MLP trained) leaves at the same N and T", seeds=SEEDS, measure=measure_gate_adds,
          criterion=Criterion(AtLeast("gap_closed", CLOSE_GAP, "share of the frozen-gate model's test error removed "
                                      "by training the gate")),
          hypotheses=(WIDE, SSM)),
    Claim("fig_ssm_vs_transformer", "experiments [R reviewer 3]", "figure",
          "The SSM matches a one-layer Transformer (learned positions) on majority voting and beats it on "
          "locality-structured data, each tuned per seed on its validation set over the same (optimizer, lr) grid",
          seeds=SEEDS, measure=measure_versus,
          criterion=Criterion(AtMost("worst_learned", LEARNED, "largest tuned test error of SSM and transformer on "
                                     "majority voting and of the SSM on locality (learned: <= "
                                     f"{FAR_FROM_CHANCE:g} x chance)"),
                              Above("margin", 0.0, "locality: tuned transformer error - tuned SSM error"),
                              key="margin")),
]
