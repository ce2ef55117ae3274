"""Claims of the theory testbed (testbed.py; spec 3.4): the sample complexity of AP against VP, on a backbone whose
features are global at the prompt's layer and on one whose features are not.

Every cell is part = testbed; the claims sweep tb_n over the grid tb_n_min, 2 tb_n_min, ..., tb_n_max (a swept
field: the cells of one seed share patterns, head start and nested training sets).

Sample need n*(arm) on a seed: the training-set size at which the arm's test accuracy first reaches
1 - FAR_FROM_CHANCE x (1 - chance) = 0.75 (binary labels), read off the accuracy curve piecewise linear in log2 n.
Censored at both ends, and said so: n_min when the smallest n already reaches it, 2 x n_max when no n does.
Fixed before any testbed run: the grid and the target (core's FAR_FROM_CHANCE), "fewer" meaning a strictly
positive log2 ratio.
"""
from __future__ import annotations

import math

import numpy as np

from theorylab.core.claims import Claim, ClaimContext
from theorylab.core.contract import (FAR_FROM_CHANCE, MAIN, STAY_SMALL, Above, ControlArm, Criterion, Hypothesis,
                                     Measurement)
from theorylab.studies.activation_prompt.testbed import ARMS, n_grid

CHANCE = 0.5  # two classes, balanced
TARGET = 1.0 - FAR_FROM_CHANCE * (1.0 - CHANCE)


def _curves(ctx: ClaimContext) -> tuple[list[int], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(grid, {arm: test accuracy [seeds, len(grid)]}, {backbone: G at layer 1 [seeds, len(grid)]})."""
    def compute():
        grid = n_grid(ctx.configs(part="testbed")[0])
        runs = ctx.trained_sweep("tb_n", grid, part="testbed")
        ms = {n: [c.metrics for c in cells] for n, (_, cells) in runs.items()}
        acc = {a: np.array([[ms[n][i][f"tb_test_acc_{a}"] for n in grid] for i in range(ctx.seeds)]) for a in ARMS}
        g1 = {b: np.array([[ms[n][i][f"tb_global_1_{b}"] for n in grid] for i in range(ctx.seeds)])
              for b in ("local", "global")}
        return grid, acc, g1

    return ctx.memo("testbed-curves", compute)


def sample_need(grid: list[int], acc) -> float:
    """n* of one seed's accuracy curve (see the module docstring): censored to grid[0] and 2 x grid[-1]."""
    if not np.all(np.isfinite(acc)):
        return math.nan
    if acc[0] >= TARGET:
        return float(grid[0])
    for (n0, a0), (n1, a1) in zip(zip(grid, acc), zip(grid[1:], acc[1:])):
        if a1 >= TARGET:
            t = (TARGET - a0) / (a1 - a0)
            return float(2 ** (math.log2(n0) + t * (math.log2(n1) - math.log2(n0))))
    return 2.0 * grid[-1]


def _global_at_layer1(ctx: ClaimContext) -> str | None:
    _, _, g1 = _curves(ctx)
    g = float(g1["global"].min())
    if g < 1.0 - STAY_SMALL:
        return f"G at layer 1 of the global backbone is {g:.3f} < 1 - STAY_SMALL = {1 - STAY_SMALL:.2f}"
    return None


def measure_sample_need(ctx: ClaimContext, arm: str) -> Measurement:
    backbone = "global" if arm == MAIN else "local"
    grid, acc, g1 = _curves(ctx)
    need = {m: [sample_need(grid, row) for row in acc[f"{backbone}_{m}"]] for m in ("vp", "ap1")}
    lead = [math.log2(v / a) if math.isfinite(v) and math.isfinite(a) else math.nan
            for v, a in zip(need["vp"], need["ap1"])]
    censored = {m: sum(x >= 2 * grid[-1] for x in v) for m, v in need.items()}
    linear = float(acc[f"{backbone}_linear"].mean())
    return Measurement(
        {"lead": lead},
        f"{backbone} backbone: n* AP1 {[round(x, 1) for x in need['ap1']]}, VP {[round(x, 1) for x in need['vp']]} "
        f"(target accuracy {TARGET:.2f}; never reached by n = {grid[-1]}: AP1 {censored['ap1']}, VP {censored['vp']} "
        f"seeds); G at layer 1 {float(g1[backbone].mean()):.2f}; linear probe {linear:.3f} (chance: the backbone is "
        f"blind to the label's sign)",
        {"grid": grid, "sample_need": need, "censored": censored, "g1": float(g1[backbone].mean())})


def measure_advantage(ctx: ClaimContext, arm: str) -> Measurement:
    grid, acc, g1 = _curves(ctx)
    adv = {b: (acc[f"{b}_ap1"] - acc[f"{b}_vp"]).mean(1) for b in ("local", "global")}  # [seeds]
    curves = {"n": grid, **{a: acc[a].mean(0).tolist() for a in ARMS}, "target": TARGET,
              "std": {a: acc[a].std(0).tolist() for a in ARMS}}
    return Measurement(
        {"advantage_lead": adv["global"] - adv["local"]},
        f"AP1 minus VP test accuracy, mean over n in {grid}: global {adv['global'].mean():+.3f}, local "
        f"{adv['local'].mean():+.3f}; by n (global AP1 / VP, local AP1 / VP): " + ", ".join(
            f"{n}: {acc['global_ap1'][:, j].mean():.2f}/{acc['global_vp'][:, j].mean():.2f}, "
            f"{acc['local_ap1'][:, j].mean():.2f}/{acc['local_vp'][:, j].mean():.2f}" for j, n in enumerate(grid)),
        {"advantage": {b: v.tolist() for b, v in adv.items()}}, {"testbed_sample_curves": curves})


TESTBED_CLAIMS = [
    Claim("thm_testbed_ap_sample_need", "spec 3.4 testbed (the paper's theory; data model [D])", "theorem",
          "where the prompt's layer already holds global features (after the global backbone's token mixing), AP "
          "there reaches the target accuracy with fewer labelled samples than VP", seeds=5,
          measure=measure_sample_need,
          criterion=Criterion(Above("lead", 0.0, "log2 of VP's sample need over AP1's (n* at test accuracy "
                                    "1 - FAR_FROM_CHANCE x (1 - chance), censored to [n_min, 2 n_max])")),
          hypotheses=(Hypothesis("the prompt's layer holds global features: G at layer 1 >= 1 - STAY_SMALL",
                                 _global_at_layer1),),
          control=ControlArm("local", "the local backbone, whose layer-1 features are per-token (G about 1/3): "
                                      "the hypothesis fails there")),
    Claim("fig_testbed_advantage", "spec 3.4 testbed [D]", "figure",
          "AP's advantage over VP is larger on the global backbone than on the local one (CNN deep vs ViT shallow)",
          seeds=5, measure=measure_advantage,
          criterion=Criterion(Above("advantage_lead", 0.0, "mean over the n grid of AP1 minus VP test accuracy, "
                                    "global backbone minus local"))),
]
