"""Figures: log ||Q_t - Q*||_inf against t (decaying epsilon, with the frozen-target control), and the
epsilon-level experiment (success against the initial radius; error curves at the smallest radius)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure


def q_error_curves(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, c in enumerate(d["dqn"]):
        ax.semilogy(c, "-", c="C0", alpha=0.7, label="DQN (target refreshed)" if i == 0 else None)
    for i, c in enumerate(d["control"]):
        ax.semilogy(c, "--", c="C3", alpha=0.7, label="control: target never refreshed" if i == 0 else None)
    ax.set(xlabel="outer iteration t", ylabel="||Q_t - Q*||_inf", title="decaying epsilon: eps_t = " +
           f"{d['eps'][0]:.2g} ... {d['eps'][-1]:.2g}")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def eps_region(d: dict, path) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    radii = np.array(d["radii"])
    limit = d["success_share"] * d["qmax"] if "qmax" in d else None
    for i, (eps, table) in enumerate(d["success"].items()):
        share = np.array([np.mean(row) for row in table])
        n = len(table[0]) if table else 0
        a1.plot(radii, share, "-o", c=f"C{i}", label=f"eps = {eps} ({n} seeds)")
        for r, row in zip(radii, table):  # the seeds behind each share
            a1.annotate(f"{int(sum(row))}/{len(row)}", (r, np.mean(row)), textcoords="offset points",
                        xytext=(0, 6 + 9 * i), ha="center", fontsize=7, color=f"C{i}")
        for j, c in enumerate(d["curves"][f"{eps}|{d['radii'][0]}"]):  # one line per seed
            a2.semilogy(c, c=f"C{i}", alpha=0.6, lw=1, label=f"eps = {eps}, one line per seed" if j == 0 else None)
    a1.set_xscale("log")
    a1.xaxis.set_major_locator(FixedLocator(radii))  # the swept radii only: no crowded log minor labels
    a1.xaxis.set_minor_locator(NullLocator())
    a1.set_xticklabels([f"{r:g}" for r in radii])
    a1.set(xlabel="initial radius ||omega_0 - omega*|| / ||omega*||", ylabel="share of seeds converged",
           ylim=(-0.05, 1.15), title="converged (see right: final error below the criterion)")
    if limit is not None:
        a2.axhline(limit, ls="--", c="k", lw=1,
                   label=f"criterion: {d['success_share']:g} x max|Q*| = {limit:.3g} (converged below)")
    a2.set(xlabel="outer iteration t", ylabel="max_s |Q_t(s, a*) - Q*(s, a*)|",
           title=f"error curves at the smallest radius {d['radii'][0]:g} (constant eps)")
    a1.legend(fontsize=8, loc="center right")
    a2.legend(fontsize=7)
    for ax in (a1, a2):
        ax.title.set_fontsize(10)
    save_figure(fig, path)


PLOTS = {"q_error_curves": q_error_curves, "eps_region": eps_region}
