"""The study's figures, drawn from the numbers the claims return (one function per figure; seed means with the
seeds themselves, a +-1 std band or error bars where the figure data records them)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import ERROR_BARS, STD_BAND, legend, log_ticks, mean_band, save_figure


def _note(spread, how: str = STD_BAND) -> str:
    return "mean over seeds" + (f"; {how}" if spread else "")


def phase_diagram(d: dict, path) -> None:  # poster Fig. 1(a)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    S = np.array(d["success"])  # [A, N]
    im = ax.imshow(S, origin="lower", aspect="auto", cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(range(len(d["Ns"])), d["Ns"])
    ax.set_yticks(range(len(d["alphas"])), [f"{a:.3f}" for a in d["alphas"]])
    # N* and a c alpha^-2 reference through the largest alpha's N*, in grid coordinates (log N interpolated)
    logN = np.log(np.array(d["Ns"], dtype=float))
    pos = lambda n: np.interp(np.log(n), logN, np.arange(len(logN)))  # noqa: E731
    a = np.array(d["alphas"])
    for j, seed in enumerate(np.array(d.get("n_star_seeds") or []).T):  # [S, A] per seed
        ax.plot([pos(n) for n in seed], range(len(a)), "o", c="tab:orange", ms=3, alpha=0.7,
                label="N* of each seed (last N when not reached)" if j == 0 else None)
    ax.plot([pos(n) for n in d["n_star"]], range(len(a)), "r-o", ms=4, label="mean N* over seeds (zero test error)")
    ref = d["n_star"][-1] * (a / a[-1]) ** -2
    ax.plot([pos(n) for n in ref], range(len(a)), "c--", label="reference: N ~ alpha_*^-2 (through the last point)")
    ax.set(xlabel="training samples N (count)", ylabel="alpha_* (realised share of\nlabel-relevant tokens)",
           title="Thm 1: success rate (test error 0)")
    fig.colorbar(im, ax=ax).set_label("share of seeds with zero test error (fraction)", fontsize=8)
    legend(ax, outside=False, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    save_figure(fig, path)


def iterations(d: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    s = np.array(d["steps"])
    std = d.get("probe_std")
    for i, (a, curve) in enumerate(zip(d["alphas"], d["probe_mean"])):
        mean_band(axes[0], s, curve, None if std is None else std[i], f"alpha_* = {a:.3f}", floor=0.0)
    axes[0].set(xlabel="SGD step (steps)", ylabel="probe test error (fraction)", title="error over training")
    legend(axes[0], _note(std))
    a, t = np.array(d["alphas"]), np.array(d["t_star"])
    for j, seed in enumerate(np.array(d.get("t_star_seeds") or []).T):
        axes[1].plot(a, seed, "o", c="tab:blue", ms=3, alpha=0.4, label="T* of each seed" if j == 0 else None)
    axes[1].plot(a, t, "o-", lw=2, label="mean T* over seeds")
    axes[1].plot(a, t[0] * (a / a[0]) ** -1.0, "--", label="reference: T ~ alpha_*^-1 (through the first point)")
    axes[1].set(xscale="log", yscale="log", xlabel="alpha_* (realised share, unitless)",
                ylabel="SGD steps to zero error (steps)", title="Thm 1: T* vs alpha_*")
    log_ticks(axes[1], a)
    legend(axes[1], "dots: each seed" if d.get("t_star_seeds") else "")
    save_figure(fig, path)


def attention(d: dict, path) -> None:  # poster Fig. 2(a)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    mean_band(ax, d["steps"], d["mean"], d["std"], "attention of S_* queries on S_*")
    ax.axhline(d["uniform"], c="k", ls=":", lw=1, label=f"uniform attention |S_*| / L = {d['uniform']:.3g}")
    ax.set(xlabel="SGD step (steps)", ylabel="summed attention (fraction)", ylim=(0, 1.02),
           title="Prop. 2: attention concentration")
    legend(ax, _note(True))
    save_figure(fig, path)


def _n_ticks(ax, Ns) -> None:
    ax.minorticks_off()
    ax.set_xticks(list(Ns), [str(n) for n in Ns])


def _sparsification(d: dict, path, which: str) -> None:  # poster Fig. 2(b)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    spread = d.get("spread") or {}
    for arm, curve in d["curves"].items():
        mean_band(ax, d["Ns"], curve, spread.get(arm), f"drop: {arm}", style="o-", floor=0.0, ms=3)
    ax.set(xscale="log", xlabel="training samples N (count)", ylabel="test error (fraction)",
           title=f"token sparsification ({which})")
    _n_ticks(ax, d["Ns"])
    legend(ax, _note(spread))
    save_figure(fig, path)


def _spurious(d: dict, path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for arm in ("kept", "dropped"):
        ax.errorbar(d["Ns"], d[arm], yerr=d[f"{arm}_std"], marker="o", capsize=3, label=f"spurious tokens {arm}")
    ax.set(xscale="log", xlabel="training samples N (count)", ylabel="test accuracy (fraction)", title=title)
    if len(d["Ns"]) == 1:  # one N: keep the point in the middle of the axis
        ax.set_xlim(d["Ns"][0] / 2, d["Ns"][0] * 2)
    _n_ticks(ax, d["Ns"])
    legend(ax, _note(True, ERROR_BARS))
    save_figure(fig, path)


PLOTS = {"phase_diagram": phase_diagram, "iterations": iterations, "attention": attention,
         "sparsification_irrelevant": lambda d, p: _sparsification(d, p, "irrelevant tokens"),
         "sparsification_noisy": lambda d, p: _sparsification(d, p, "large-noise tokens"),
         "spurious_synthetic": lambda d, p: _spurious(d, p, "spurious tokens (synthetic)"),
         "spurious_digits": lambda d, p: _spurious(d, p, "spurious marker patches (digits)")}
