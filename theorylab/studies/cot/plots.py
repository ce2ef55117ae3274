"""The slides' figures (C1-C8), redrawn from the numbers the claims return (one function per figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.contract import STAY_SMALL
from theorylab.core.plots import STD_BAND, legend, mean_band, save_figure

FLOOR = 1e-4
NAMES = {"attn_ss": "same TSR, same step", "attn_sd": "same TSR, diff. step", "attn_ds": "diff. TSR, same step",
         "attn_dd": "diff. TSR, diff. step"}
TITLES = {"alpha": "alpha' sweep", "p": "tau^f sweep (p^K)", "rho": "rho^f sweep"}


def _log_panel(ax, lengths, curves: dict, level: float, spread: dict | None) -> None:
    for name, ys in curves.items():
        mean_band(ax, lengths, ys, (spread or {}).get(name), name, style="-o", floor=FLOOR, ms=3)
    ax.axhline(level, ls="--", c="k", lw=1,
               label=f"criterion level: {STAY_SMALL:g} x chance error (same run) = {level:.3g}")
    ax.set(yscale="log", xlabel="context examples in the test prompt l_ts (count)",
           ylabel=f"test error (fraction; floored at {FLOOR:g})")
    legend(ax, "mean over seeds" + (f"; {STD_BAND}" if spread else ""))


def _sweeps(d: dict, path, kind: str) -> None:
    panels = d["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        _log_panel(ax, d["lengths"], curves, d["level"], (d.get("spread") or {}).get(name))
        ax.set_title(f"{kind}: {TITLES.get(name, name)}")
    save_figure(fig, path)


def cot_vs_length(d: dict, path) -> None:  # slide Figs. 3-5 (C1-C3)
    _sweeps(d, path, "CoT")


def icl_vs_length(d: dict, path) -> None:  # slide Figs. 6-8 (C4-C6)
    _sweeps(d, path, "ICL")


def cot_vs_icl(d: dict, path) -> None:  # slide Fig. 9 (C7)
    fig, ax = plt.subplots(figsize=(5.4, 4.2))
    _log_panel(ax, d["lengths"], d["curves"], d["level"], d.get("spread"))
    ax.set_title("CoT vs ICL, with and without Condition 1")
    save_figure(fig, path)


def attention_dynamics(d: dict, path) -> None:  # slide Fig. 10 (C8)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    s = np.array(d["steps"])
    for key in d["categories"]:
        mean_band(axes[0], s, d["mean"][key], d["std"][key], NAMES.get(key, key))
    for t, style, label in ((d["t_pos"], ":", "positional stage done"), (d.get("t_pat"), "--", "pattern stage done")):
        if t is not None and t <= s[-1]:  # a stage not done within training has no line
            axes[0].axvline(t, ls=style, c="gray", lw=1, label=f"{label} (iteration {t:g}, same run)")
    axes[0].set(xlabel="SGD iteration (steps)", ylabel="attention mass (fraction)", ylim=(0, 1.02),
                title="attention by category")
    legend(axes[0], f"mean over seeds; {STD_BAND}")
    for k, ys in d["by_step"].items():
        mean_band(axes[1], s, ys, (d.get("by_step_std") or {}).get(k), f"same TSR, same step, k={k}")
    axes[1].set(xlabel="SGD iteration (steps)", ylabel="attention mass (fraction)", ylim=(0, 1.02),
                title="same TSR, same step, by step k")
    legend(axes[1], "mean over seeds" + (f"; {STD_BAND}" if "by_step_std" in d else ""))
    mean_band(axes[2], s, d["block_positional"], d.get("block_positional_std"), "positional contrast", color="gray",
              style=":")
    mean_band(axes[2], s, d["block_pattern"], d.get("block_pattern_std"), "pattern contrast", color="k", style="--")
    axes[2].set(xlabel="SGD iteration (steps)", ylabel="block contrast of W_K^T W_Q (unitless)",
                title="W_K^T W_Q blocks")
    legend(axes[2], "mean over seeds" + (f"; {STD_BAND}" if "block_pattern_std" in d else ""))
    save_figure(fig, path)


PLOTS = {"cot_vs_length": cot_vs_length, "icl_vs_length": icl_vs_length, "cot_vs_icl": cot_vs_icl,
         "attention_dynamics": attention_dynamics}
