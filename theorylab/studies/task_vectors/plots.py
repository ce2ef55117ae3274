"""The figures: loss vs lambda per correlation type (Thms 4-5) and the OOD heatmap with region (8)
outlined (Thm 6; seed 004 Fig. 27; drawn by shared.task_arithmetic.ood_heatmap)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.shared.task_arithmetic import ood_heatmap
from theorylab.core.plots import save_figure


def loss_vs_lambda(d: dict, path) -> None:
    names = {"0.0": "irrelevant", "0.6": "aligned", "-0.6": "contradictory"}
    alphas = list(d["curves"])
    fig, axes = plt.subplots(2, len(alphas), figsize=(4 * len(alphas), 6), sharex=True)
    lams = np.array(d["lams"])
    for j, a in enumerate(alphas):
        c = d["curves"][a]
        for i, k in enumerate(("loss", "error")):
            ax = axes[i, j]
            ax.plot(lams, c[f"T1_{k}"], "-o", ms=3, label="T1")
            ax.plot(lams, c[f"T2_{k}"], "-s", ms=3, label="T2")
            if float(a) >= 0:
                ax.axvline(1 - float(a) + d["beta"], c="k", ls="--", lw=1, label="1 - alpha + beta (Thm 4)")
            ax.axvline(0, c="gray", lw=0.5)
            ax.set(ylabel="hinge loss" if k == "loss" else "sign error")
            if i == 0:
                ax.set_title(f"{names.get(a, '')} (alpha = {a})")
            else:
                ax.set_xlabel("lambda in Psi0 + dPsi_T1 + lambda dPsi_T2")
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"loss_vs_lambda": loss_vs_lambda, "ood_heatmap": ood_heatmap}
