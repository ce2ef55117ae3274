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
        hb = r.get("head_bias_layer")
        if hb is not None:  # the prompt there is a bias of the head (linear probing), never chosen as the AP layer
            ax.plot([x[hb]], [r["ap"][hb]], "x", c="red", ms=9, label="= head bias (linear probe)")
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


def backward_bytes_by_layer(d: dict, path) -> None:
    """One deterministic measurement per backbone and depth (shapes only): no seeds, no interval."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for arch, r in d.items():
        ax.plot(r["depth"], r["saved_bytes"], "-o", label=arch.upper())
        hb = r.get("head_bias_layer")
        if hb is not None:
            ax.plot([r["depth"][hb]], [r["saved_bytes"][hb]], "x", c="red", ms=9)
    ax.set(xlabel="relative depth l / L of the prompt (0 = VP; unitless)",
           ylabel="bytes saved for backward per step (B)", yscale="log",
           title="backward memory\n(one deterministic measurement)")
    ax.plot([], [], "x", c="red", ms=9, label="= head bias (linear probe)")
    legend(ax)
    save_figure(fig, path)


def testbed_sample_curves(d: dict, path) -> None:
    """The testbed: test accuracy against the number of labelled samples, per backbone and prompt."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    styles = {"linear": ":", "vp": "--", "ap1": "-"}
    colors = {"local": "tab:blue", "global": "tab:orange"}
    names = {"linear": "linear probe (= AP at layer 2)", "vp": "VP", "ap1": "AP at layer 1"}
    std = d.get("std") or {}
    for arm in (k for k in d if "_" in k):
        backbone, method = arm.split("_")
        mean_band(ax, d["n"], d[arm], std.get(arm), f"{backbone}: {names[method]}", color=colors[backbone],
                  style=styles[method], marker="o", ms=3)
    ax.axhline(d["target"], c="gray", lw=1, label=f"target accuracy {d['target']:.2f} (error <= 0.5 x chance error)")
    ax.set(xscale="log", xlabel="labelled training samples n (count)", ylabel="test accuracy (fraction)",
           ylim=(0.4, 1.02), title="testbed: AP vs VP sample need")
    legend(ax, "mean over seeds" + (f"; {STD_BAND}" if std else ""), outside=True)
    save_figure(fig, path)


PLOTS = {"accuracy_by_layer": accuracy_by_layer, "global_features": global_features,
         "backward_bytes_by_layer": backward_bytes_by_layer, "testbed_sample_curves": testbed_sample_curves}
