"""The figures, drawn from the numbers the claims return (one function per figure; the paper's were not seen,
so these follow the spec's protocol L1-L4). Seed means, with +-1 std over seeds as error bars or a band where the
figure data records it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.contract import O_EPS
from theorylab.core.plots import ERROR_BARS, STD_BAND, legend, mean_band, save_figure

MATS = ("W_Q", "W_K", "W_V")
SHOWN = 12  # singular values drawn: the decay past the first few is flat


def _note(spread, how: str = STD_BAND) -> str:
    return "mean over seeds" + (f"; {how}" if spread else "")


def spectra(d: dict, path) -> None:  # L1
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    for ax, w in zip(axes, MATS):
        m, sd = np.array(d[w]["mean"])[:SHOWN], np.array(d[w]["std"])[:SHOWN]
        i = np.arange(1, len(m) + 1)
        ax.errorbar(i, m, yerr=sd, fmt="-o", ms=3, capsize=2, label=f"sigma_i / sigma_1 of d{w}")
        ax.axhline(d["rel"], c="k", ls="--", lw=1, label=f"rank threshold: {d['rel']} sigma_1")
        ax.axvline(d["k_rel"] + 0.5, c="gray", lw=1, ls=":", label=f"k_rel = {d['k_rel']} (config)")
        ax.set(yscale="log", xlabel="singular value index i (count)", title=f"singular values of d{w}",
               xlim=(0.5, len(m) + 0.5))
        legend(ax, _note(True, ERROR_BARS) if ax is axes[0] else "")
    axes[0].set_ylabel("sigma_i / sigma_1 (unitless)")
    fig.suptitle(f"the first {SHOWN} singular values of the attention updates", fontsize=10)
    save_figure(fig, path)


def rank_vs_k(d: dict, path) -> None:  # L2
    ks = np.array(d["k"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for w in MATS:
        axes[0].errorbar(ks, d[w]["mean"], yerr=d[w]["std"], fmt="-o", ms=4, capsize=2, label=f"d{w}")
    axes[0].plot(ks, ks, "k--", lw=1, label="reference: rank = k_rel")
    axes[0].set(xlabel="label-relevant patterns k_rel (count)", ylabel=f"effective rank: #(sigma_i >= {d['rel']} "
                "sigma_1)", title="effective rank vs k_rel", xticks=ks)
    legend(axes[0], _note(True, ERROR_BARS))
    spread = False
    for k, ls in zip(ks, ("-", "--", ":", "-.")):
        for w, c in zip(MATS, ("tab:blue", "tab:orange", "tab:green")):
            s = np.array(d[w]["spectra"][str(k)])
            sd = (d[w].get("spectra_std") or {}).get(str(k))
            spread = spread or sd is not None
            mean_band(axes[1], np.arange(1, len(s) + 1), s, sd, f"d{w}, k_rel={k}", color=c, style=ls, marker="o",
                      ms=2)
    axes[1].axhline(d["rel"], c="k", lw=1, ls="--", label=f"rank threshold: {d['rel']} sigma_1")
    axes[1].set(yscale="log", xlabel="singular value index i (count)", ylabel="sigma_i / sigma_1 (unitless)",
                title="spectra by k_rel")
    legend(axes[1], _note(spread), outside=True, ncol=1)
    save_figure(fig, path)


def wo_rows(d: dict, path) -> None:  # L4 (sorted row norms)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(d["norm"])) / len(d["norm"]) * 100
    std = d.get("std") or {}
    mean_band(ax, x, d["norm"], std.get("norms"), "final ||W_O[i]||")
    mean_band(ax, x, d["update"], std.get("update"), "update ||W_O[i] - W_O^(0)[i]||")
    mean_band(ax, x, d["init"], std.get("init"), "initial ||W_O^(0)[i]||", color="gray", style=":")
    ax.axvline(d["small_fraction"] * 100, c="k", ls="--", lw=1,
               label="small / large split (largest jump of the sorted norms; mean over seeds)")
    ax.set(xlabel="rows sorted by final norm (% of rows)", ylabel="row norm (weight units)", title="W_O rows")
    legend(ax, _note(std), outside=True)
    save_figure(fig, path)


def pruning(d: dict, path) -> None:  # L4 (pruning)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    R = np.array(d["R"])
    for ax, key, name in ((axes[0], "error", "test error (fraction)"), (axes[1], "loss", "test hinge risk (unitless)")):
        mean_band(ax, R, d[key], d.get(f"{key}_std"), "prune a fraction R of the large rows (largest first)",
                  style="-s")
        if key == "loss":
            ax.plot(R, R, "k:", lw=1, label="reference: rise = R")
            ax.axhline(d["bound"], c="tab:red", ls=":", lw=1,
                       label=f"criterion (all small rows pruned): hinge <= {O_EPS:g} x eps_hat = {d['bound']:.3g} "
                       "(eps_hat: unpruned hinge risk, same run)")
        ax.axhline(d[f"base_{key}"], c="gray", lw=1, label="unpruned")
        ax.axhline(d[f"small_{key}"], c="tab:green", ls="--", lw=1, label="all small rows pruned")
        ax.set(xlabel="pruned fraction R of the large rows (fraction)", ylabel=name)
        ax.set_ylim(bottom=0, top=None if ax.get_ylim()[1] > 0 else 1)  # an error or a risk is never negative
        legend(ax, _note(d.get(f"{key}_std")), outside=key == "loss")
    save_figure(fig, path)


def truncation(d: dict, path) -> None:  # L3
    fig, ax = plt.subplots(figsize=(8, 3.8))
    r = np.array(d["ranks"])
    spread = False
    for k, c in d["curves"].items():
        spread = spread or "std" in c
        line = mean_band(ax, r, c["mean"], c.get("std"), f"k_rel = {k}", style="-o", floor=1e-4, ms=3)
        ax.axvline(int(k), c=line.get_color(), ls=":", lw=1, label=f"r = k_rel = {k}")
        ax.axhline(c["bound"], c=line.get_color(), ls="--", lw=0.8,
                   label=f"criterion for k_rel = {k}: {O_EPS:g} x eps_hat = {c['bound']:.3g} (own untruncated model)")
    ax.set(yscale="log", xlabel="rank r of the truncated updates (count)",
           ylabel="test hinge risk (unitless; floored at 1e-4)", title="rank-r truncation of dW_Q, dW_K, dW_V",
           xticks=r)
    legend(ax, _note(spread), outside=True)
    save_figure(fig, path)


def lora(d: dict, path) -> None:  # LoRA from the start
    fig, ax = plt.subplots(figsize=(7, 3.8))
    std = d.get("loss_std") or {}
    for name, ys in d["loss"].items():
        mean_band(ax, d["steps"], ys, std.get(name), f"{name} (test hinge {d['hinge'][name]:.4f})")
    ax.set(xlabel="SGD step (steps)", ylabel="training hinge loss (minibatch; unitless)", title="full vs LoRA training")
    legend(ax, _note(std))
    save_figure(fig, path)


PLOTS = {"spectra": spectra, "rank_vs_k": rank_vs_k, "wo_rows": wo_rows, "pruning": pruning, "truncation": truncation,
         "lora": lora}
