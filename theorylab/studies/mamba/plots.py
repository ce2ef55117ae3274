"""The claims' figures, drawn from the numbers they return."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import SEED_LINES, legend, log_ticks, save_figure, seed_lines, shared_legend


def _geo(ys: np.ndarray) -> np.ndarray:
    return np.exp(np.log(ys).mean(1))


def _sweep(d: dict, path, title: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    x = np.array(d["x"])
    for ax, key, cap, label in ((axes[0], "T", d["steps"] + 1, "iterations T to zero test error (count)"),
                                (axes[1], "N", d["n_cap"], "samples N* to zero test error (count)")):
        ys = np.array(d[key])  # [points, seeds]
        for j in range(ys.shape[1]):
            ax.plot(x, ys[:, j], "o-", c="tab:blue", alpha=0.3, ms=3, lw=0.8,
                    label=f"gate trained: each seed ({ys.shape[1]})" if j == 0 else None)
        ax.plot(x, _geo(ys), "o-", c="k", lw=2, label="gate trained: geometric mean over seeds", zorder=3)
        if f"{key}_frozen" in d:
            fr = np.array(d[f"{key}_frozen"])
            for j in range(fr.shape[1]):
                ax.plot(x, fr[:, j], "s--", c="tab:gray", alpha=0.3, ms=2, lw=0.8,
                        label="control, gate frozen at w = 0: each seed" if j == 0 else None)
            ax.plot(x, _geo(fr), "s--", c="tab:gray", ms=4, lw=1.5, label="control: geometric mean over seeds")
        if d.get("exponent") is not None:
            ref = np.exp(np.log(ys).mean()) * (x / np.exp(np.log(x).mean())) ** d["exponent"]
            ax.plot(x, ref, "--", c="tab:red",
                    label=f"reference: slope {d['exponent']:g} (the bound's exponent), through the mean")
        ax.axhline(cap, c="gray", ls=":", lw=1, label=f"not reached within {cap:g} (censored, drawn here)")
        ax.set(xscale="log", yscale="log", xlabel=f"{d['xname']} (unitless)", ylabel=label)
        log_ticks(ax, x)
    shared_legend(axes[1], axes)
    fig.suptitle(title + " (thin: each seed)", fontsize=10)
    save_figure(fig, path)


def sweep_signal(d: dict, path) -> None:
    _sweep(d, path, "majority voting: T and N* vs alpha_r - alpha_c")


def sweep_locality(d: dict, path) -> None:
    _sweep(d, path, "locality: T and N* vs (1/2)^dl_near - (1/2)^dl_far")


def sweep_noise(d: dict, path) -> None:
    _sweep(d, path, "T and N* vs token noise tau")


def gate_alignment(d: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    s = np.array(d["steps"])
    names = {"w_o_plus": "w . o_+ (relevant pattern +)", "w_o_minus": "w . o_- (relevant pattern -)",
             "w_irrelevant_max": "max_j |w . nu_j| over irrelevant patterns", "gate_relevant": "relevant tokens",
             "gate_irrelevant": "irrelevant tokens"}
    for key, c in (("w_o_plus", "tab:red"), ("w_o_minus", "tab:blue"), ("w_irrelevant_max", "gray")):
        seed_lines(axes[0], s, d[key], names[key], color=c)
    axes[0].set(xlabel="GD step (steps)", ylabel="projection of the gating vector w\n(weight units)",
                title="gating vector vs patterns")
    for key, c in (("gate_relevant", "tab:red"), ("gate_irrelevant", "gray")):
        seed_lines(axes[1], s, d[key], names[key], color=c)
    axes[1].set(xlabel="GD step (steps)", ylabel="mean gate g_l (fraction)", ylim=(0, 1.02),
                title="gate by token kind")
    for ax in axes:
        legend(ax, SEED_LINES)
    save_figure(fig, path)


def ssm_vs_transformer(d: dict, path) -> None:
    keys = list(d)
    fig, ax = plt.subplots(figsize=(max(5.6, 1.0 * len(keys) + 2.5), 3.9))
    means = [np.nanmean(d[k]) for k in keys]  # keys "regime|arch" (tuned on validation), "regime|arch|untuned"
    bars = ax.bar(range(len(keys)), means, color=["tab:blue" if "ssm" in k else "tab:orange" for k in keys],
                  label="mean over seeds (pale: untuned)")
    for bar, k in zip(bars, keys):
        bar.set_alpha(0.4 if k.endswith("untuned") else 1.0)
    for i, k in enumerate(keys):
        ax.scatter([i] * len(d[k]), d[k], c="k", s=8, zorder=3, label="each seed" if i == 0 else None)
    ax.set_xticks(range(len(keys)), [k.replace("|", "\n") for k in keys], fontsize=6)
    ax.set(xlabel="rule | model", ylabel="test error (fraction)",
           title="SSM vs Transformer (tuned on validation)")
    legend(ax, "bars: mean over seeds; dots: seeds", outside=True)
    save_figure(fig, path)


PLOTS = {"sweep_signal": sweep_signal, "sweep_locality": sweep_locality, "sweep_noise": sweep_noise, "gate_alignment": gate_alignment,
         "ssm_vs_transformer": ssm_vs_transformer}
