"""The figures, drawn from the numbers the claims return (seed means, with +-1 std over seeds where recorded)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.contract import FAR_FROM_CHANCE
from theorylab.core.plots import ERROR_BARS, STD_BAND, legend, log_ticks, mean_band, save_figure

NAMES = {"gt": "GT + PE", "no_pe": "GT without PE", "gcn": "GCN"}
TARGET = f"target: {FAR_FROM_CHANCE:g} x chance error (same run; mean over seeds)"
ERROR = "test error (fraction of test nodes)"


def _note(d: dict, key: str = "std", how: str = STD_BAND) -> str:
    return "mean over seeds" + (f"; {how}" if d.get(key) else "")


def sample_complexity(d: dict, path) -> None:  # protocol (a): test error vs |L|
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for v, m in d["mean"].items():
        ax.errorbar(d["grid"], m, yerr=d["std"][v], marker="o", ms=3, capsize=2, label=NAMES[v])
    ax.axhline(d["target"], ls="--", c="k", lw=1, label=TARGET)
    ax.set(xscale="log", xlabel="labelled nodes |L| (count)", ylabel=ERROR, title="sample complexity")
    log_ticks(ax, d["grid"])
    legend(ax, _note(d, how=ERROR_BARS))
    save_figure(fig, path)


def training_curves(d: dict, path) -> None:  # protocol (b): test error vs iteration
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for v, m in d["mean"].items():
        mean_band(ax, d["steps"], m, (d.get("std") or {}).get(v), NAMES[v], floor=0.0)
    ax.axhline(d["target"], ls="--", c="k", lw=1, label=TARGET)
    ax.set(xlabel="SGD step (steps)", ylabel=ERROR, title="iterations (largest |L|)")
    legend(ax, _note(d))
    save_figure(fig, path)


def attention_mass(d: dict, path) -> None:  # protocol (d)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for k, label in (("relevant", "core, discriminative"), ("consistent", "core, label-consistent"),
                     ("core", "core distance (all)")):
        mean_band(ax, d["steps"], d[k], (d.get("std") or {}).get(k), label)
    ax.set(xlabel="SGD step (steps)", ylabel="attention mass of the query (fraction)", ylim=(0, 1.02),
           title="attention concentration")
    legend(ax, _note(d))
    save_figure(fig, path)


def pe_trajectories(d: dict, path) -> None:  # protocol (c)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for z, ys in d["b"].items():
        core = int(z) == d["z_m"]
        mean_band(ax, d["steps"], ys, (d.get("b_std") or {}).get(z), f"b_{z}" + (" (z_m, the core distance)" if core
                                                                                    else ""), lw=2.5 if core else 1.2)
    ax.set(xlabel="SGD step (steps)", ylabel="relative PE weight b_z (unitless)", title="trainable relative PE")
    legend(ax, _note(d, "b_std"))
    save_figure(fig, path)


def pe_sampling(d: dict, path) -> None:  # seed Fig. 8
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    z = np.array(d["z"])
    a1.bar(z, d["b"], 0.6, yerr=d.get("b_std"), capsize=3, color="C0", label="trained b_z")
    a1.axhline(0, c="gray", lw=0.6, label="b_z = 0")
    a1.set(xlabel="distance z (hops)", ylabel="relative PE weight b_z (unitless)", title="trained PE", xticks=z)
    legend(a1, _note(d, "b_std", ERROR_BARS))
    a2.errorbar(z, d["acc"], yerr=d["acc_std"], fmt="o", capsize=3, c="tab:red", label="accuracy, T^n = hop z only")
    a2.set(xlabel="distance z (hops)", ylabel="test accuracy (fraction)", title="PE-based sampling (Fig. 8)", xticks=z)
    legend(a2, _note(d, "acc_std", ERROR_BARS))
    save_figure(fig, path)


def real_graphs(d: dict, path) -> None:
    graphs = list(d["test_error"])
    std = d.get("test_error_std") or {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    w = 0.8 / 3
    for i, v in enumerate(NAMES):
        axes[0].bar(np.arange(len(graphs)) + (i - 1) * w, [d["test_error"][g][v][0] for g in graphs], w,
                    yerr=[std[g][v][0] for g in graphs] if std else None, capsize=3, label=NAMES[v])
    axes[0].set(xticks=range(len(graphs)), xticklabels=graphs, xlabel="graph", ylabel=ERROR, title="test error")
    legend(axes[0], _note(d, "test_error_std", ERROR_BARS), outside=True)
    for g in graphs:
        mean_band(axes[1], range(len(d["b"][g])), d["b"][g], (d.get("b_std") or {}).get(g), g, style="-o")
    axes[1].set(xlabel="distance z (hops)", ylabel="trained b_z of GT + PE (unitless)", title="trained relative PE")
    legend(axes[1], _note(d, "b_std"))
    save_figure(fig, path)


PLOTS = {"sample_complexity": sample_complexity, "training_curves": training_curves, "attention_mass": attention_mass,
         "pe_trajectories": pe_trajectories, "pe_sampling": pe_sampling, "real_planted": real_graphs, "real_knn": real_graphs}
