"""Figures: success-rate phase diagrams (white = 1, the precursor's grey-scale format) over (sigma1, N) and
(mu1, N); minority excess risk / accuracy against the minority fraction."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure


def _phase(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    rate = np.array(d["rate"]).T  # [N, V]
    ax.imshow(rate, cmap="gray", vmin=0, vmax=1, origin="lower", aspect="auto")
    ax.set_xticks(range(len(d["x"])), [f"{v:g}" for v in d["x"]])
    ax.set_yticks(range(len(d["N"])), [str(n) for n in d["N"]])
    ax.set(xlabel=d["x_name"], ylabel="N (training samples)", title="success rate (white = 1)")
    save_figure(fig, path)


def _lines(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, ys in d["series"].items():
        ax.plot(d["lam"], ys, "-o", ms=3, label=name)
    ax.set(xlabel="minority fraction lam2", ylabel=d["ylabel"])
    ax.legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"phase_sigma": _phase, "phase_mu": _phase, "minority_fraction": _lines, "digits_minority": _lines}
