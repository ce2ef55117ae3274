"""The claims' figures, drawn from the numbers they return."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theorylab.core.plots import save_figure


def _sweep(d: dict, path, title: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    x = np.array(d["x"])
    for ax, key, cap, label in ((axes[0], "T", d["steps"] + 1, "iterations T"), (axes[1], "N", d["n_cap"], "samples N*")):
        ys = np.array(d[key])  # [points, seeds]
        for j in range(ys.shape[1]):
            ax.plot(x, ys[:, j], "o-", c="tab:blue", alpha=0.3, ms=3)
        ax.plot(x, np.exp(np.log(ys).mean(1)), "o-", c="k", label="gate trained: geometric mean over seeds")
        if f"{key}_frozen" in d:
            ax.plot(x, np.exp(np.log(np.array(d[f"{key}_frozen"])).mean(1)), "s--", c="tab:gray",
                    label="gate frozen at w = 0")
        if d.get("exponent") is not None:
            ref = np.exp(np.log(ys).mean()) * (x / np.exp(np.log(x).mean())) ** d["exponent"]
            ax.plot(x, ref, "--", c="tab:red", label=f"slope {d['exponent']}")
        ax.axhline(cap, c="gray", ls=":", lw=1, label="not reached (censored)")
        ax.set(xscale="log", yscale="log", xlabel=d["xname"], ylabel=label)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def sweep_signal(d: dict, path) -> None:
    _sweep(d, path, "majority voting: T and N* vs alpha_r - alpha_c")


def sweep_locality(d: dict, path) -> None:
    _sweep(d, path, "locality: T and N* vs (1/2)^dl_near - (1/2)^dl_far")


def sweep_noise(d: dict, path) -> None:
    _sweep(d, path, "T and N* vs token noise tau")


def gate_alignment(d: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    s = np.array(d["steps"])
    for key, c in (("w_o_plus", "tab:red"), ("w_o_minus", "tab:blue"), ("w_irrelevant_max", "gray")):
        for j, ys in enumerate(d[key]):
            axes[0].plot(s, ys, c=c, alpha=0.6, label=key if j == 0 else None)
    axes[0].set(xlabel="GD step", ylabel="projection of w", title="gating vector vs patterns")
    for key, c in (("gate_relevant", "tab:red"), ("gate_irrelevant", "gray")):
        for j, ys in enumerate(d[key]):
            axes[1].plot(s, ys, c=c, alpha=0.6, label=key if j == 0 else None)
    axes[1].set(xlabel="GD step", ylabel="mean gate g_l", ylim=(0, 1.02), title="gate by token kind")
    for ax in axes:
        ax.legend(fontsize=7)
    save_figure(fig, path)


def ssm_vs_transformer(d: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    keys = list(d)
    means = [np.nanmean(d[k]) for k in keys]  # keys "regime|arch" (tuned on validation), "regime|arch|untuned"
    bars = ax.bar(range(len(keys)), means, color=["tab:blue" if "ssm" in k else "tab:orange" for k in keys])
    for bar, k in zip(bars, keys):
        bar.set_alpha(0.4 if k.endswith("untuned") else 1.0)
    for i, k in enumerate(keys):
        ax.scatter([i] * len(d[k]), d[k], c="k", s=8, zorder=3)
    ax.set_xticks(range(len(keys)), [k.replace("|", "\n") for k in keys], fontsize=6)
    ax.set_ylabel("test error")
    ax.set_title("SSM vs Transformer: tuned on validation (pale: untuned)", fontsize=9)
    save_figure(fig, path)


PLOTS = {"sweep_signal": sweep_signal, "sweep_locality": sweep_locality, "sweep_noise": sweep_noise, "gate_alignment": gate_alignment,
         "ssm_vs_transformer": ssm_vs_transformer}
