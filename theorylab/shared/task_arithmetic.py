"""The task-arithmetic experiment of Li et al. (ICLR 2025), written once for every study that edits a model
with task vectors: Psi0, the task vectors dPsi_T = Psi*_T - Psi0 (theorylab.edit.TaskVector), merges
Psi0 + sum_i lambda_i dPsi_Ti (eq. 6) built for a whole coefficient grid at once as weights [G, E, ...],
their evaluation on test sets (chunked by core.ensemble.over_grid), the lambda lines and planes, region (8)
of Thm 6, the OOD heatmap and the LwPTV table.

The model enters as a `metric` function
    metric(weights, test) -> {name: [G, E]}
where weights hold the merged tensors [G, E, ...] plus the tensors no task vector touches ([E, ...]: a
fixed read-out, a frozen head), and `test` is one test set (a dict of [E, n, ...] tensors).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from theorylab.core.ensemble import GRID_CHUNK_ELEMENTS, over_grid
from theorylab.edit.coefficients import (check_lambda_grid, in_region8, lam_grid, nearest, pair_lambdas,  # noqa: F401
                                         plane_lambdas, region8)
from theorylab.edit.task_vector import TaskVector

Tensor = torch.Tensor
Metric = Callable[[dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]
# merged_metric(parts, coefs, fixed, test) -> {name: [G, E]}: the metric of every merge sum_k c_k parts[k] with
# c = [1, coefs[g]] (parts = [Psi0, dPsi_1, ...]), for a model that can merge faster than building each merge.
MergedMetric = Callable[[list, Tensor, dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]


# ---- the experiment ----

@dataclass
class Experiment:
    """Psi0, task vectors and test sets of E models; merges and their evaluation over coefficient grids."""
    base: dict[str, Tensor]  # Psi0's edited tensors, [E, ...]
    tvs: dict[Hashable, TaskVector]  # task -> dPsi_T with [E, ...] tensors
    tests: dict[Hashable, dict[str, Tensor]]  # test set name -> tensors [E, n, ...]
    metric: Metric
    fixed: dict[str, Tensor] = field(default_factory=dict)  # tensors no task vector touches, [E, ...]
    point_elements: int = 1  # floats of the largest activation of one grid point on one test set (chunking)
    merged_metric: MergedMetric | None = None  # optional fast form of metric over a grid (evaluate_grid, fast=True)

    @classmethod
    def from_weights(cls, base: Mapping[str, Tensor], finetuned: Mapping[Hashable, Mapping[str, Tensor]],
                     tests, metric: Metric, fixed=None, point_elements: int = 1,
                     merged_metric: MergedMetric | None = None) -> "Experiment":
        """dPsi_T = Psi*_T - Psi0 for each fine-tuned state dict (same keys as base)."""
        base = dict(base)
        return cls(base, {t: TaskVector(base, dict(ft)) for t, ft in finetuned.items()}, dict(tests), metric,
                   dict(fixed or {}), point_elements, merged_metric)

    @property
    def E(self) -> int:
        return next(iter(self.base.values())).shape[0]

    def with_tvs(self, tvs: Mapping[Hashable, TaskVector]) -> "Experiment":
        return replace(self, tvs={**self.tvs, **tvs})

    def map_tvs(self, fn: Callable[[Hashable, TaskVector], Mapping[str, Tensor]]) -> "Experiment":
        """Every task vector edited, fn(task, tv) -> tensors (low rank, pruned rows, masks)."""
        return replace(self, tvs={t: TaskVector(vector=dict(fn(t, tv))) for t, tv in self.tvs.items()})

    def subset(self, idx: Sequence[int]) -> "Experiment":
        """The models idx of the ensemble."""
        ix = torch.as_tensor(list(idx), dtype=torch.long, device=next(iter(self.base.values())).device)
        pick = lambda d: {k: v[ix] for k, v in d.items()}  # noqa: E731
        return replace(self, base=pick(self.base), fixed=pick(self.fixed),
                       tvs={t: TaskVector(vector=pick(tv)) for t, tv in self.tvs.items()},
                       tests={t: pick(s) for t, s in self.tests.items()})

    def merged(self, tasks: Sequence[Hashable], coefs: Tensor) -> dict[str, Tensor]:
        """coefs [G, len(tasks)] -> weights [G, E, ...] = Psi0 + sum_i coefs[:, i] dPsi_{tasks[i]} (eq. 6), with
        the fixed tensors ([E, ...], broadcasting) beside them."""
        G = coefs.shape[0]
        c = coefs.to(next(iter(self.base.values())).device)
        out = {}
        for k, b in self.base.items():
            w = b.expand(G, *b.shape).clone()
            for i, t in enumerate(tasks):
                d = self.tvs[t][k]
                w += c[:, i].reshape(G, *([1] * d.dim())).to(d.dtype) * d
            out[k] = w
        return {**out, **self.fixed}


@torch.no_grad()
def evaluate_grid(ex: Experiment, tasks: Sequence[Hashable], coefs: Tensor, on: Sequence[Hashable],
                  max_elements: int = GRID_CHUNK_ELEMENTS, fast: bool = True) -> dict[Hashable, dict[str, Tensor]]:
    """{test set: {metric name: [G, E]}} of every merge of the grid on each test set in `on`. The chunk size
    (max_elements) only decides how many grid points are evaluated at once, never a number. fast: through the
    experiment's merged_metric where it has one (equal to the plain merge-then-metric path up to rounding, tested
    per study); fast=False always builds each merge."""
    if fast and ex.merged_metric is not None:
        parts = [ex.base, *(ex.tvs[t] for t in tasks)]
        return {q: ex.merged_metric(parts, coefs, ex.fixed, ex.tests[q]) for q in on}

    def chunk(part: slice) -> dict[Hashable, Tensor]:
        w = ex.merged(tasks, coefs[part])
        return {(q, name): v for q in on for name, v in ex.metric(w, ex.tests[q]).items()}

    flat = over_grid(coefs.shape[0], ex.point_elements * len(on), chunk, max_elements)
    out: dict[Hashable, dict[str, Tensor]] = {q: {} for q in on}
    for (q, name), v in flat.items():
        out[q][name] = v
    return out


def seed_argbest(values: Tensor, maximise: bool = True) -> Tensor:
    """values [G, E] -> [E] index of each model's best grid point; a non-finite value never wins."""
    v = values.double()
    v = torch.where(torch.isfinite(v), v, torch.tensor(-math.inf if maximise else math.inf, dtype=v.dtype))
    return v.argmax(0) if maximise else v.argmin(0)


# ---- figure: the (lambda1, lambda2) heatmap with region (8) ----

def heatmap_data(lams: Sequence[float], panels: Mapping[str, Tensor], region: Tensor, gamma: Sequence[float],
                 c: float, beta: float, best: Sequence[float], axes: tuple[str, str] = ("lambda_1", "lambda_2"),
                 contour: tuple | None = None) -> dict:
    """JSON-able data for ood_heatmap: panels {title: [G] values over plane_lambdas(lams, lams)} (seed means),
    region [G] (region (8) with the seed-mean gamma), the best point; contour: (panel title, level[, legend text])
    drawn dashed."""
    n = len(lams)
    return {"lams": list(lams), "panels": {k: v.reshape(n, n).tolist() for k, v in panels.items()},
            "region": region.reshape(n, n).int().tolist(), "gamma": [float(g) for g in gamma], "c": c, "beta": beta,
            "best": [float(x) for x in best], "axes": list(axes), "contour": list(contour) if contour else None}


def _outline():
    from matplotlib import patheffects

    return patheffects.withStroke(linewidth=3, foreground="gray")


def ood_heatmap(d: dict, path) -> None:
    """One panel per entry of d["panels"] (seed means); region (8) outlined in black, Psi*_T1 = (1, 0) and the best
    point. Each cell is centred on its (lambda1, lambda2)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    from theorylab.core.plots import save_figure

    lams = np.array(d["lams"])
    panels = d["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.9), squeeze=False)
    half = (lams[1] - lams[0]) / 2 if len(lams) > 1 else 0.5
    ext = [lams[0] - half, lams[-1] + half, lams[0] - half, lams[-1] + half]
    region = np.array(d["region"]).T  # rows: lambda2, cols: lambda1
    drawn = bool(region.any() and not region.all())
    for ax, (title, val) in zip(axes[0], panels.items()):
        acc = "acc" in title
        im = ax.imshow(np.array(val).T, origin="lower", extent=ext, aspect="auto", cmap="RdBu_r" if acc else "viridis_r",
                       **({"vmin": 0, "vmax": 1} if acc else {}))
        fig.colorbar(im, ax=ax).set_label(f"{title} ({'fraction' if acc else 'unitless'}; mean over seeds)", fontsize=8)
        handles = []
        if drawn:
            ax.contour(lams, lams, region, levels=[0.5], colors="k", linewidths=1.5)
        where = "" if drawn else " [inside everywhere]" if region.all() else " [empty on this grid]"
        handles.append(Line2D([], [], color="k", lw=1.5, label=f"region (8) boundary, c={d['c']}, "
                              f"beta={d['beta']:.3g}, gamma=({d['gamma'][0]:.2f}, {d['gamma'][1]:.2f}){where}"))
        if d.get("contour") and d["contour"][0] == title:
            level, v = d["contour"][1], np.array(val, dtype=float)
            what = d["contour"][2] if len(d["contour"]) > 2 else f"{title} = {level:.3g}"
            reached = bool(np.nanmin(v) < level < np.nanmax(v))
            if reached:
                ax.contour(lams, lams, v.T, levels=[level], colors="w", linestyles="--")
            handles.append(Line2D([], [], color="w", ls="--", path_effects=[_outline()],
                                  label=what + ("" if reached else " [not reached on this grid: no line]")))
        handles += ax.plot(1, 0, "ko", label="Psi*_T1 = (1, 0)", clip_on=False)
        handles += ax.plot(*d["best"], "gx", ms=10, mew=2, clip_on=False,
                           label=f"best = ({d['best'][0]:+.1f}, {d['best'][1]:+.1f})")
        ax.set(xlabel=f"{d['axes'][0]} (coefficient, unitless)", ylabel=f"{d['axes'][1]} (coefficient, unitless)",
               title=title)
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    save_figure(fig, path)


# ---- the LwPTV table ----

def lwptv_table(ex: Experiment, pair: tuple[Hashable, Hashable], id_tests: tuple[Hashable, Hashable], ood_test: Hashable,
                accuracy: Callable[[dict[str, Tensor]], Tensor], ratio: float = 0.5,
                scores: Sequence[str] = ("salient_mass", "relative_update"),
                block_names: Mapping[str, str] | None = None, shrink_step: float = 0.05) -> dict:
    """In-domain (the pair's own tests) and OOD accuracy per model [E] of Psi0 + dPsi_1 + dPsi_2, of the same
    merge with LwPTV layer masks (theorylab.edit.lwptv_masks, ratio `ratio`) and, as the control, of uniform
    shrinkage Psi0 + s (dPsi_1 + dPsi_2) with s on a `shrink_step` grid in [0, 1] matched per model to the
    LwPTV merge's in-domain accuracy. block_names renames tensors into LwPTV's blocks.N layer names (a model
    without blocks). accuracy(metrics) -> [G, E]."""
    from theorylab.edit import apply_layer_masks, lwptv_masks

    ren = dict(block_names or {})
    back = {v: k for k, v in ren.items()}
    named = lambda d, m: {m.get(k, k): v for k, v in d.items()}  # noqa: E731
    tests = (*id_tests, ood_test)

    def accs(e: Experiment, coefs: Tensor) -> dict[str, Tensor]:  # [G, E] per test
        r = evaluate_grid(e, pair, coefs, tests)
        a = {"T1": accuracy(r[id_tests[0]]), "T2": accuracy(r[id_tests[1]]), "OOD": accuracy(r[ood_test])}
        return {**a, "ID": (a["T1"] + a["T2"]) / 2}

    s = torch.arange(0, int(round(1 / shrink_step)) + 1, dtype=torch.float32) * shrink_step
    shrink = accs(ex, s[:, None].expand(-1, 2))
    rows = [("task arithmetic Psi0 + dPsi_1 + dPsi_2", {k: v[0] for k, v in accs(ex, torch.ones(1, 2)).items()}, "-")]
    for score in scores:
        tvs = [named(ex.tvs[t], ren) for t in pair]
        masks = lwptv_masks(tvs, named(ex.base, ren), ratio, score=score, model_axis=True)
        masked = apply_layer_masks(tvs, masks, model_axis=True)
        e2 = ex.with_tvs({t: TaskVector(vector=named(v, back)) for t, v in zip(pair, masked)})
        label = {l: ",".join(back.get(n, n) for n in masks.groups[l]) for l in masks.layers}
        pruned = "; ".join(f"{n}: " + "/".join(f"{label[l]} {float((~masks.keep[i, j]).float().mean()):.0%}"
                                              for j, l in enumerate(masks.layers)) for i, n in enumerate(("T1", "T2")))
        a = {k: v[0] for k, v in accs(e2, torch.ones(1, 2)).items()}
        rows.append((f"+ LwPTV ({score}, ratio {ratio})", a, pruned))
        j = (shrink["ID"] - a["ID"][None]).abs().argmin(0)  # [E]: each model's matched shrink
        pick = {k: v.gather(0, j[None])[0] for k, v in shrink.items()}
        rows.append((f"control: uniform shrink (ID matched to {score}, per model)", {**pick, "s": s[j]}, "-"))
    out = [{"merge": name, **{k: [round(float(x), 4) for x in v] for k, v in a.items()}, "pruned": pruned}
           for name, a, pruned in rows]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    md = ["| merge | acc T1 (ID) | acc T2 (ID) | mean ID | acc T' (OOD) | blocks pruned (share of seeds) |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['merge']} | {mean(r['T1']):.4f} | {mean(r['T2']):.4f} | {mean(r['ID']):.4f} | {mean(r['OOD']):.4f} | "
           f"{r['pruned']} |" for r in out]
    return {"rows": out, "per_model": {name: a for name, a, _ in rows}, "markdown": "\n".join(md)}


def guard_finite(fn: Callable[..., Tensor | tuple], *xs: Tensor):
    """fn(*xs) over tensors with the model axis first, computed for the models whose inputs are all finite;
    the others get NaN outputs (an SVD or a least-squares solve raises on a diverged model's NaN weights)."""
    ok = torch.stack([torch.isfinite(x).flatten(1).all(1) for x in xs]).all(0)  # [E]
    shape = lambda t: ok.reshape(-1, *([1] * (t.dim() - 1)))  # noqa: E731
    out = fn(*(torch.where(shape(x), x, torch.zeros((), dtype=x.dtype)) for x in xs))
    nan = lambda t: torch.where(shape(t), t, torch.full((), math.nan, dtype=t.dtype))  # noqa: E731
    return tuple(nan(t) for t in out) if isinstance(out, tuple) else nan(out)
