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


def _log_curves(ax, lengths, curves, eps, spread=None):
    """Error against test prompt length, one line per curve with its seed spread (mean +- std) shaded where the
    figure data has it, and the claim's criterion line."""
    floor = 1e-4  # a zero error would vanish on the log axis
    for name, ys in curves.items():
        ys = np.maximum(np.array(ys), floor)
        line, = ax.plot(lengths, ys, marker="o", ms=3, label=name)
        sd = (spread or {}).get(name)
        if sd is not None and np.any(np.array(sd) > 0):
            sd = np.array(sd)
            ax.fill_between(lengths, np.maximum(ys - sd, floor), ys + sd, color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(eps, ls="--", c="k", lw=1, label=f"criterion: 2 x eps_hat = {eps:.3g}")
    ax.set_yscale("log")
    ax.set_xlim(min(lengths), max(lengths))
    ax.set_xlabel("test prompt length l_ts")
    ax.set_ylabel(f"classification error (floored at {floor:g})")


def _spread_note(spread) -> str:
    return "; shaded: +-1 std over seeds" if spread else ""


def ood_error_vs_S1(d: dict, path) -> None:  # slide Fig. 18
    fig, ax = plt.subplots(figsize=(5, 3.8))
    spread = {f"S1={k}": v for k, v in (d.get("spread") or {}).items()}
    _log_curves(ax, d["lengths"], {f"S1={k}": v for k, v in d["curves"].items()}, d["eps"], spread)
    ax.set_title("Thm 2: OOD error vs S1" + _spread_note(spread), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves, not over them
    save_figure(fig, path)


def error_vs_alpha_test(d: dict, path) -> None:  # slide Fig. 19
    fig, ax = plt.subplots(figsize=(5.5, 4))
    _log_curves(ax, d["lengths"], d["curves"], d["eps"], d.get("spread"))
    ax.set_title("OOD error vs test prompt length, by alpha'", fontsize=10)
    ax.legend(fontsize=7, title="mean over seeds" + _spread_note(d.get("spread")), title_fontsize=7)
    save_figure(fig, path)


PRUNE_STYLES = (("smallest", "-o", "prune smallest-norm rows"), ("smallest_balanced", "-.d", "smallest, sign-balanced"),
                ("largest", "-s", "prune largest-norm rows"), ("random", "--^", "prune random rows"))


def pruning(d: dict, path) -> None:  # slide Figs. 22-23
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    R = np.array(d["rates"]) * 100
    for metric, ax in (("loss", axes[0]), ("error", axes[1])):
        for how, style, label in PRUNE_STYLES:
            if how not in d[metric]:
                continue
            ys = np.array(d[metric][how])
            line, = ax.plot(R, ys, style, ms=4, label=label)
            sd = (d.get(f"{metric}_std") or {}).get(how)
            if sd is not None:  # seed spread of the hinge risk
                ax.fill_between(R, ys - np.array(sd), ys + np.array(sd), color=line.get_color(), alpha=0.08, lw=0)
        ax.axhline(d[f"base_{metric}"], c="k", lw=1, ls=":", label="no pruning (baseline)")
        ax.set(xlabel="pruning rate R (% of W_O rows)", xlim=(R.min(), R.max()),
               ylabel="hinge risk (OOD)" if metric == "loss" else "classification error (OOD)")
        ax.legend(fontsize=7)
    axes[0].set_title("Thm 3: magnitude vs random pruning" + ("; shaded: +-1 std" if d.get("loss_std") else ""),
                      fontsize=10)
    axes[1].set_title("error after pruning (mean over seeds)", fontsize=10)
    norms = np.array(d["sorted_norms"])
    rank = (np.arange(len(norms)) + 0.5) / len(norms) * 100
    axes[2].plot(rank, norms, c="gray", label="W_O row norms, sorted")
    axes[2].axvspan(0, R.max(), color="C0", alpha=0.1, label=f"smallest rows pruned up to R = {R.max():g}%")
    axes[2].set(xlabel="row rank by norm (% of rows)", ylabel="row norm", xlim=(0, 100),
                title="which rows a rate R removes")
    axes[2].legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"attention_concentration": attention_concentration, "neuron_embeddings": neuron_embeddings,
         "ood_error_vs_S1": ood_error_vs_S1, "error_vs_alpha_test": error_vs_alpha_test, "pruning": pruning}
