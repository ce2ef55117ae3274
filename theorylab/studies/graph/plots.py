"""The figures, drawn from the numbers the claims return."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure

NAMES = {"gt": "GT + PE", "no_pe": "GT without PE", "gcn": "GCN"}


def sample_complexity(d: dict, path) -> None:  # protocol (a): test error vs |L|
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for v, m in d["mean"].items():
        ax.errorbar(d["grid"], m, yerr=d["std"][v], marker="o", ms=3, capsize=2, label=NAMES[v])
    ax.axhline(d["target"], ls="--", c="k", lw=1, label="target: 0.5 x chance (mean)")
    ax.set(xscale="log", xlabel="labelled nodes |L|", ylabel="test error", title="sample complexity")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def training_curves(d: dict, path) -> None:  # protocol (b): test error vs iteration
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for v, m in d["mean"].items():
        ax.plot(d["steps"], m, label=NAMES[v])
    ax.axhline(d["target"], ls="--", c="k", lw=1, label="target: 0.5 x chance (mean)")
    ax.set(xlabel="SGD step", ylabel="test error", title="iterations (largest |L|)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def attention_mass(d: dict, path) -> None:  # protocol (d)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, label in (("relevant", "core, discriminative"), ("consistent", "core, label-consistent"),
                     ("core", "core distance (all)")):
        ax.plot(d["steps"], d[k], label=label)
    ax.set(xlabel="SGD step", ylabel="attention mass of the query", ylim=(0, 1.02), title="attention concentration")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def pe_trajectories(d: dict, path) -> None:  # protocol (c)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for z, ys in d["b"].items():
        ax.plot(d["steps"], ys, lw=2.5 if int(z) == d["z_m"] else 1.2, label=f"b_{z}" + (" (z_m)" if int(z) == d["z_m"] else ""))
    ax.set(xlabel="SGD step", ylabel="b_z", title="trainable relative PE")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def pe_sampling(d: dict, path) -> None:  # seed Fig. 8
    fig, ax = plt.subplots(figsize=(5, 3.5))
    z = np.array(d["z"])
    ax.bar(z - 0.2, d["b"], 0.4, label="trained b_z")
    ax.set(xlabel="distance z", ylabel="b_z", title="PE vs PE-based sampling (Fig. 8)")
    ax2 = ax.twinx()
    ax2.errorbar(z + 0.2, d["acc"], yerr=d["acc_std"], fmt="o", c="tab:red", label="accuracy, T^n = hop z only")
    ax2.set(ylabel="test accuracy", ylim=(0.4, 1.02))
    handles = [h for a in (ax, ax2) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower left")
    save_figure(fig, path)


def real_graphs(d: dict, path) -> None:
    graphs = list(d["test_error"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    w = 0.8 / 3
    for i, v in enumerate(NAMES):
        axes[0].bar(np.arange(len(graphs)) + (i - 1) * w, [d["test_error"][g][v][0] for g in graphs], w, label=NAMES[v])
    axes[0].set(xticks=range(len(graphs)), xticklabels=graphs, ylabel="test error")
    axes[0].legend(fontsize=7)
    for g in graphs:
        axes[1].plot(range(len(d["b"][g])), d["b"][g], marker="o", label=g)
    axes[1].set(xlabel="distance z", ylabel="trained b_z (GT + PE)")
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


PLOTS = {"sample_complexity": sample_complexity, "training_curves": training_curves, "attention_mass": attention_mass,
         "pe_trajectories": pe_trajectories, "pe_sampling": pe_sampling, "real_planted": real_graphs, "real_knn": real_graphs}
