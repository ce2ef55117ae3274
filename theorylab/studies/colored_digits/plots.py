"""Figures: accuracy vs lambda per correlation type (Fig. 23) and the OOD (lambda1, lambda2) heatmap of
T' accuracy with region (8) outlined (Fig. 24; as task_vectors.plots.ood_heatmap)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

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


def ood_heatmap(d: dict, path) -> None:
    lams = np.array(d["lams"])
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    im = ax.imshow(np.array(d["acc"]).T, origin="lower", extent=[lams[0], lams[-1], lams[0], lams[-1]],
                   aspect="auto", cmap="RdBu_r", vmin=0, vmax=1)  # rows: lambda2, cols: lambda1
    fig.colorbar(im, ax=ax, label="accuracy on T'")
    if np.array(d["region"]).any():
        ax.contour(lams, lams, np.array(d["region"]).T, levels=[0.5], colors="k", linewidths=1.5)
    ax.plot(1, 0, "ko", label="Psi*_T1 (1, 0)")
    ax.plot(*d["best"], "gx", ms=10, mew=2, label=f"best ({d['best'][0]:+.1f}, {d['best'][1]:+.1f})")
    g = d["gamma"]
    ax.set(xlabel="lambda_1 (T1: shape-only)", ylabel="lambda_2 (T2: colour)",
           title=f"T' accuracy; black: region (8), c={d['c']}, beta={d['beta']},\ngamma=({g[0]:.2f}, {g[1]:.2f}) regressed")
    ax.legend(fontsize=7, loc="lower left")
    save_figure(fig, path)


PLOTS = {"acc_vs_lambda": acc_vs_lambda, "ood_heatmap": ood_heatmap}
