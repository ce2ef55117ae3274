"""The figures: loss vs lambda per correlation type (Thms 4-5) and the OOD heatmap with region (8)
outlined (Thm 6; seed 004 Fig. 27; drawn by shared.task_arithmetic.ood_heatmap)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.shared.task_arithmetic import ood_heatmap
from theorylab.core.plots import STD_BAND, mean_band, save_figure, shared_legend


def loss_vs_lambda(d: dict, path) -> None:
    names = {"0.0": "irrelevant", "0.6": "aligned", "-0.6": "contradictory"}
    alphas = list(d["curves"])
    fig, axes = plt.subplots(2, len(alphas), figsize=(4.4 * len(alphas), 6.8), sharex=True, squeeze=False)
    lams = np.array(d["lams"])
    std = d.get("std") or {}
    for j, a in enumerate(alphas):
        c, sd = d["curves"][a], std.get(a) or {}
        for i, k in enumerate(("loss", "error")):
            ax = axes[i, j]
            mean_band(ax, lams, c[f"T1_{k}"], sd.get(f"T1_{k}"), "T1", style="-o", ms=3)
            mean_band(ax, lams, c[f"T2_{k}"], sd.get(f"T2_{k}"), "T2", style="-s", ms=3)
            if float(a) >= 0:
                ax.axvline(1 - float(a) + d["beta"], c="k", ls="--", lw=1,
                           label="Thm 4: lambda = 1 - alpha + beta (beta = 1/d; value in the title)")
            ax.axvline(0, c="gray", lw=0.5, label="lambda = 0 (T1's vector alone)")
            ax.set(ylabel="hinge loss (unitless)" if k == "loss" else "sign error (fraction)")
            if i == 0:
                edge = f"\n1 - alpha + beta = {1 - float(a) + d['beta']:.3g}" if float(a) >= 0 else "\n"
                ax.set_title(f"{names.get(a, '')} (alpha = {a}){edge}", fontsize=10)
            else:
                ax.set_xlabel("lambda (unitless)")
    shared_legend(axes[0, -1], axes.flat)
    fig.suptitle("T1 / T2 loss and error of the merge Psi0 + dPsi_T1 + lambda dPsi_T2: mean over seeds"
                 + (f"; {STD_BAND}" if std else ""), fontsize=10)
    save_figure(fig, path)


PLOTS = {"loss_vs_lambda": loss_vs_lambda, "ood_heatmap": ood_heatmap}
