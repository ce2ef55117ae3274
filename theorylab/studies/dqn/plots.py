"""Figures: log ||Q_t - Q*||_inf against t (decaying epsilon, with the frozen-target control), and the
epsilon-level experiment (success against the initial radius; error curves at the smallest radius)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import SEED_LINES, legend, save_figure, seed_lines


def q_error_curves(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    t = np.arange(len(d["dqn"][0]))
    seed_lines(ax, t, d["dqn"], "DQN (target refreshed)", color="C0")
    seed_lines(ax, t, d["control"], "control: target never refreshed", color="C3", style="--")
    ax.set(yscale="log", xlabel="outer iteration t (count)", ylabel="||Q_t - Q*||_inf (return units)",
           title="decaying epsilon: eps_t = " + f"{d['eps'][0]:.2g} ... {d['eps'][-1]:.2g}")
    legend(ax, SEED_LINES)
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
    a1.set(xlabel="initial radius ||omega_0 - omega*|| / ||omega*|| (unitless)",
           ylabel="share of seeds converged (fraction)",
           ylim=(-0.05, 1.15), title="converged (see right: final error below the criterion)")
    if limit is not None:
        a2.axhline(limit, ls="--", c="k", lw=1,
                   label=f"criterion: {d['success_share']:g} x max|Q*| (same MDP) = {limit:.3g}; converged below")
    a2.set(xlabel="outer iteration t (count)", ylabel="max_s |Q_t(s, a*) - Q*(s, a*)| (return units)",
           title=f"error curves at the smallest radius {d['radii'][0]:g} (constant eps)")
    a1.legend(fontsize=8, loc="center right", title="numbers: converged seeds / seeds", title_fontsize=7)
    a2.legend(fontsize=7)
    for ax in (a1, a2):
        ax.title.set_fontsize(10)
    save_figure(fig, path)


PLOTS = {"q_error_curves": q_error_curves, "eps_region": eps_region}
