"""The shallow-ViT paper's statements as claims on the kit (core.claims on core.contract). Every sweep is one list
of configs handed to ctx.trained (the sweep engine and the store): cells sharing shapes train as one ensemble, and
cells of one seed share their world (ViTConfig.swept_fields: alpha_*, N, the sparsification arms...).

- "zero test error": the model's error on n_test fresh examples is 0. N*(alpha_*) is the smallest grid N from which
  every larger grid N also reaches it, T* the first checkpoint from which the probe error stays 0 (measures.
  first_stable). Not reached within the grid is censored: left out of a slope fit (measures.log_log_slope), never
  entered as a number.
- Exponents (figures: a two-sided band is a tightness test, not the theorem's sufficient condition): least squares
  of log N* (log T*) on log alpha_*, alpha_* as realised, n_* / L. The band is the paper's contrast, fixed before
  any run: N* ~ alpha^-2 against no dependence (0) and the CNN's alpha^-4, so k in (-3, -1); T* ~ alpha^-1 against
  0 and -2, so k in (-1.5, -0.5).
- Hypotheses (Thm 1): alpha_# <= alpha_* / (2e) at every alpha used, and small noise tau < sqrt(2)/2 (config.TAU_SMALL).
- Attention "-> 1": training closes at least CLOSE_GAP (core) of the untrained model's gap to 1.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import CLOSE_GAP, MAIN, Above, AtLeast, Below, ControlArm, Criterion, Hypothesis, \
    Measurement, short
from theorylab.core.measures import first_stable, gap_closed, log_log_slope, r4
from theorylab.studies.vit.config import C_MAX, TAU_SMALL

SAMPLE_BAND = (-3.0, -1.0)  # closer to -2 than to 0 and -4 (the paper's contrast)
ITER_BAND = (-1.5, -0.5)  # closer to -1 than to 0 and -2
DROP_IRRELEVANT = 0.5  # share of the L tokens the irrelevant-token oracle (and its random control) drops
NOISY_FRAC = 0.2  # share of tokens carrying tau_big in the noisy-token claim; the oracle drops as many
ALPHA_SP = 0.1  # share of spurious tokens in the synthetic spurious figure
RANDOM = "random"


def _confusion_at(cfg, alphas) -> str | None:
    for a in alphas:
        n_star, n_conf, _ = cfg.counts(a)
        if n_star < 1 or n_conf / n_star > C_MAX:
            return (f"at alpha_* = {a} the example has {n_conf} confusion per {n_star} relevant tokens "
                    f"({n_conf / max(n_star, 1):.3f} > {C_MAX:.3f})")
    return None


CONFUSION = Hypothesis("Thm 1: alpha_# <= alpha_* / (2e) at every alpha_* of the grid",
                       lambda ctx: _confusion_at(ctx.configs()[0], ctx.configs()[0].grid_alpha))
CONFUSION_SPARSIFY = Hypothesis("Thm 1: alpha_# <= alpha_* / (2e) at sparsify_alpha",
                                lambda ctx: _confusion_at(ctx.configs()[0], (ctx.configs()[0].sparsify_alpha,)))


def _small_noise(ctx: ClaimContext) -> str | None:
    c = ctx.configs()[0]
    if c.data != "synthetic":
        return None
    return None if c.tau < TAU_SMALL else f"tau = {c.tau} >= {TAU_SMALL:.3f}"


SMALL_NOISE = Hypothesis(f"Thm 1's small noise: tau < sqrt(2)/2 = {TAU_SMALL:.3f} (every token nearer its own "
                         "orthonormal pattern than any other)", _small_noise)


def _realised(ctx: ClaimContext) -> str | None:
    cfg = ctx.configs()[0]
    if len({cfg.counts(a)[0] for a in cfg.grid_alpha}) < 2:
        return f"the alpha grid {cfg.grid_alpha} gives one realised alpha_* at L = {cfg.L}: no slope to fit"
    return None


TWO_ALPHAS = Hypothesis("the alpha grid realises at least two values of n_* / L", _realised)


def _sweep(ctx: ClaimContext, grid: list[dict]) -> tuple[list, dict, list]:
    """Trains every (grid point, seed) cell as one sweep; returns configs [G][S], stacked params, cells [G][S].
    The seeds' base cells are trained too: a seed whose base model diverged fails every claim."""
    base = ctx.configs()
    ctx.trained(base)
    cfgs = [[c.replace(**g) for c in base] for g in grid]
    flat = [c for row in cfgs for c in row]
    params, cells = ctx.trained(flat)
    S = len(base)
    return cfgs, params, [cells[i * S:(i + 1) * S] for i in range(len(grid))]


def _metric(cells_rows, key) -> torch.Tensor:
    return torch.tensor([[c.metrics[key] for c in row] for row in cells_rows], dtype=torch.float64)  # [G, S]


def _realised_alphas(cfg) -> list[float]:
    return [cfg.counts(a)[0] / cfg.L for a in cfg.grid_alpha]


def _censored_note(x: torch.Tensor, cens: torch.Tensor) -> list:
    """Per-seed values for a report, None where censored (not reached within the grid)."""
    return [None if c else r4(v) for v, c in zip(x.tolist(), cens.tolist())]


# ---- Thm 1 (figures): N* ~ alpha_*^-2, T* ~ alpha_*^-1 ----
def _phase(ctx: ClaimContext) -> dict:
    def compute():
        cfg = ctx.configs()[0]
        alphas, Ns = cfg.grid_alpha, cfg.grid_N
        grid = [{"alpha_star": a, "n_train": N} for a in alphas for N in Ns]
        _, _, cells = _sweep(ctx, grid)
        err = _metric(cells, "test_error").reshape(len(alphas), len(Ns), -1)  # [A, N, S]
        stable = [first_stable(err[i] == 0, Ns) for i in range(len(alphas))]
        n_star, cens = torch.stack([x for x, _ in stable]), torch.stack([c for _, c in stable])  # [A, S]
        return {"realised": _realised_alphas(cfg), "Ns": list(Ns), "err": err, "n_star": n_star, "censored": cens}
    return ctx.memo("vit:phase", compute)


def measure_samples(ctx: ClaimContext, arm: str) -> Measurement:
    d = _phase(ctx)
    k, used = log_log_slope(d["realised"], d["n_star"], d["censored"])
    success = (d["err"] == 0).double().mean(-1)  # [A, N] success rate over seeds
    return Measurement(
        {"exponent": k},
        f"N* per seed by realised alpha_* (None: not reached within N <= {d['Ns'][-1]}): "
        + "; ".join(f"{a:.3f}: {_censored_note(d['n_star'][i], d['censored'][i])}" for i, a in enumerate(d["realised"]))
        + f"; points in each fit {used.tolist()}",
        {"realised_alpha": d["realised"], "censored_points": int(d["censored"].sum())},
        {"phase_diagram": {"alphas": d["realised"], "Ns": d["Ns"], "success": success.tolist(),
                           "n_star": d["n_star"].mean(1).tolist(), "n_star_seeds": d["n_star"].tolist(),
                           "censored": d["censored"].tolist()}})


def _iterations(ctx: ClaimContext) -> dict:
    def compute():
        cfg = ctx.configs()[0]
        grid = [{"alpha_star": a, "n_train": 0, "curve_points": cfg.iter_points} for a in cfg.grid_alpha]
        _, _, cells = _sweep(ctx, grid)
        steps = [float(x) for x in cells[0][0].curves["step"]]
        probe = torch.tensor([[c.curves["probe_error"] for c in row] for row in cells], dtype=torch.float64)  # [A,S,T]
        stable = [first_stable((probe[i] == 0).T, steps) for i in range(len(cfg.grid_alpha))]
        t_star = torch.stack([x for x, _ in stable]).clamp_min(1.0)  # right at step 0 counts as one step (log scale)
        return {"realised": _realised_alphas(cfg), "t_star": t_star, "censored": torch.stack([c for _, c in stable]),
                "steps": steps, "probe_mean": probe.mean(1).tolist(), "probe_std": probe.std(1).tolist()}
    return ctx.memo("vit:iterations", compute)


def measure_iterations(ctx: ClaimContext, arm: str) -> Measurement:
    d = _iterations(ctx)
    k, used = log_log_slope(d["realised"], d["t_star"], d["censored"])
    return Measurement(
        {"exponent": k},
        f"T* per seed by realised alpha_* (None: not reached within {d['steps'][-1]:g} steps): "
        + "; ".join(f"{a:.3f}: {_censored_note(d['t_star'][i], d['censored'][i])}" for i, a in enumerate(d["realised"]))
        + f"; points in each fit {used.tolist()}",
        {"realised_alpha": d["realised"], "censored_points": int(d["censored"].sum())},
        {"iterations": {"alphas": d["realised"], "t_star": d["t_star"].mean(1).tolist(), "steps": d["steps"],
                        "probe_mean": d["probe_mean"], "probe_std": d["probe_std"], "t_star_seeds": d["t_star"].tolist(),
                        "censored": d["censored"].tolist()}})


# ---- Prop. 2 (mechanism) ----
def measure_attention(ctx: ClaimContext, arm: str) -> Measurement:
    cfgs = ctx.configs()
    _, cells = ctx.trained(cfgs)
    steps = cells[0].curves["step"]
    attn = np.array([c.curves["attn_rel"] for c in cells])  # [S, T]
    start, end = torch.tensor(attn[:, 0]), torch.tensor(attn[:, -1])
    n_star = cfgs[0].counts()[0]
    return Measurement(
        {"gap_closed": gap_closed(start, end, 1.0)},
        f"attention on S_* {start.mean():.2f} (untrained) -> {end.mean():.2f}; uniform attention would give "
        f"{n_star / cfgs[0].L:.3f} (alpha_*)",
        {"attn_start": short(start), "attn_end": short(end), "test_error": [c.metrics["test_error"] for c in cells]},
        {"attention": {"steps": steps, "mean": attn.mean(0).tolist(), "std": attn.std(0).tolist(),
                       "uniform": n_star / cfgs[0].L}})


# ---- token sparsification (theorems: the sparsified data meets Thm 1's condition with a larger alpha_* / smaller
# tau, so it needs fewer samples) ----
def _arms(ctx: ClaimContext, which: str, base: dict, drop: float) -> dict:
    """{arm: (N* [S], censored [S])} and test errors [N, S] at sparsify_alpha over grid_N."""
    def compute():
        cfg = ctx.configs()[0]
        Ns = cfg.grid_N
        arms = {"none": base, which: {**base, "sparsify": which, "drop_frac": drop},
                RANDOM: {**base, "sparsify": RANDOM, "drop_frac": drop}}
        grid = [{"alpha_star": cfg.sparsify_alpha, "n_train": N, **over} for over in arms.values() for N in Ns]
        _, _, cells = _sweep(ctx, grid)
        err = _metric(cells, "test_error").reshape(len(arms), len(Ns), -1)
        loss = _metric(cells, "test_loss").reshape(len(arms), len(Ns), -1)
        return {"Ns": list(Ns), "err": {arm: err[i] for i, arm in enumerate(arms)},
                "loss": {arm: loss[i] for i, arm in enumerate(arms)},
                "need": {arm: first_stable(err[i] == 0, Ns) for i, arm in enumerate(arms)}}
    return ctx.memo(f"vit:sparsify:{which}", compute)


def _sparsify_measure(which: str, base: dict, drop: float):
    def measure(ctx: ClaimContext, arm: str) -> Measurement:
        d = _arms(ctx, which, base, drop)
        arm_name = which if arm == MAIN else RANDOM
        (n0, c0), (n1, c1) = d["need"]["none"], d["need"][arm_name]
        # log2 N*(none) / N*(arm), a censored N* taken at the grid's last N: that is a bound in the direction that
        # can only fail the test (an arm that never reaches zero error gains <= 0; an unsparsified model that never
        # does gives a lower bound on the gain), never a measured value in a fit
        gain = torch.log2(n0 / n1)
        # reported with the interval: mean test hinge loss over the N grid, unsparsified minus this arm (never
        # censored; the spec's Fig. 2b plots this loss)
        drop_loss = d["loss"]["none"].mean(0) - d["loss"][arm_name].mean(0)
        return Measurement(
            {"gain": gain, "loss_drop": drop_loss},
            f"N* (None: not within N <= {d['Ns'][-1]}): none {_censored_note(n0, c0)}, {arm_name} "
            f"{_censored_note(n1, c1)}; test error at N = {d['Ns'][-1]}: none {short(d['err']['none'][-1])}, "
            f"{arm_name} {short(d['err'][arm_name][-1])}",
            {"n_star_none": _censored_note(n0, c0), f"n_star_{arm_name}": _censored_note(n1, c1)},
            {f"sparsification_{which}": {"Ns": d["Ns"], "curves": {a: d["err"][a].mean(1).tolist()
                                                                   for a in ("none", which, RANDOM)},
                                         "spread": {a: d["err"][a].double().std(1).tolist()
                                                    for a in ("none", which, RANDOM)}}}
            if arm == MAIN else {})
    return measure


# ---- spurious tokens (figures) ----
def _spurious_measure(name: str, base_fn, Ns_fn, drop_fn):
    def measure(ctx: ClaimContext, arm: str) -> Measurement:
        cfg = ctx.configs()[0]
        base, Ns, drop = base_fn(cfg), Ns_fn(cfg), drop_fn(cfg)
        def compute():
            grid = [{**base, "n_train": N, **a} for a in ({}, {"sparsify": "spurious", "drop_frac": drop}) for N in Ns]
            _, _, cells = _sweep(ctx, grid)
            return (1 - _metric(cells, "test_error").reshape(2, len(Ns), -1),
                    _metric(cells, "attn_sp").reshape(2, len(Ns), -1))
        acc, attn_sp = ctx.memo(f"vit:{name}", compute)  # [arm, N, S]
        gain = acc[1].mean(0) - acc[0].mean(0)  # [S]
        return Measurement(
            {"gain": gain},
            "mean accuracy by N: kept " + ", ".join(f"{N}: {r4(a)}" for N, a in zip(Ns, acc[0].mean(1)))
            + "; dropped " + ", ".join(f"{N}: {r4(a)}" for N, a in zip(Ns, acc[1].mean(1)))
            + f"; attention on spurious tokens (kept) {r4(attn_sp[0].mean())}",
            {"accuracy_kept": acc[0].tolist(), "accuracy_dropped": acc[1].tolist()},
            {name: {"Ns": list(Ns), "kept": acc[0].mean(1).tolist(), "dropped": acc[1].mean(1).tolist(),
                    "kept_std": acc[0].std(1).tolist() if acc.shape[-1] > 1 else [0.0] * len(Ns),
                    "dropped_std": acc[1].std(1).tolist() if acc.shape[-1] > 1 else [0.0] * len(Ns)}})
    return measure


RANDOM_CONTROL = ControlArm(RANDOM, "dropping as many random tokens, one relevant token per example always kept")
SAMPLE_EXPONENT = "least-squares exponent k of N* ~ alpha_*^k (censored N* left out)"
CLAIMS = [
    Claim("thm1_samples", "Thm 1", "figure", "With alpha_# <= alpha_*/(2e) and small noise, the samples needed for "
          "zero test error grow like alpha_*^-2 (exponent fitted on a log-log sweep of N x alpha_*; an exponent band "
          "is a tightness test: a figure claim).", seeds=5, measure=measure_samples,
          hypotheses=(CONFUSION, SMALL_NOISE, TWO_ALPHAS),
          criterion=Criterion(Above("exponent", SAMPLE_BAND[0], SAMPLE_EXPONENT),
                              Below("exponent", SAMPLE_BAND[1], SAMPLE_EXPONENT))),
    Claim("thm1_iterations", "Thm 1", "figure", "The SGD iterations needed for zero test error grow like 1/alpha_* "
          "(an exponent band: a figure claim).", seeds=5, measure=measure_iterations,
          hypotheses=(CONFUSION, SMALL_NOISE, TWO_ALPHAS),
          criterion=Criterion(Above("exponent", ITER_BAND[0], "least-squares exponent k of T* ~ alpha_*^k (censored "
                                    "T* left out)"),
                              Below("exponent", ITER_BAND[1], "least-squares exponent k of T* ~ alpha_*^k (censored "
                                    "T* left out)"))),
    Claim("prop2_attention", "Prop. 2", "mechanism", "During training the attention of label-relevant tokens "
          "concentrates on label-relevant tokens (the summed weight rises toward 1: a sparse attention map).",
          seeds=5, measure=measure_attention,
          criterion=Criterion(AtLeast("gap_closed", CLOSE_GAP, "share of the untrained attention-on-S_* gap to 1 "
                                      "closed by training"))),
    Claim("thm_sparsify_irrelevant", "Thm 1 / Sec. 4 (token sparsification)", "theorem", "Removing label-irrelevant "
          "tokens (raising alpha_*) lowers the samples needed for zero test error.", seeds=5,
          measure=_sparsify_measure("irrelevant", {}, DROP_IRRELEVANT), hypotheses=(CONFUSION_SPARSIFY, SMALL_NOISE),
          criterion=Criterion(Above("gain", 0.0, "log2 N*(unsparsified) / N*(sparsified), half the tokens dropped"),
                              key="loss_drop"),
          control=RANDOM_CONTROL),
    Claim("thm_sparsify_noisy", "Thm 1 / Sec. 4 (token sparsification)", "theorem", "Removing the tokens with large "
          "noise (lowering the effective tau) lowers the samples needed for zero test error.", seeds=5,
          measure=_sparsify_measure("noisy", {"noisy_frac": NOISY_FRAC}, NOISY_FRAC),
          hypotheses=(CONFUSION_SPARSIFY, SMALL_NOISE),
          criterion=Criterion(Above("gain", 0.0, f"log2 N*(unsparsified) / N*(sparsified), {NOISY_FRAC:g} of the "
                                    "tokens dropped"), key="loss_drop"),
          control=RANDOM_CONTROL),
    Claim("fig_spurious", "Sec. 4 (spurious correlations)", "figure", "Removing spurious-correlation tokens raises the "
          "test accuracy (synthetic tokens).", seeds=5,
          measure=_spurious_measure("spurious_synthetic", lambda c: {"alpha_star": c.sparsify_alpha, "alpha_sp": ALPHA_SP},
                                    lambda c: c.grid_N_spurious, lambda c: ALPHA_SP),
          criterion=Criterion(Above("gain", 0.0, "test accuracy gain from dropping the spurious tokens (mean over N)"))),
    Claim("fig_spurious_digits", "Sec. 4 (spurious correlations), real images", "figure", "On scikit-learn's digits with "
          "marker patches pasted in correlation with the label, removing the marker tokens raises test accuracy.",
          seeds=5, measure=_spurious_measure("spurious_digits", lambda c: {"data": "digits"},
                                             lambda c: c.grid_N_digits, lambda c: c.n_paste / 16),
          criterion=Criterion(Above("gain", 0.0, "test accuracy gain from dropping the marker tokens (mean over N)"))),
]
