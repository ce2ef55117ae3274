"""Figures: accuracy vs lambda per correlation type (Fig. 23) and the OOD (lambda1, lambda2) heatmap of
T' accuracy with region (8) outlined (Fig. 24; shared.task_arithmetic.ood_heatmap)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.shared.task_arithmetic import ood_heatmap
from theorylab.core.plots import save_figure


def acc_vs_lambda(d: dict, path) -> None:
    fig, axes = plt.subplots(1, len(d), figsize=(4 * len(d), 3.4), sharey=True)
    for ax, (kind, c) in zip(np.atleast_1d(axes), d.items()):
        ax.plot(c["lams"], c["T1"], "-o", ms=3, label="T1")
        ax.plot(c["lams"], c["T2"], "-s", ms=3, label="T2")
        ax.axvline(c["multi"], c="g", ls="--", lw=1, label=f"best multi-task {c['multi']:+.1f}")
        ax.axvline(c["unlearn"], c="r", ls=":", lw=1, label=f"best unlearning {c['unlearn']:+.1f}")
        ax.axhline(0.5, c="gray", lw=0.5)
        ax.set(title=kind, xlabel="lambda in Psi0 + dPsi_T1 + lambda dPsi_T2", ylim=(0, 1))
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("test accuracy (mean over seeds)")
    save_figure(fig, path)


PLOTS = {"acc_vs_lambda": acc_vs_lambda, "ood_heatmap": ood_heatmap}
