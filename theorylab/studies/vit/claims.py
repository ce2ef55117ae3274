"""The shallow-ViT paper's statements as claims, graded per seed (core.claims). Every sweep is one list of configs
handed to ctx.trained (the sweep engine and the store): cells sharing shapes train as one ensemble, and a cell two
claims share (the sparsification claims' unsparsified arm is a phase-diagram cell) trains once.

Constants, fixed before any run:
- "zero test error": the model's error on n_test fresh examples is 0. N*(alpha_*) is the smallest N of the grid from
  which every larger N of the grid also reaches it; T* the first checkpoint from which the probe error stays 0. A
  value not reached within the grid counts as twice the grid's largest (censored; it flattens a slope).
- Slopes: least squares of log N* (log T*) on log alpha_*, alpha_* taken as realised, n_* / L. A seed passes when its
  exponent is closer to the theorem's than to the neighbouring candidates the paper contrasts: N* ~ alpha^-2 against
  no dependence (0) and the CNN's alpha^-4, so k in (-3, -1); T* ~ alpha^-1 against 0 and -2, so k in (-1.5, -0.5).
- Attention "-> 1": the trained mass closes at least CLOSE_GAP of the untrained model's gap to 1 (ICL's constant).
"""
from __future__ import annotations

import numpy as np

from theorylab.core.claims import Claim, ClaimContext, Control, NotApplicable, Outcome
from theorylab.core.ensemble import rng_for
from theorylab.core.measures import r4
from theorylab.core.verdict import interval
from theorylab.studies.vit.config import C_MAX
from theorylab.studies.vit.model import init_params
from theorylab.studies.vit.train import evaluate

CLOSE_GAP = 0.5
SAMPLE_BAND = (-3.0, -1.0)  # closer to -2 than to 0 and -4
ITER_BAND = (-1.5, -0.5)  # closer to -1 than to 0 and -2
DROP_IRRELEVANT = 0.5  # share of the L tokens the irrelevant-token oracle (and its random control) drops
NOISY_FRAC = 0.2  # share of tokens carrying tau_big in the noisy-token claim; the oracle drops as many
ALPHA_SP = 0.1  # share of spurious tokens in the synthetic spurious figure


def _list(x) -> list[float]:
    return [r4(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def _check_confusion(cfg, a: float) -> int:
    """Thm 1's alpha_* >= alpha_# / c with c < 1/(2e) at alpha_* = a (NotApplicable where it fails); returns n_*."""
    n_star, n_conf, _ = cfg.counts(a)
    if n_star < 1 or n_conf / n_star > C_MAX:
        raise NotApplicable(f"Thm 1 needs alpha_# <= alpha_* / (2e); at alpha_* = {a} the example has {n_conf} "
                            f"confusion per {n_star} relevant tokens ({n_conf / max(n_star, 1):.3f} > {C_MAX:.3f})")
    return n_star


def _hypothesis(cfg, alphas) -> list[float]:
    """Thm 1's hypothesis at every alpha of the grid; the realised alphas n_* / L."""
    realised = [_check_confusion(cfg, a) / cfg.L for a in alphas]
    if len(set(realised)) < 2:
        raise NotApplicable(f"the alpha grid {alphas} gives one realised alpha_* at L = {cfg.L}: no slope to fit")
    return realised


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


def _first_stable(ok: np.ndarray, xs, censored: float) -> np.ndarray:
    """ok [X, S] bool along a grid xs -> [S]: the smallest x from which ok holds at every larger x (else censored)."""
    out = np.full(ok.shape[1], censored, dtype=float)
    for s in range(ok.shape[1]):
        for i in range(len(xs) - 1, -1, -1):
            if not ok[i:, s].all():
                break
            out[s] = xs[i]
    return out


def _slopes(alphas, y: np.ndarray) -> np.ndarray:
    """y [A, S] -> [S]: least-squares slope of log y on log alpha."""
    x = np.log(np.asarray(alphas, dtype=float))
    x = x - x.mean()
    ly = np.log(y)
    return (x[:, None] * (ly - ly.mean(0))).sum(0) / (x**2).sum()


def _metric(cells_rows, key) -> np.ndarray:
    return np.array([[c.metrics[key] for c in row] for row in cells_rows])  # [G, S]


def _phase(ctx: ClaimContext) -> dict:
    def compute():
        cfg = ctx.configs()[0]
        alphas, Ns = cfg.grid_alpha, cfg.grid_N
        realised = _hypothesis(cfg, alphas)
        grid = [{"alpha_star": a, "n_train": N} for a in alphas for N in Ns]
        cfgs, params, cells = _sweep(ctx, grid)
        err = _metric(cells, "test_error").reshape(len(alphas), len(Ns), -1)  # [A, N, S]
        flat = [c for row in cfgs for c in row]
        init_err = evaluate(init_params(flat, rng_for(flat, ctx.device), ctx.device), flat)["error"]
        init_err = init_err.reshape(len(alphas), len(Ns), -1).numpy()
        censored = 2.0 * max(Ns)
        n_star = np.stack([_first_stable(err[i] == 0, Ns, censored) for i in range(len(alphas))])  # [A, S]
        n_init = np.stack([_first_stable(init_err[i] == 0, Ns, censored) for i in range(len(alphas))])
        return {"alphas": list(alphas), "realised": realised, "Ns": list(Ns), "err": err, "n_star": n_star,
                "slope": _slopes(realised, n_star), "init_slope": _slopes(realised, n_init), "censored": censored}
    return ctx.memo("vit:phase", compute)


def _inside(values, target) -> str:
    iv = interval(list(values))
    if iv["lo"] is None:
        return "no interval (one seed)"
    return f"{'inside' if iv['lo'] <= target <= iv['hi'] else 'outside'} [{iv['lo']:.2f}, {iv['hi']:.2f}]"


def thm1_samples(ctx: ClaimContext) -> Outcome:
    d = _phase(ctx)
    k, lo, hi = d["slope"], *SAMPLE_BAND
    passed = (k > lo) & (k < hi)
    success = (d["err"] == 0).mean(-1)  # [A, N] success rate over seeds
    return Outcome(
        passed.tolist(), "exponent k of N* ~ alpha_*^k", k.tolist(),
        f"per seed, k in ({lo:g}, {hi:g}): closer to the theorem's -2 than to 0 or the CNN's -4 (N*: smallest grid N "
        f"from which test error = 0 on n_test; not reached = {d['censored']:g})",
        f"theorem's -2 is {_inside(k, -2.0)}; mean N* by realised alpha_* "
        + ", ".join(f"{a:.3f}: {r4(v)}" for a, v in zip(d["realised"], d["n_star"].mean(1))),
        {"realised_alpha": d["realised"], "n_star": {str(a): d["n_star"][i].tolist() for i, a in enumerate(d["alphas"])},
         "exponent": _list(k), "minus_two_inside_ci": _inside(k, -2.0).startswith("inside")},
        {"phase_diagram": {"alphas": d["realised"], "Ns": d["Ns"], "success": success.tolist(),
                           "n_star": d["n_star"].mean(1).tolist()}},
        control=Control("the untrained model", ((d["init_slope"] > lo) & (d["init_slope"] < hi)).tolist(),
                        f"exponent {_list(d['init_slope'])}"))


def _iterations(ctx: ClaimContext) -> dict:
    def compute():
        cfg = ctx.configs()[0]
        alphas = cfg.grid_alpha
        realised = _hypothesis(cfg, alphas)
        grid = [{"alpha_star": a, "n_train": 0, "curve_points": cfg.iter_points} for a in alphas]
        cfgs, params, cells = _sweep(ctx, grid)
        steps = np.array(cells[0][0].curves["step"], dtype=float)
        probe = np.array([[c.curves["probe_error"] for c in row] for row in cells])  # [A, S, T]
        censored = 2.0 * steps[-1]
        t_star = np.stack([_first_stable((probe[i] == 0).T, steps, censored) for i in range(len(alphas))])
        t_star = np.maximum(t_star, 1.0)  # a model right at step 0 counts as one step (log scale)
        init_zero = (probe[:, :, 0] == 0)  # the untrained model: zero probe error at step 0 for ever after?
        t_init = np.where(init_zero, 1.0, censored)
        return {"alphas": list(alphas), "realised": realised, "t_star": t_star, "slope": _slopes(realised, t_star),
                "init_slope": _slopes(realised, t_init), "censored": censored, "steps": steps.tolist(),
                "probe_mean": probe.mean(1).tolist()}
    return ctx.memo("vit:iterations", compute)


def thm1_iterations(ctx: ClaimContext) -> Outcome:
    d = _iterations(ctx)
    k, lo, hi = d["slope"], *ITER_BAND
    passed = (k > lo) & (k < hi)
    return Outcome(
        passed.tolist(), "exponent k of T* ~ alpha_*^k", k.tolist(),
        f"per seed, k in ({lo:g}, {hi:g}): closer to the theorem's -1 than to 0 or -2 (T*: first checkpoint from "
        f"which the probe error stays 0, fresh samples every step; not reached = {d['censored']:g})",
        f"theorem's -1 is {_inside(k, -1.0)}; mean T* by realised alpha_* "
        + ", ".join(f"{a:.3f}: {r4(v)}" for a, v in zip(d["realised"], d["t_star"].mean(1))),
        {"realised_alpha": d["realised"], "t_star": {str(a): d["t_star"][i].tolist() for i, a in enumerate(d["alphas"])},
         "exponent": _list(k), "minus_one_inside_ci": _inside(k, -1.0).startswith("inside")},
        {"iterations": {"alphas": d["realised"], "t_star": d["t_star"].mean(1).tolist(), "steps": d["steps"],
                        "probe_mean": d["probe_mean"]}},
        control=Control("the untrained model", ((d["init_slope"] > lo) & (d["init_slope"] < hi)).tolist(),
                        f"exponent {_list(d['init_slope'])}"))


def prop2_attention(ctx: ClaimContext) -> Outcome:
    cfgs = ctx.configs()
    _, cells = ctx.trained(cfgs)
    steps = cells[0].curves["step"]
    attn = np.array([c.curves["attn_rel"] for c in cells])  # [S, T]
    start, end = attn[:, 0], attn[:, -1]
    closed = (end - start) / np.maximum(1 - start, 1e-12)
    n_star = cfgs[0].counts()[0]
    return Outcome(
        (closed >= CLOSE_GAP).tolist(), "share of the gap to 1 closed", closed.tolist(),
        f"attention of label-relevant queries on S_* closes >= {CLOSE_GAP} of the untrained model's gap to 1",
        f"attention on S_* {start.mean():.2f} (untrained) -> {end.mean():.2f}; uniform attention would give "
        f"{n_star / cfgs[0].L:.3f} (alpha_*)",
        {"attn_start": _list(start), "attn_end": _list(end), "test_error": [c.metrics["test_error"] for c in cells]},
        {"attention": {"steps": steps, "mean": attn.mean(0).tolist(), "std": attn.std(0).tolist(),
                       "uniform": n_star / cfgs[0].L}})


def _arms(ctx: ClaimContext, arms: dict[str, dict]) -> dict:
    """{arm: test error [N, S]} at the sparsification alpha over grid_N."""
    cfg = ctx.configs()[0]
    _check_confusion(cfg, cfg.sparsify_alpha)
    Ns = cfg.grid_N
    grid = [{"alpha_star": cfg.sparsify_alpha, "n_train": N, **over} for over in arms.values() for N in Ns]
    _, _, cells = _sweep(ctx, grid)
    err = _metric(cells, "test_error").reshape(len(arms), len(Ns), -1)
    return {"Ns": list(Ns), **{arm: err[i] for i, arm in enumerate(arms)}}


def _sparsify_claim(ctx: ClaimContext, which: str, base: dict, drop: float) -> Outcome:
    d = ctx.memo(f"vit:sparsify:{which}", lambda: _arms(ctx, {
        "none": base, which: {**base, "sparsify": which, "drop_frac": drop},
        "random": {**base, "sparsify": "random", "drop_frac": drop}}))
    Ns = d["Ns"]
    censored = 2.0 * max(Ns)
    need = {arm: _first_stable(d[arm] == 0, Ns, censored) for arm in ("none", which, "random")}
    ratio = np.log2(need["none"] / need[which])
    return Outcome(
        (need[which] < need["none"]).tolist(), f"log2 N*(none) / N*({which})", ratio.tolist(),
        f"dropping {drop:g} of the tokens ({which} first, in training and test) lowers N* (smallest grid N from which "
        f"test error = 0) below the unsparsified model's",
        f"mean N*: none {r4(need['none'].mean())}, {which} {r4(need[which].mean())}, random {r4(need['random'].mean())}",
        {arm: v.tolist() for arm, v in need.items()},
        {f"sparsification_{which}": {"Ns": Ns, "curves": {arm: d[arm].mean(1).tolist() for arm in ("none", which, "random")}}},
        control=Control("dropping as many random tokens", (need["random"] < need["none"]).tolist(),
                        f"N* {need['random'].tolist()} vs none {need['none'].tolist()}"))


def thm_sparsify_irrelevant(ctx: ClaimContext) -> Outcome:
    return _sparsify_claim(ctx, "irrelevant", {}, DROP_IRRELEVANT)


def thm_sparsify_noisy(ctx: ClaimContext) -> Outcome:
    return _sparsify_claim(ctx, "noisy", {"noisy_frac": NOISY_FRAC}, NOISY_FRAC)


def _spurious(ctx: ClaimContext, name: str, base: dict, Ns, drop: float) -> Outcome:
    grid = [{**base, "n_train": N, **arm} for arm in ({}, {"sparsify": "spurious", "drop_frac": drop}) for N in Ns]
    _, _, cells = _sweep(ctx, grid)
    acc = 1 - _metric(cells, "test_error").reshape(2, len(Ns), -1)  # [arm, N, S]
    attn_sp = _metric(cells, "attn_sp").reshape(2, len(Ns), -1)
    gain = acc[1].mean(0) - acc[0].mean(0)  # [S]
    return Outcome(
        (gain > 0).tolist(), "test accuracy gain from dropping the spurious tokens (mean over N)", gain.tolist(),
        "test accuracy (spurious tokens independent of the label at test) is higher with the spurious tokens dropped, "
        f"averaged over N in {list(Ns)}",
        "mean accuracy by N: kept " + ", ".join(f"{N}: {r4(a)}" for N, a in zip(Ns, acc[0].mean(1)))
        + "; dropped " + ", ".join(f"{N}: {r4(a)}" for N, a in zip(Ns, acc[1].mean(1)))
        + f"; attention on spurious tokens (kept) {r4(attn_sp[0].mean())}",
        {"accuracy_kept": acc[0].tolist(), "accuracy_dropped": acc[1].tolist()},
        {name: {"Ns": list(Ns), "kept": acc[0].mean(1).tolist(), "dropped": acc[1].mean(1).tolist(),
                "kept_std": acc[0].std(1).tolist(), "dropped_std": acc[1].std(1).tolist()}})


def fig_spurious(ctx: ClaimContext) -> Outcome:
    cfg = ctx.configs()[0]
    return _spurious(ctx, "spurious_synthetic", {"alpha_star": cfg.sparsify_alpha, "alpha_sp": ALPHA_SP},
                     cfg.grid_N_spurious, ALPHA_SP)


def fig_spurious_digits(ctx: ClaimContext) -> Outcome:
    cfg = ctx.configs()[0]
    return _spurious(ctx, "spurious_digits", {"data": "digits"}, cfg.grid_N_digits, cfg.n_paste / 16)


CLAIMS = [
    Claim("thm1_samples", "Thm 1", "theorem", "With alpha_# <= alpha_*/(2e), the samples needed for zero test error grow "
          "like alpha_*^-2 (exponent fitted on a log-log sweep of N x alpha_*).", thm1_samples, seeds=5),
    Claim("thm1_iterations", "Thm 1", "theorem", "The SGD iterations needed for zero test error grow like 1/alpha_*.",
          thm1_iterations, seeds=5),
    Claim("prop2_attention", "Prop. 2", "mechanism", "During training the attention of label-relevant tokens "
          "concentrates on label-relevant tokens (the summed weight rises toward 1: a sparse attention map).",
          prop2_attention, seeds=5),
    Claim("thm_sparsify_irrelevant", "Thm 1 / Sec. 4 (token sparsification)", "theorem", "Removing label-irrelevant "
          "tokens (raising alpha_*) lowers the samples needed for zero test error.", thm_sparsify_irrelevant, seeds=5),
    Claim("thm_sparsify_noisy", "Thm 1 / Sec. 4 (token sparsification)", "theorem", "Removing the tokens with large "
          "noise (lowering the effective tau) lowers the samples needed for zero test error.", thm_sparsify_noisy, seeds=5),
    Claim("fig_spurious", "Sec. 4 (spurious correlations)", "figure", "Removing spurious-correlation tokens raises the "
          "test accuracy (synthetic tokens).", fig_spurious, seeds=5),
    Claim("fig_spurious_digits", "Sec. 4 (spurious correlations), real images", "figure", "On scikit-learn's digits with "
          "marker patches pasted in correlation with the label, removing the marker tokens raises test accuracy.",
          fig_spurious_digits, seeds=5),
]
