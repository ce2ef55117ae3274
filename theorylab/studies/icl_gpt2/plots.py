"""The slides' GPT-2 figures, redrawn from the numbers the claims return (one function per figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure


def attention_layers(d: dict, path) -> None:  # slide Figs. 11-13
    mean, std, s = np.array(d["mean"]), np.array(d["std"]), np.array(d["steps"])
    n = mean.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    for l, ax in enumerate(axes[0]):
        ax.plot(s, mean[l], label="same pattern as the query")
        ax.fill_between(s, mean[l] - std[l], mean[l] + std[l], alpha=0.2)
        ax.plot(s, 1 - mean[l], ls="--", label="other contexts and the query")
        ax.set(xlabel="AdamW step", ylabel="attention of the query (head mean)", ylim=(0, 1.02),
               title=f"layer {l + 1}")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)


def neuron_layers(d: dict, path) -> None:  # slide Figs. 14-16
    layers = d["layers"]
    n = len(layers)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.6 * (n + 1), 3.4), squeeze=False)
    for l, ax in enumerate(axes[0][:n]):
        for stage, marker in (("init", "x"), ("final", "o")):
            e = layers[l][stage]
            sign = np.array(e["a_sign"])
            for s, color in ((1, "tab:red"), (-1, "tab:blue")):
                sel = sign == s
                ax.scatter(np.array(e["label_angle"])[sel], np.array(e["label_norm"])[sel], marker=marker, c=color,
                           s=10, alpha=0.6, label=f"{stage}, a_i {'>' if s > 0 else '<'} 0")
        ax.set(xlabel="angle of label part to q (rad)", ylabel="label-part norm", xlim=(0, np.pi), title=f"layer {l + 1}")
    axes[0][0].legend(fontsize=6)
    ax = axes[0][n]
    for l, ys in enumerate(d["median_norm"]):
        ax.plot(d["steps"], ys, label=f"layer {l + 1}")
    ax.set(xlabel="AdamW step", ylabel="median label-part norm", title="over training (seed mean)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _log_curves(ax, lengths, curves, eps):
    for name, ys in curves.items():
        ax.plot(lengths, np.maximum(np.array(ys), 1e-4), marker="o", ms=3, label=name)
    ax.axhline(eps, ls="--", c="k", lw=1, label="own error on training tasks")
    ax.set_yscale("log")
    ax.set_xlabel("test prompt length l_ts")
    ax.set_ylabel("classification error (floored at 1e-4)")


def ood_error_vs_S1(d: dict, path) -> None:  # slide Fig. 17
    fig, ax = plt.subplots(figsize=(5, 3.8))
    _log_curves(ax, d["lengths"], d["curves"], d["eps"])
    ax.set_title("GPT-2: OOD error vs S1")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def error_vs_alpha_test(d: dict, path) -> None:  # slide Fig. 18
    fig, ax = plt.subplots(figsize=(5, 3.8))
    _log_curves(ax, d["lengths"], d["curves"], d["eps"])
    ax.set_title("GPT-2: error vs alpha' (unseen in-domain and OOD)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def pruning(d: dict, path) -> None:  # slide Figs. 19-20
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    R = np.array(d["rates"]) * 100
    ax = axes[0]
    for how, style in (("smallest", "-o"), ("largest", "-s"), ("random", "--^")):
        ax.plot(R, d["error"][how], style, ms=4, label=f"prune {how} |W_O row|" if how != "random" else "random")
    ax.axhline(d["base_error"], c="k", lw=1, ls=":", label="no pruning")
    ax.set(xlabel="pruning rate R (%) of every layer's MLP neurons", ylabel="OOD classification error",
           title="Fig. 19: magnitude vs random pruning")
    ax.legend(fontsize=7)
    twin = ax.twinx()
    norms = np.array(d["sorted_norms"])
    twin.plot(np.arange(len(norms)) / len(norms) * 100, norms, c="gray", alpha=0.5)
    twin.set_ylabel("sorted |W_O row|, layer 1 (gray)")
    ax = axes[1]
    for a, ys in d["alpha_error"].items():
        ax.plot(np.array(d["alpha_rates"]) * 100, ys, "-o", ms=4, label=f"alpha'={a}")
    ax.set(xlabel="pruning rate R (%)", ylabel="OOD classification error", title="Fig. 20: magnitude pruning by alpha'")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def cot_vs_icl(d: dict, path) -> None:  # CoT paper slide Fig. 9 (spec C7), on GPT-2
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name, ys in d["curves"].items():
        ax.plot(d["lengths"], np.maximum(np.array(ys), 1e-4), marker="o", ms=3, label=name)
    ax.axhline(d["chance"], ls=":", c="k", lw=1, label="chance")
    ax.set(yscale="log", xlabel="test context examples l_ts", ylabel="error (floored at 1e-4)",
           title="GPT-2: CoT vs ICL, with / without Condition 1")
    ax.legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"attention_layers": attention_layers, "neuron_layers": neuron_layers, "ood_error_vs_S1": ood_error_vs_S1,
         "error_vs_alpha_test": error_vs_alpha_test, "pruning": pruning, "cot_vs_icl": cot_vs_icl}
