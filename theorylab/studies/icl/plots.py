"""The slides' figures, redrawn from the numbers the claims return (one function per figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from theorylab.core.contract import O_EPS
from theorylab.core.plots import pruned_rows_panel, STD_BAND, legend, mean_band, save_figure


def attention_concentration(d: dict, path) -> None:  # slide Fig. 9
    fig, ax = plt.subplots(figsize=(5, 3.5))
    s = np.array(d["steps"])
    for key, label in (("ood", "OOD prompts"), ("id", "unseen in-domain prompts")):
        mean_band(ax, s, d[f"{key}_mean"], d[f"{key}_std"], label)
    ax.set(xlabel="SGD step (steps)", ylabel="attention on same-pattern contexts\n(fraction of attention)",
           ylim=(0, 1.02), title="Prop. 1: attention concentration")
    legend(ax, STD_BAND)
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
        ax.set(xlabel=f"{ref} (rad)", ylabel="row norm (weight units)", title=f"{part} part of W_O W_V rows")
    legend(axes[1])
    fig.suptitle("neuron embeddings of the first seed, before (x) and after (o) training", fontsize=10)
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
    ax.axhline(eps, ls="--", c="k", lw=1, label=f"criterion: {O_EPS:g} x eps_hat = {eps:.3g}\n(eps_hat: the model's "
               "own error on its\ntraining tasks, same run; seed mean)")
    ax.set_yscale("log")
    ax.set_xlim(min(lengths), max(lengths))
    ax.set_xlabel("test prompt length l_ts (context examples)")
    ax.set_ylabel(f"classification error (fraction; floored at {floor:g})")


def _spread_note(spread) -> str:
    return f"; {STD_BAND}" if spread else ""


def ood_error_vs_S1(d: dict, path) -> None:  # slide Fig. 18
    fig, ax = plt.subplots(figsize=(8.5, 4))
    spread = {f"S1={k}": v for k, v in (d.get("spread") or {}).items()}
    _log_curves(ax, d["lengths"], {f"S1={k}": v for k, v in d["curves"].items()}, d["eps"], spread)
    ax.set_title("Thm 2: OOD error vs test prompt length, by S1", fontsize=10)
    legend(ax, "mean over seeds" + _spread_note(spread), outside=True)  # beside the curves, not over them
    save_figure(fig, path)


def error_vs_alpha_test(d: dict, path) -> None:  # slide Fig. 19
    fig, ax = plt.subplots(figsize=(8.5, 4))
    _log_curves(ax, d["lengths"], d["curves"], d["eps"], d.get("spread"))
    ax.set_title("OOD error vs test prompt length, by alpha'", fontsize=10)
    legend(ax, "mean over seeds" + _spread_note(d.get("spread")), outside=True)
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
            if sd is not None:  # seed spread
                ax.fill_between(R, ys - np.array(sd), ys + np.array(sd), color=line.get_color(), alpha=0.08, lw=0)
        ax.axhline(d[f"base_{metric}"], c="k", lw=1, ls=":", label="no pruning (baseline)")
        ax.set(xlabel="pruning rate R (% of W_O rows)", xlim=(R.min(), R.max()),
               ylabel="hinge risk on OOD prompts (unitless)" if metric == "loss"
               else "classification error on OOD prompts (fraction)")
        legend(ax, "mean over seeds" + (f"; {STD_BAND}" if d.get(f"{metric}_std") else ""))
    axes[0].set_title("Thm 3: magnitude vs random pruning", fontsize=10)
    axes[1].set_title("error after pruning", fontsize=10)
    pruned_rows_panel(axes[2], d["sorted_norms"], R.max(), "W_O row norms, sorted (mean over seeds)")
    save_figure(fig, path)


PLOTS = {"attention_concentration": attention_concentration, "neuron_embeddings": neuron_embeddings,
         "ood_error_vs_S1": ood_error_vs_S1, "error_vs_alpha_test": error_vs_alpha_test, "pruning": pruning}
