"""Figures: excess risk vs iteration, excess share vs tokens (log-log), attention mass per noise level, and
generated tokens in the plane of the first two centres. Every per-seed figure draws each seed thin and their
mean thick (core.plots.seed_lines)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import SEED_LINES, legend, log_ticks, save_figure, seed_lines

T_LABEL = "noise level t (diffusion step)"


def excess_vs_iteration(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    seed_lines(ax, d["steps"], np.clip(d["excess"], 1e-6, None), "trained attention", color="C0")
    seed_lines(ax, d["steps"], np.clip(d["control"], 1e-6, None), "control: W = 0 (global mean)", color="C3",
               style="--")
    ax.set(yscale="log", xlabel="training iteration (steps)",
           ylabel="train loss - Bayes loss\n(squared error, mean over t)", title="excess risk over training")
    legend(ax, SEED_LINES)
    save_figure(fig, path)


def excess_vs_tokens(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    N = np.array(d["N"], dtype=float)
    mean = seed_lines(ax, N, d["share"], "trained", color="C0", style="-o", ms=3)
    seed_lines(ax, d["control_N"], d["control"], "control: W = 0", color="C3", style="--s", ms=3)
    ref = np.array(mean.get_ydata())[0] * N[0] / N
    ax.plot(N, ref, "k:", label="reference: slope -1 (rate 1/N), through the mean's first point")
    ax.set(xscale="log", yscale="log", xlabel="tokens per data point N (count)",
           ylabel="excess / untrained excess (unitless)", title="excess share vs tokens")
    log_ticks(ax, N)
    legend(ax, SEED_LINES)
    save_figure(fig, path)


def attention_mass(d: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    t = np.array(d["t"])
    seed_lines(axes[0], t, d["mass"], "trained", color="C0", style="-o", ms=3)
    axes[0].plot(t, d["uniform"], "k:", label="uniform attention (reference)")
    axes[0].set(xlabel=T_LABEL, ylabel="attention mass on own component\n(fraction)", ylim=(0, 1.05),
                title="attention on the own component")
    legend(axes[0], SEED_LINES)
    seed_lines(axes[1], t, d["rel_err"], "trained", color="C0", style="-o", ms=3)
    seed_lines(axes[1], t, d["rel_err_global"], "control: W = 0", color="C3", style="--s", ms=3)
    axes[1].set(xlabel=T_LABEL, ylabel="||eps_hat - eps*|| / ||eps*|| (unitless)", yscale="log",
                title="denoiser error")
    legend(axes[1], SEED_LINES)
    save_figure(fig, path)


def generated_tokens(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    x = np.array(d["x"]).reshape(-1, 2)
    ax.scatter(x[:, 0], x[:, 1], s=3, alpha=0.4, label=f"generated tokens ({len(x)})")
    r = d["r"]
    ax.scatter([r, 0, 0], [0, r, 0], marker="x", c="k", label="centres mu_1, mu_2; others at the origin")
    ax.set(xlabel="e_1 coordinate (data units)", ylabel="e_2 coordinate (data units)",
           title="generated tokens (seed 0)")
    legend(ax)
    save_figure(fig, path)


PLOTS = {"excess_vs_iteration": excess_vs_iteration, "excess_vs_tokens": excess_vs_tokens,
         "attention_mass": attention_mass, "generated_tokens": generated_tokens}
