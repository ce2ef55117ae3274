"""The slides' figures (C1-C8), redrawn from the numbers the claims return (one function per figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure

FLOOR = 1e-4
NAMES = {"attn_ss": "same TSR, same step", "attn_sd": "same TSR, diff. step", "attn_ds": "diff. TSR, same step",
         "attn_dd": "diff. TSR, diff. step"}
TITLES = {"alpha": "alpha' sweep", "p": "tau^f sweep (p^K)", "rho": "rho^f sweep"}


def _log_panel(ax, lengths, curves: dict, level: float) -> None:
    for name, ys in curves.items():
        ax.plot(lengths, np.maximum(np.array(ys), FLOOR), marker="o", ms=3, label=name)
    ax.axhline(level, ls="--", c="k", lw=1, label="figure level")
    ax.set(yscale="log", xlabel="number of context examples l_ts", ylabel=f"error (floored at {FLOOR:g})")
    ax.legend(fontsize=7)


def _sweeps(d: dict, path, kind: str) -> None:
    panels = d["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        _log_panel(ax, d["lengths"], curves, d["level"])
        ax.set_title(f"{kind}: {TITLES.get(name, name)}")
    save_figure(fig, path)


def cot_vs_length(d: dict, path) -> None:  # slide Figs. 3-5 (C1-C3)
    _sweeps(d, path, "CoT")


def icl_vs_length(d: dict, path) -> None:  # slide Figs. 6-8 (C4-C6)
    _sweeps(d, path, "ICL")


def cot_vs_icl(d: dict, path) -> None:  # slide Fig. 9 (C7)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    _log_panel(ax, d["lengths"], d["curves"], d["level"])
    ax.set_title("CoT vs ICL, with and without Condition 1")
    save_figure(fig, path)


def attention_dynamics(d: dict, path) -> None:  # slide Fig. 10 (C8)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    s = np.array(d["steps"])
    for key in d["categories"]:
        m, sd = np.array(d["mean"][key]), np.array(d["std"][key])
        axes[0].plot(s, m, label=NAMES.get(key, key))
        axes[0].fill_between(s, m - sd, m + sd, alpha=0.2)
    for t, style, label in ((d["t_pos"], ":", "positional stage done"), (d["t_pat"], "--", "pattern stage done")):
        if t is not None:
            axes[0].axvline(t, ls=style, c="gray", lw=1, label=label)
    axes[0].set(xlabel="SGD iteration", ylabel="attention mass", ylim=(0, 1.02), title="attention by category")
    axes[0].legend(fontsize=7)
    for k, ys in d["by_step"].items():
        axes[1].plot(s, ys, label=f"same TSR, same step, k={k}")
    twin = axes[1].twinx()
    twin.plot(s, d["block_positional"], c="gray", ls=":", label="W_K^T W_Q positional contrast")
    twin.plot(s, d["block_pattern"], c="k", ls="--", label="W_K^T W_Q pattern contrast")
    twin.set_ylabel("block contrast (gray / black)")
    twin.legend(fontsize=7, loc="center right")
    axes[1].set(xlabel="SGD iteration", ylabel="attention mass", ylim=(0, 1.02), title="per step, and W_K^T W_Q blocks")
    axes[1].legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


PLOTS = {"cot_vs_length": cot_vs_length, "icl_vs_length": icl_vs_length, "cot_vs_icl": cot_vs_icl,
         "attention_dynamics": attention_dynamics}
