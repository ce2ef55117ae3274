"""The slides' figures, redrawn from the numbers the claims return (one function per figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from theorylab.core.plots import save_figure


def attention_concentration(d: dict, path) -> None:  # slide Fig. 9
    fig, ax = plt.subplots(figsize=(5, 3.5))
    s = np.array(d["steps"])
    for key, label in (("ood", "OOD prompts"), ("id", "unseen in-domain prompts")):
        m, sd = np.array(d[f"{key}_mean"]), np.array(d[f"{key}_std"])
        ax.plot(s, m, label=label)
        ax.fill_between(s, m - sd, m + sd, alpha=0.2)
    ax.set(xlabel="SGD step", ylabel="attention on same-pattern contexts", ylim=(0, 1.02),
           title="Prop. 1: attention concentration")
    ax.legend()
    save_figure(fig, path)


def neuron_embeddings(d: dict, path) -> None:  # slide Figs. 10-11
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, part, ref in ((axes[0], "feature", "angle to mean IDR pattern"), (axes[1], "label", "angle to q")):
        for stage, marker in (("init", "x"), ("final", "o")):
            e = d[stage]
            sign = np.array(e["a_sign"])
            for s, color in ((1, "tab:red"), (-1, "tab:blue")):
                sel = sign == s
                ax.scatter(np.array(e[f"{part}_angle"])[sel], np.array(e[f"{part}_norm"])[sel], marker=marker,
                           c=color, s=18, alpha=0.7, label=f"{stage}, a_i {'>' if s > 0 else '<'} 0")
        ax.set(xlabel=f"{ref} (rad)", ylabel="norm", title=f"{part} part of W_O W_V rows", xlim=(0, np.pi))
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def _log_curves(ax, lengths, curves, eps):
    for name, ys in curves.items():
        ax.plot(lengths, np.maximum(np.array(ys), 1e-4), marker="o", ms=3, label=name)
    ax.axhline(eps, ls="--", c="k", lw=1, label="desired error")
    ax.set_yscale("log")
    ax.set_xlabel("test prompt length l_ts")
    ax.set_ylabel("classification error (floored at 1e-4)")


def ood_error_vs_S1(d: dict, path) -> None:  # slide Fig. 18
    fig, ax = plt.subplots(figsize=(5, 3.8))
    _log_curves(ax, d["lengths"], {f"S1={k}": v for k, v in d["curves"].items()}, d["eps"])
    ax.set_title("Thm 2: OOD error vs S1")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def error_vs_alpha_test(d: dict, path) -> None:  # slide Fig. 19
    fig, ax = plt.subplots(figsize=(5, 3.8))
    _log_curves(ax, d["lengths"], d["curves"], d["eps"])
    ax.set_title("error vs alpha' (in-domain and OOD)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def pruning(d: dict, path) -> None:  # slide Figs. 22-23
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    R = np.array(d["rates"]) * 100
    for metric, ax in (("loss", axes[0]), ("error", axes[1])):
        for how, style in (("smallest", "-o"), ("largest", "-s"), ("random", "--^")):
            ax.plot(R, d[metric][how], style, ms=4, label=f"prune {how}" if how != "random" else "random")
        ax.axhline(d[f"base_{metric}"], c="k", lw=1, ls=":", label="no pruning")
        ax.set(xlabel="pruning rate R (%)", ylabel="hinge risk" if metric == "loss" else "classification error")
    axes[0].legend(fontsize=7)
    twin = axes[0].twinx()
    norms = np.array(d["sorted_norms"])
    twin.plot(np.arange(len(norms)) / len(norms) * 100, norms, c="gray", alpha=0.5)
    twin.set_ylabel("sorted W_O row norm (gray)")
    axes[0].set_title("Thm 3: magnitude vs random pruning (OOD)")
    save_figure(fig, path)


PLOTS = {"attention_concentration": attention_concentration, "neuron_embeddings": neuron_embeddings,
         "ood_error_vs_S1": ood_error_vs_S1, "error_vs_alpha_test": error_vs_alpha_test, "pruning": pruning}
