"""The study's figures, drawn from the numbers the claims return (one function per figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure


def phase_diagram(d: dict, path) -> None:  # poster Fig. 1(a)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    S = np.array(d["success"])  # [A, N]
    im = ax.imshow(S, origin="lower", aspect="auto", cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(range(len(d["Ns"])), d["Ns"])
    ax.set_yticks(range(len(d["alphas"])), [f"{a:.3f}" for a in d["alphas"]])
    # N* and a c alpha^-2 reference through the largest alpha's N*, in grid coordinates (log N interpolated)
    logN = np.log(np.array(d["Ns"], dtype=float))
    pos = lambda n: np.interp(np.log(n), logN, np.arange(len(logN)))  # noqa: E731
    a = np.array(d["alphas"])
    ax.plot([pos(n) for n in d["n_star"]], range(len(a)), "r-o", ms=4, label="mean N* (zero test error)")
    ref = d["n_star"][-1] * (a / a[-1]) ** -2
    ax.plot([pos(n) for n in ref], range(len(a)), "c--", label="alpha_*^-2 (through the last point)")
    ax.set(xlabel="training samples N", ylabel="alpha_* (realised)", title="Thm 1: success rate (test error 0)")
    ax.legend(fontsize=7, loc="upper right")
    fig.colorbar(im, ax=ax)
    save_figure(fig, path)


def iterations(d: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    s = np.array(d["steps"])
    for a, curve in zip(d["alphas"], d["probe_mean"]):
        axes[0].plot(s, curve, label=f"alpha_* {a:.3f}")
    axes[0].set(xlabel="SGD step", ylabel="probe test error", title="error over training")
    axes[0].legend(fontsize=7)
    a, t = np.array(d["alphas"]), np.array(d["t_star"])
    axes[1].loglog(a, t, "o-", label="mean T*")
    axes[1].loglog(a, t[0] * (a / a[0]) ** -1.0, "--", label="alpha_*^-1")
    axes[1].set(xlabel="alpha_*", ylabel="iterations to zero error", title="Thm 1: T* vs alpha_*")
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def attention(d: dict, path) -> None:  # poster Fig. 2(a)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    s, m, sd = np.array(d["steps"]), np.array(d["mean"]), np.array(d["std"])
    ax.plot(s, m, label="attention of S_* queries on S_*")
    ax.fill_between(s, m - sd, m + sd, alpha=0.2)
    ax.axhline(d["uniform"], c="k", ls=":", lw=1, label="uniform attention (alpha_*)")
    ax.set(xlabel="SGD step", ylabel="summed attention", ylim=(0, 1.02), title="Prop. 2: attention concentration")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _n_ticks(ax, Ns) -> None:
    ax.minorticks_off()
    ax.set_xticks(list(Ns), [str(n) for n in Ns])


def _sparsification(d: dict, path, which: str) -> None:  # poster Fig. 2(b)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arm, curve in d["curves"].items():
        ax.plot(d["Ns"], np.maximum(np.array(curve), 1e-3), "o-", ms=3, label=f"drop: {arm}")
    ax.set(xscale="log", yscale="log", xlabel="training samples N", ylabel="test error (floored at 1e-3)",
           title=f"token sparsification ({which})")
    _n_ticks(ax, d["Ns"])
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _spurious(d: dict, path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arm in ("kept", "dropped"):
        ax.errorbar(d["Ns"], d[arm], yerr=d[f"{arm}_std"], marker="o", capsize=3, label=f"spurious tokens {arm}")
    ax.set(xscale="log", xlabel="training samples N", ylabel="test accuracy", title=title)
    _n_ticks(ax, d["Ns"])
    ax.legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"phase_diagram": phase_diagram, "iterations": iterations, "attention": attention,
         "sparsification_irrelevant": lambda d, p: _sparsification(d, p, "irrelevant tokens"),
         "sparsification_noisy": lambda d, p: _sparsification(d, p, "large-noise tokens"),
         "spurious_synthetic": lambda d, p: _spurious(d, p, "spurious tokens (synthetic)"),
         "spurious_digits": lambda d, p: _spurious(d, p, "spurious marker patches (digits)")}
