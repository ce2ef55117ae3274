"""What every study's figures share, and the figure every study gets without writing one: its training curves."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

STEP_KEYS = ("step", "iter", "epoch")  # the x axis of a cell's curves (the first one present)
MAX_PANELS = 6


def save_figure(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_panels(curves: list[dict[str, list]]) -> tuple[str, list[str]]:
    """(x key, curve names to draw) of per-model curve dicts: names every model has, of the x axis's length."""
    x_key = next((k for k in STEP_KEYS if all(k in c for c in curves)), None)
    if x_key is None:
        return "", []
    n = len(curves[0][x_key])
    names = [k for k in curves[0] if k != x_key and all(len(c.get(k) or ()) == n for c in curves)]
    return x_key, names[:MAX_PANELS]


def training_curves(curves: list[dict[str, list]], path, title: str = "") -> bool:
    """One panel per recorded curve: every seed thin, their mean thick. False (nothing drawn) when the curves
    share no x axis."""
    x_key, names = curve_panels(curves)
    if not names:
        return False
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        x = np.asarray(curves[0][x_key], dtype=float)
        ys = np.asarray([c[name] for c in curves], dtype=float)  # [seeds, T]
        for y in ys:
            ax.plot(x, y, color="tab:blue", alpha=0.3, lw=0.8)
        with np.errstate(all="ignore"):
            ax.plot(x, np.nanmean(ys, 0), color="tab:blue", lw=2, label=f"mean of {len(ys)}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_key)
        positive = ys[np.isfinite(ys)]
        if positive.size and (positive > 0).all() and positive.max() / positive.min() > 100:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return True
