"""Figures: excess risk vs iteration, excess share vs tokens (log-log), attention mass per noise level, and
generated tokens in the plane of the first two centres."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure


def excess_vs_iteration(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, c in enumerate(d["excess"]):
        ax.plot(d["steps"], np.clip(c, 1e-6, None), c="C0", alpha=0.7, label="trained attention" if i == 0 else None)
    for i, c in enumerate(d["control"]):
        ax.plot(d["steps"], np.clip(c, 1e-6, None), c="C3", alpha=0.7, ls="--", label="W = 0 (global mean)" if i == 0 else None)
    ax.set(yscale="log", xlabel="iteration", ylabel="train loss - Bayes loss (mean over t)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def excess_vs_tokens(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    N = np.array(d["N"], dtype=float)
    for i, s in enumerate(d["share"]):
        ax.plot(N, s, "-o", c="C0", ms=3, alpha=0.7, label="trained" if i == 0 else None)
    for i, s in enumerate(d["control"]):
        ax.plot(d["control_N"], s, "--s", c="C3", ms=3, alpha=0.7, label="W = 0" if i == 0 else None)
    ref = np.array(d["share"]).mean(0)[0] * N[0] / N
    ax.plot(N, ref, "k:", label="slope -1")
    ax.set(xscale="log", yscale="log", xlabel="tokens per data point N", ylabel="excess / untrained excess")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def attention_mass(d: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    t = np.array(d["t"])
    for i, m in enumerate(d["mass"]):
        axes[0].plot(t, m, "-o", c="C0", ms=3, alpha=0.7, label="trained" if i == 0 else None)
    axes[0].plot(t, d["uniform"], "k:", label="uniform attention")
    axes[0].set(xlabel="t", ylabel="attention mass on own component", ylim=(0, 1.05))
    axes[0].legend(fontsize=7)
    for i, (a, b) in enumerate(zip(d["rel_err"], d["rel_err_global"])):
        axes[1].plot(t, a, "-o", c="C0", ms=3, alpha=0.7, label="trained" if i == 0 else None)
        axes[1].plot(t, b, "--s", c="C3", ms=3, alpha=0.7, label="W = 0" if i == 0 else None)
    axes[1].set(xlabel="t", ylabel="||eps_hat - eps*|| / ||eps*||", yscale="log")
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def generated_tokens(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    x = np.array(d["x"]).reshape(-1, 2)
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4)
    r = d["r"]
    ax.scatter([r, 0, 0], [0, r, 0], marker="x", c="k", label="mu_1, mu_2, others (origin)")
    ax.set(xlabel="e_1 coordinate", ylabel="e_2 coordinate", title="generated tokens (seed 0)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"excess_vs_iteration": excess_vs_iteration, "excess_vs_tokens": excess_vs_tokens,
         "attention_mass": attention_mass, "generated_tokens": generated_tokens}
