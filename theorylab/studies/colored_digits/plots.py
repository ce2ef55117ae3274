"""Figures: accuracy vs lambda per correlation type (Fig. 23) and the OOD (lambda1, lambda2) heatmap of
T' accuracy with region (8) outlined (Fig. 24; shared.task_arithmetic.ood_heatmap)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import STD_BAND, legend, mean_band, save_figure
from theorylab.shared.task_arithmetic import ood_heatmap


def acc_vs_lambda(d: dict, path) -> None:
    fig, axes = plt.subplots(1, len(d), figsize=(4.3 * len(d), 3.8), sharey=True, squeeze=False)
    spread = False
    for ax, (kind, c) in zip(axes[0], d.items()):
        mean_band(ax, c["lams"], c["T1"], c.get("T1_std"), "T1", style="-o", ms=3)
        mean_band(ax, c["lams"], c["T2"], c.get("T2_std"), "T2", style="-s", ms=3)
        spread = spread or "T1_std" in c
        ax.axvline(c["multi"], c="g", ls="--", lw=1, label=f"best multi-task lambda = {c['multi']:+.1f}")
        ax.axvline(c["unlearn"], c="r", ls=":", lw=1, label=f"best unlearning lambda = {c['unlearn']:+.1f}")
        ax.axhline(0.5, c="gray", lw=0.6, label="chance (binary task) = 0.5")
        ax.set(title=kind, xlabel="lambda in Psi0 + dPsi_T1 + lambda dPsi_T2 (unitless)", ylim=(0, 1))
        legend(ax)
    axes[0][0].set_ylabel("test accuracy (fraction)")
    fig.suptitle("T1 / T2 accuracy of the merge: mean over seeds" + (f"; {STD_BAND}" if spread else ""), fontsize=10)
    save_figure(fig, path)


PLOTS = {"acc_vs_lambda": acc_vs_lambda, "ood_heatmap": ood_heatmap}
