"""The paper's layer sweep (accuracy vs relative depth of the prompt) and the global-feature diagnostic."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import STD_BAND, legend, mean_band, save_figure

BASELINES = (("norm", ":", "tune norm layers only (baseline)"), ("full", "-.", "full fine-tuning (baseline)"),
             ("linear", "--", "linear probe (baseline)"))


def accuracy_by_layer(d: dict, path) -> None:
    fig, axes = plt.subplots(1, len(d), figsize=(5.4 * len(d), 3.8), squeeze=False)
    for ax, (arch, r) in zip(axes[0], d.items()):
        x = np.array(r["depth"])
        mean_band(ax, x, r["ap"], r.get("ap_std"), "AP at layer l (l = 0: VP)", style="-o", ms=4)
        mean_band(ax, x[1:], r["aps"], r.get("aps_std"), "shared AP (<= VP's parameters)", style="--s", ms=4)
        for name, style, label in BASELINES:
            ax.axhline(r[name], ls=style, c="gray", lw=1, label=f"{label} = {r[name]:.3f}")
        ax.set(xlabel="relative depth l / L of the prompt (unitless)", ylabel="target test accuracy (fraction)",
               title=arch.upper())
        legend(ax, "mean over seeds" + (f"; {STD_BAND}" if "ap_std" in r else ""))
    save_figure(fig, path)


def global_features(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    std = d.get("std") or {}
    for arch, g in ((k, v) for k, v in d.items() if k != "std"):
        mean_band(ax, np.arange(1, len(g) + 1) / len(g), g, std.get(arch), arch.upper(), style="-o")
    ax.set(xlabel="relative depth l / L (unitless)", ylabel="G_l: share of the pooled, global component\n(fraction)",
           ylim=(0, 1.02), title="global features across layers")
    legend(ax, "mean over seeds" + (f"; {STD_BAND}" if std else ""))
    save_figure(fig, path)


PLOTS = {"accuracy_by_layer": accuracy_by_layer, "global_features": global_features}
