"""The figures, drawn from the numbers the claims return (one function per figure; the paper's were not seen,
so these follow the spec's protocol L1-L4)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure

MATS = ("W_Q", "W_K", "W_V")


def spectra(d: dict, path) -> None:  # L1
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, w in zip(axes, MATS):
        m, sd = np.array(d[w]["mean"]), np.array(d[w]["std"])
        i = np.arange(1, len(m) + 1)
        ax.errorbar(i, m, yerr=sd, fmt="-o", ms=3)
        ax.axhline(d["rel"], c="k", ls="--", lw=1, label=f"{d['rel']} sigma_1")
        ax.axvline(d["k_rel"] + 0.5, c="gray", lw=1, ls=":", label="k_rel")
        ax.set(yscale="log", xlabel="index i", title=f"singular values of d{w}", xlim=(0.5, min(len(m), 12) + 0.5))
    axes[0].set_ylabel("sigma_i / sigma_1")
    axes[0].legend(fontsize=7)
    save_figure(fig, path)


def rank_vs_k(d: dict, path) -> None:  # L2
    ks = np.array(d["k"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for w in MATS:
        axes[0].errorbar(ks, d[w]["mean"], yerr=d[w]["std"], fmt="-o", ms=4, label=f"d{w}")
    axes[0].plot(ks, ks, "k--", lw=1, label="rank = k_rel")
    axes[0].set(xlabel="label-relevant patterns k_rel", ylabel=f"#(sigma_i >= {d['rel']} sigma_1)",
                title="effective rank vs k_rel")
    axes[0].legend(fontsize=7)
    for k, ls in zip(ks, ("-", "--", ":", "-.")):
        for w, c in zip(MATS, ("tab:blue", "tab:orange", "tab:green")):
            s = np.array(d[w]["spectra"][str(k)])
            axes[1].plot(np.arange(1, len(s) + 1), s, ls, c=c, marker="o", ms=2, label=f"d{w}, k_rel={k}")
    axes[1].axhline(d["rel"], c="k", lw=1, ls="--")
    axes[1].set(yscale="log", xlabel="index i", ylabel="sigma_i / sigma_1 (mean over seeds)", title="spectra by k_rel")
    axes[1].legend(fontsize=6, ncol=2)
    save_figure(fig, path)


def wo_rows(d: dict, path) -> None:  # L4 (sorted row norms)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    x = np.arange(len(d["norm"])) / len(d["norm"]) * 100
    ax.plot(x, d["norm"], label="final ||W_O[i]||")
    ax.plot(x, d["update"], label="||W_O[i] - W_O^(0)[i]||")
    ax.plot(x, d["init"], c="gray", ls=":", label="initial norm")
    ax.axvline(d["small_fraction"] * 100, c="k", ls="--", lw=1, label="small / large split")
    ax.set(xlabel="rows sorted by final norm (%)", ylabel="norm (mean over seeds)", title="W_O rows")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def pruning(d: dict, path) -> None:  # L4 (pruning)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    R = np.array(d["R"])
    for ax, key, name in ((axes[0], "error", "test error"), (axes[1], "loss", "hinge risk")):
        ax.plot(R, d[key], "-s", label="prune a fraction R of the large rows (largest first)")
        if key == "loss":
            ax.plot(R, R, "k:", lw=1, label="rise = R")
            ax.axhline(d["bound"], c="tab:red", ls=":", lw=1, label="2 x eps_hat")
        ax.axhline(d[f"base_{key}"], c="gray", lw=1, label="unpruned")
        ax.axhline(d[f"small_{key}"], c="tab:green", ls="--", lw=1, label="all small rows pruned")
        ax.set(xlabel="R", ylabel=name)
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def truncation(d: dict, path) -> None:  # L3
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    r = np.array(d["ranks"])
    for k, c in d["curves"].items():
        line, = ax.plot(r, np.maximum(c["mean"], 1e-4), "-o", ms=3, label=f"k_rel = {k}")
        ax.axvline(int(k), c=line.get_color(), ls=":", lw=1)
        ax.axhline(c["bound"], c=line.get_color(), ls="--", lw=0.8)
    ax.set(yscale="log", xlabel="rank r of the truncated updates", ylabel="test hinge risk (floored at 1e-4)",
           title="rank-r truncation of dW_Q, dW_K, dW_V")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def lora(d: dict, path) -> None:  # LoRA from the start
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, ys in d["loss"].items():
        ax.plot(d["steps"], ys, label=f"{name} (test hinge {d['hinge'][name]:.4f})")
    ax.set(xlabel="SGD step", ylabel="training hinge loss (minibatch)", title="full vs LoRA training")
    ax.legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"spectra": spectra, "rank_vs_k": rank_vs_k, "wo_rows": wo_rows, "pruning": pruning, "truncation": truncation,
         "lora": lora}
