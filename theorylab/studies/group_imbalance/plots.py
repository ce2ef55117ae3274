"""Figures: success-rate phase diagrams (white = 1, the precursor's grey-scale format) over (sigma1, N) and
(mu1, N); minority excess risk / accuracy against the minority fraction (mean over seeds with a +-1 std band)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.contract import CLOSE_GAP
from theorylab.core.plots import STD_BAND, legend, mean_band, save_figure


def _phase(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    rate = np.array(d["rate"]).T  # [N, V]
    im = ax.imshow(rate, cmap="gray", vmin=0, vmax=1, origin="lower", aspect="auto")
    seeds = d.get("seeds")
    for (j, i), r in np.ndenumerate(rate):  # the share in each cell, readable on black and white
        ax.text(i, j, f"{r:.2f}" if seeds is None else f"{round(r * seeds)}/{seeds}", ha="center", va="center",
                fontsize=8, color="black" if r > 0.5 else "white")
    ax.set_xticks(range(len(d["x"])), [f"{v:g}" for v in d["x"]])
    ax.set_yticks(range(len(d["N"])), [str(n) for n in d["N"]])
    ax.set(xlabel=f"{d['x_name']} (group-1 parameter, data units)", ylabel="N (training samples, count)",
           title="success rate (white = 1)")
    fig.colorbar(im, ax=ax).set_label(f"share of seeds closing >= {CLOSE_GAP:g}\nof the init error (fraction)",
                                      fontsize=8)
    save_figure(fig, path)


def _lines(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    spread = d.get("spread") or {}
    for name, ys in d["series"].items():
        mean_band(ax, d["lam"], ys, spread.get(name), name, style="-o", floor=0.0, ms=3)  # a risk or accuracy >= 0
    ax.set(xlabel="minority fraction lam2 (fraction of samples)", ylabel=d["ylabel"])
    legend(ax, "mean over seeds" + (f"; {STD_BAND}" if spread else ""))
    save_figure(fig, path)


PLOTS = {"phase_sigma": _phase, "phase_mu": _phase, "minority_fraction": _lines, "digits_minority": _lines}
