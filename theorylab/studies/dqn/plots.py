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
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    radii = np.array(d["radii"])
    for i, (eps, table) in enumerate(d["success"].items()):
        a1.plot(radii, [np.mean(row) for row in table], "-o", c=f"C{i}", label=f"eps = {eps}")
        for j, c in enumerate(d["curves"][f"{eps}|{d['radii'][0]}"]):
            a2.semilogy(c, c=f"C{i}", alpha=0.7, label=f"eps = {eps}" if j == 0 else None)
    a1.set(xscale="log", xlabel="||omega_0 - omega*|| / ||omega*||", ylabel="share of seeds converged",
           title=f"converged: final optimal-action error <= {d['success_share']} max|Q*|", ylim=(-0.05, 1.05))
    a2.set(xlabel="outer iteration t", ylabel="max_s |Q_t(s, a*) - Q*(s, a*)|", title=f"radius {d['radii'][0]}, constant epsilon")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    save_figure(fig, path)


PLOTS = {"q_error_curves": q_error_curves, "eps_region": eps_region}
