"""The slides' GPT-2 figures, redrawn from the numbers the claims return (one function per figure; seed means with a
+-1 std band where the figure data records it)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import pruned_rows_panel, STD_BAND, legend, mean_band, save_figure

FLOOR = 1e-4
ERROR = f"classification error (fraction; floored at {FLOOR:g})"


def _note(spread) -> str:
    return "mean over seeds" + (f"; {STD_BAND}" if spread else "")


def attention_layers(d: dict, path) -> None:  # slide Figs. 11-13
    mean, std, s = np.array(d["mean"]), np.array(d["std"]), np.array(d["steps"])
    n = mean.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for l, ax in enumerate(axes[0]):
        mean_band(ax, s, mean[l], std[l], "same pattern as the query")
        mean_band(ax, s, 1 - mean[l], std[l], "other contexts and the query", style="--")
        ax.set(xlabel="AdamW step (steps)", ylabel="attention of the query\n(head mean, fraction)", ylim=(0, 1.02),
               title=f"layer {l + 1}")
        legend(ax, _note(True))
    save_figure(fig, path)


def neuron_layers(d: dict, path) -> None:  # slide Figs. 14-16
    layers = d["layers"]
    n = len(layers)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.2 * (n + 1), 3.8), squeeze=False)
    for l, ax in enumerate(axes[0][:n]):
        for stage, marker in (("init", "x"), ("final", "o")):
            e = layers[l][stage]
            sign = np.array(e["a_sign"])
            for s, color in ((1, "tab:red"), (-1, "tab:blue")):
                sel = sign == s
                ax.scatter(np.array(e["label_angle"])[sel], np.array(e["label_norm"])[sel], marker=marker, c=color,
                           s=10, alpha=0.6, label=f"{stage}, a_i {'>' if s > 0 else '<'} 0")
        ax.set(xlabel="angle of label part to q (rad)", ylabel="label-part norm (weight units)",
               title=f"layer {l + 1} (first seed)")
        legend(ax)
    ax = axes[0][n]
    std = d.get("median_norm_std")
    for l, ys in enumerate(d["median_norm"]):
        mean_band(ax, d["steps"], ys, None if std is None else std[l], f"layer {l + 1}")
    ax.set(xlabel="AdamW step (steps)", ylabel="median label-part norm (weight units)", title="over training")
    legend(ax, _note(std))
    save_figure(fig, path)


def _log_curves(ax, lengths, curves, eps, spread):
    for name, ys in curves.items():
        mean_band(ax, lengths, ys, (spread or {}).get(name), name, style="-o", floor=FLOOR, ms=3)
    ax.axhline(eps, ls="--", c="k", lw=1, label=f"reference: eps_hat = {eps:.3g}\n(the model's own error on its "
               "training\ntasks, same run; seed mean)")
    ax.set_yscale("log")
    ax.set(xlabel="test prompt length l_ts (context examples)", ylabel=ERROR)


def ood_error_vs_S1(d: dict, path) -> None:  # slide Fig. 17
    fig, ax = plt.subplots(figsize=(8.5, 4))
    _log_curves(ax, d["lengths"], d["curves"], d["eps"], d.get("spread"))
    ax.set_title("GPT-2: OOD error vs S1")
    legend(ax, _note(d.get("spread")), outside=True)
    save_figure(fig, path)


def error_vs_alpha_test(d: dict, path) -> None:  # slide Fig. 18
    fig, ax = plt.subplots(figsize=(8.5, 4))
    _log_curves(ax, d["lengths"], d["curves"], d["eps"], d.get("spread"))
    ax.set_title("GPT-2: error vs alpha'\n(unseen in-domain and OOD)", fontsize=10)
    legend(ax, _note(d.get("spread")), outside=True)
    save_figure(fig, path)


def pruning(d: dict, path) -> None:  # slide Figs. 19-20
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    R = np.array(d["rates"]) * 100
    ax = axes[0]
    err_std = d.get("error_std") or {}
    for how, style in (("smallest", "-o"), ("largest", "-s"), ("random", "--^")):
        mean_band(ax, R, d["error"][how], err_std.get(how), f"prune {how} |W_O row|" if how != "random" else
                  "prune random rows", style=style, floor=0.0, ms=4)
    ax.axhline(d["base_error"], c="k", lw=1, ls=":", label="no pruning (baseline)")
    ax.set(xlabel="pruning rate R (% of every layer's MLP neurons)", ylabel="OOD classification error (fraction)",
           title="Fig. 19: magnitude vs random pruning", xlim=(R.min(), R.max()))
    legend(ax, _note(err_std))
    ax = axes[1]
    a_std = d.get("alpha_error_std") or {}
    AR = np.array(d["alpha_rates"]) * 100
    for a, ys in d["alpha_error"].items():
        mean_band(ax, AR, ys, a_std.get(a), f"alpha'={a}", style="-o", floor=0.0, ms=4)
    ax.set(xlabel="pruning rate R (% of MLP neurons)", ylabel="OOD classification error (fraction)",
           title="Fig. 20: magnitude pruning by alpha'", xlim=(AR.min(), AR.max()))
    legend(ax, _note(a_std))
    pruned_rows_panel(axes[2], d["sorted_norms"], R.max(), "|W_O row| of layer 1, sorted (first seed)")
    save_figure(fig, path)


def cot_vs_icl(d: dict, path) -> None:  # CoT paper slide Fig. 9 (spec C7), on GPT-2
    fig, ax = plt.subplots(figsize=(7.5, 4))
    spread = d.get("spread") or {}
    for name, ys in d["curves"].items():
        mean_band(ax, d["lengths"], ys, spread.get(name), name, style="-o", floor=FLOOR, ms=3)
    ax.axhline(d["chance"], ls=":", c="k", lw=1, label=f"chance error 1 - 1/M = {d['chance']:.2f}")
    ax.set(yscale="log", xlabel="context examples in the test prompt l_ts (count)", ylabel=ERROR,
           title="GPT-2: CoT vs ICL, with / without Condition 1")
    legend(ax, _note(spread), outside=True)
    save_figure(fig, path)


PLOTS = {"attention_layers": attention_layers, "neuron_layers": neuron_layers, "ood_error_vs_S1": ood_error_vs_S1,
         "error_vs_alpha_test": error_vs_alpha_test, "pruning": pruning, "cot_vs_icl": cot_vs_icl}
