"""Theorem maps: a measured quantity over two of a theorem's quantities, with the theorem's predicted boundary
drawn over it (`theorylab map STUDY`).

A study declares its maps (Study.maps: name -> TheoremMap). A map's two axes are either config fields (every grid
point is a cell, trained through core.sweep so it lands in the store and resumes; the measured value is a cell
metric, or a function of the cell) or evaluation parameters (`evaluate`: the seeds' cells are trained once and
the whole grid is evaluated on their weights, e.g. task-arithmetic coefficients). The boundary is a function whose
zero contour is what the theorem predicts; its positive side is where the theorem says the good thing happens.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from theorylab.core.config import ConfigError, StudyConfig

BoundaryFn = Callable[[float, float, StudyConfig, dict], float]  # (x, y, cfg, fitted constants) -> value


@dataclass(frozen=True)
class Axis:
    name: str  # a config field, or (maps with `evaluate`) the name of an evaluation parameter
    label: str  # the axis label: symbol and meaning
    grid: tuple  # default values
    bounds: tuple[float, float] | None = None  # an evaluation parameter's allowed [lo, hi] (a field has its own)
    why: str = ""  # what the bounds are, for the error message


@dataclass(frozen=True)
class Boundary:
    label: str  # the legend entry: which theorem / equation, and the line it draws
    fn: BoundaryFn  # zero contour: the predicted boundary; > 0: the side where the theorem predicts success


@dataclass(frozen=True)
class TheoremMap:
    title: str
    theorem: str  # which theorem / equation the boundary is, and what it predicts on each side
    x: Axis
    y: Axis
    metric: str | Callable[[Any], float]  # a cell metric name, or fn(cell record) -> float (maps over fields)
    metric_label: str  # the colour bar's label
    boundaries: tuple[Boundary, ...]
    # maps over evaluation parameters: evaluate(cfgs, params [E, ...], xs, ys, device) -> {metric: [nx, ny, E]}
    evaluate: Callable[..., dict] | None = None
    # constants of a boundary that the theorem leaves open (a Theta's constant), fitted to the measured means:
    # fit(xs, ys, means [nx, ny], cfg) -> {name: value}; passed to every boundary function and written to the JSON
    fit: Callable[[list, list, np.ndarray, StudyConfig], dict] | None = None
    cmap: str = "viridis"
    note: str = ""  # a line for the caption (how censored values are shown, ...)

    @property
    def axes(self) -> tuple[Axis, Axis]:
        return self.x, self.y


def get_map(study, name: str | None) -> tuple[str, TheoremMap]:
    """The study's map `name` (its only map when name is None); ConfigError naming the known ones."""
    maps = getattr(study, "maps", None) or {}
    if not maps:
        raise ConfigError(f"study {study.name!r} declares no theorem maps")
    if name is None:
        if len(maps) > 1:
            raise ConfigError(f"study {study.name!r} has several maps; pick one with --map ({', '.join(maps)})")
        name = next(iter(maps))
    if name not in maps:
        raise ConfigError(f"--map: unknown map {name!r} for study {study.name!r}; known: {', '.join(maps)}")
    return name, maps[name]


def map_grid(study, tmap: TheoremMap, grid: dict[str, list]) -> tuple[list, list]:
    """(xs, ys): the --grid values of the map's two axes (their defaults where not given). ConfigError naming the
    field and its allowed range for a key that is not an axis, a value outside an evaluation axis's range, a
    non-number, or fewer than two values. Field values are checked cell by cell by core.grid later."""
    names = [a.name for a in tmap.axes]
    extra = [k for k in grid if k not in names]
    if extra:
        raise ConfigError(f"--grid {extra[0]}: this map sweeps {names[0]} and {names[1]} only")
    out = []
    for axis in tmap.axes:
        values = list(grid.get(axis.name, axis.grid))
        if len(values) < 2:
            raise ConfigError(f"--grid {axis.name}: a map needs at least two values per axis (got {values})")
        if tmap.evaluate is None:
            if axis.name not in study.config_cls.model_fields:
                raise ConfigError(f"map axis {axis.name!r} is not a field of {study.name}")  # a study's own bug
        else:
            lo, hi = axis.bounds or (-math.inf, math.inf)
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                    raise ConfigError(f"--grid {axis.name}: {v!r} is outside the allowed range [{lo}, {hi}]"
                                      + (f" ({axis.why})" if axis.why else ""))
            values = [float(v) for v in values]
        out.append(values)
    return out[0], out[1]


# ------------------------------------------------------------------------------------------ measuring
@dataclass
class MapResult:
    xs: list
    ys: list
    values: np.ndarray  # [nx, ny, seeds] per-seed values (NaN: the cell diverged or has no value)
    metric: str
    seeds: list[int]
    hashes: list[list[list[str]]] = field(default_factory=list)  # [nx][ny][seeds] cell hashes (field maps)

    @property
    def means(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            v = self.values.astype(float)
            n = np.isfinite(v).sum(-1)
            return np.where(n > 0, np.nansum(v, -1) / np.maximum(n, 1), np.nan)


def cell_value(tmap: TheoremMap, metric: str | None, cell) -> float:
    """The measured value of one stored cell (NaN for a cell that did not finish)."""
    if cell.status != "done":
        return math.nan
    what = metric or tmap.metric
    if callable(what):
        return float(what(cell))
    if what not in cell.metrics:
        known = ", ".join(sorted(k for k, v in cell.metrics.items() if isinstance(v, (int, float))))
        raise ConfigError(f"--metric {what!r} is not a metric of {cell.study}'s cells; known: {known}")
    return float(cell.metrics[what])


def measure_cells(tmap: TheoremMap, xs: list, ys: list, cfgs: Sequence[StudyConfig], store,
                  metric: str | None = None) -> MapResult:
    """Per-seed values of a field map from the stored cells; cfgs in core.grid's order (x, then y, then seed)."""
    nx, ny = len(xs), len(ys)
    S = len(cfgs) // (nx * ny)
    cells = store.get_cells([c.hash for c in cfgs])
    vals = np.full((nx, ny, S), np.nan)
    hashes = [[["" for _ in range(S)] for _ in range(ny)] for _ in range(nx)]
    for k, c in enumerate(cfgs):
        i, rest = divmod(k, ny * S)
        j, s = divmod(rest, S)
        vals[i, j, s] = cell_value(tmap, metric, cells[c.hash])
        hashes[i][j][s] = c.hash
    name = metric or (tmap.metric if isinstance(tmap.metric, str) else tmap.metric_label)
    return MapResult(xs, ys, vals, name, [c.seed for c in cfgs[:S]], hashes)


def measure_evaluated(tmap: TheoremMap, xs: list, ys: list, cfgs: Sequence[StudyConfig], params: dict, device,
                      metric: str | None = None) -> MapResult:
    """Per-seed values of an evaluated map: the grid evaluated on the seeds' trained weights."""
    out = tmap.evaluate(cfgs, params, xs, ys, device)
    name = metric or tmap.metric
    if name not in out:
        raise ConfigError(f"--metric {name!r} is not measured by this map; known: {', '.join(sorted(out))}")
    vals = np.asarray(out[name].double().cpu() if hasattr(out[name], "cpu") else out[name], dtype=float)
    return MapResult(xs, ys, vals, name, [c.seed for c in cfgs])


def boundary_values(tmap: TheoremMap, b: Boundary, xs, ys, cfg: StudyConfig, fit: dict) -> np.ndarray:
    return np.array([[float(b.fn(float(x), float(y), cfg, fit)) for y in ys] for x in xs])


# ------------------------------------------------------------------------------------------ drawing
def _index_to_value(values: Sequence[float], u: np.ndarray) -> np.ndarray:
    """Fractional grid index -> axis value, piecewise linear through the grid, extended past both ends by the end
    segments (the heatmap draws cell i over [i - 1/2, i + 1/2], whatever the spacing of the values)."""
    v = np.asarray(values, dtype=float)
    i = np.clip(np.floor(u).astype(int), 0, len(v) - 2)
    return v[i] + (u - i) * (v[i + 1] - v[i])


def _tick(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def draw(tmap: TheoremMap, res: MapResult, cfg: StudyConfig, fit: dict, title: str, caption: str, path) -> list[str]:
    """The heatmap of the seed means with every boundary's zero contour, a legend and the caption below it; returns,
    per boundary, "" when its line falls inside the grid, else why it is not drawn."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    nx, ny = len(res.xs), len(res.ys)
    means = res.means
    # the layout in inches, top to bottom: title, heatmap (colour bar at its right), tick labels and axis label,
    # legend, caption
    W = max(7.5, 0.8 * nx + 4.2)
    heat_w, heat_h = W - 3.2, max(3.4, 0.5 * ny + 1.8)
    chars = int((W - 0.4) * 72 / (7 * 0.62))  # characters of a 7 pt caption line across the figure
    cap = textwrap.fill(caption, chars)
    legend_h = 0.22 * (len(tmap.boundaries) + 1) + 0.25
    cap_h = 0.13 * (cap.count("\n") + 1) + 0.2
    below = 0.85 + legend_h + cap_h
    H = 0.7 + heat_h + below
    fig = plt.figure(figsize=(W, H))
    ax = fig.add_axes((1.2 / W, below / H, heat_w / W, heat_h / H))
    cax = fig.add_axes(((1.2 + heat_w + 0.2) / W, below / H, 0.22 / W, heat_h / H))
    im = ax.imshow(means.T, origin="lower", aspect="auto", cmap=tmap.cmap, extent=(-0.5, nx - 0.5, -0.5, ny - 0.5))
    bar = fig.colorbar(im, cax=cax)
    bar.set_label(textwrap.fill(tmap.metric_label, 44), fontsize=8)
    finite = means[np.isfinite(means)]
    with np.errstate(all="ignore"):  # the seed spread of each cell (NaN seeds left out)
        stds = np.nanstd(res.values.astype(float), -1) if res.values.shape[-1] > 1 else None
    if nx * ny <= 100:  # small grids: the value in each cell, with its spread over seeds
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for i in range(nx):
            for j in range(ny):
                m = means[i, j]
                light = bool(np.isfinite(m) and hi > lo and (m - lo) / (hi - lo) > 0.6) != tmap.cmap.endswith("_r")
                text = "n/a" if not np.isfinite(m) else f"{m:.3g}" + (
                    f"\n±{stds[i, j]:.2g}" if stds is not None and np.isfinite(stds[i, j]) else "")
                ax.text(i, j, text, ha="center", va="center", fontsize=6.5, linespacing=1.0,
                        color="black" if light else "white")
    ax.set_xticks(range(nx), [_tick(v) for v in res.xs], rotation=45 if nx > 8 else 0, fontsize=8)
    ax.set_yticks(range(ny), [_tick(v) for v in res.ys], fontsize=8)
    ax.set_xlabel(textwrap.fill(tmap.x.label, int(heat_w * 72 / (9 * 0.55))), fontsize=9)
    ax.set_ylabel(textwrap.fill(tmap.y.label, int(heat_h * 72 / (9 * 0.55))), fontsize=9)
    # boundaries on a fine grid of index coordinates, mapped to values: exact whatever the grid's spacing
    u = np.linspace(-0.5, nx - 0.5, min(40 * nx, 400) + 1)
    w = np.linspace(-0.5, ny - 0.5, min(40 * ny, 400) + 1)
    xv, yv = _index_to_value(res.xs, u), _index_to_value(res.ys, w)
    styles = [("white", "-"), ("red", "--"), ("orange", ":"), ("cyan", "-.")]
    handles, where = [], []
    for k, b in enumerate(tmap.boundaries):
        color, ls = styles[k % len(styles)]
        outline = [patheffects.withStroke(linewidth=4.2, foreground="black")]  # visible on light and dark cells
        z = np.array([[b.fn(float(x), float(y), cfg, fit) for x in xv] for y in yv], dtype=float)  # [w, u]
        known = z[~np.isnan(z)]
        crosses = bool((known < 0).any() and (known > 0).any())
        if crosses:  # -inf / +inf (a side the theorem rules out or in outright) contour as far-off values
            ax.contour(u, w, np.nan_to_num(z, nan=np.nan, posinf=1e300, neginf=-1e300), levels=[0.0], colors=[color],
                       linestyles=[ls], linewidths=2.2).set(path_effects=outline)
            where.append("")
        elif not known.size:
            where.append("not drawn: undefined on this grid")
        else:
            where.append("outside the grid (" + ("predicted everywhere on it" if known.min() >= 0 else
                                                 "predicted nowhere on it") + ")")
        label = b.label + (f" [{where[-1]}]" if where[-1] else "")
        handles.append(Line2D([], [], color=color, ls=ls, lw=2.2, label=label, path_effects=outline))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.15 / W, (cap_h + legend_h) / H), fontsize=7.5,
               frameon=False, title="predicted boundary (the theorem's condition holds on the side named)",
               title_fontsize=7.5, alignment="left")
    fig.text(0.15 / W, cap_h / H, cap, fontsize=7, va="top", ha="left")
    spread = "; below it, ± 1 std over seeds" if nx * ny <= 100 and len(res.seeds) > 1 else ""
    fig.suptitle(f"{title}\n(each cell: mean of {len(res.seeds)} seed{'s' * (len(res.seeds) > 1)}{spread})", fontsize=10,
                 y=1 - 0.08 / H, va="top")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return where


def _json_value(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def map_record(study, name: str, tmap: TheoremMap, res: MapResult, cfg: StudyConfig, fit: dict, size: str,
               overrides: dict, where: list[str], title: str, caption: str) -> dict:
    """The JSON written beside the PNG: what the map shows and its numbers ([i][j]: x[i], y[j])."""
    grid = lambda a: [[_json_value(float(v)) for v in row] for row in a]  # noqa: E731
    return {
        "title": title, "caption": caption, "study": study.name, "map": name, "theorem": tmap.theorem,
        "x": {"field": tmap.x.name, "label": tmap.x.label, "values": list(res.xs)},
        "y": {"field": tmap.y.name, "label": tmap.y.label, "values": list(res.ys)},
        "metric": {"name": res.metric, "label": tmap.metric_label},
        "layout": "means[i][j] and per_seed[i][j][s]: x = x.values[i], y = y.values[j], seed = seeds[s]",
        "means": grid(res.means), "per_seed": [[[_json_value(float(v)) for v in cell] for cell in row]
                                               for row in res.values],
        "seeds": res.seeds, "size": size, "overrides": overrides,
        "cells": res.hashes or None,
        "boundaries": [{"label": b.label, "values": grid(boundary_values(tmap, b, res.xs, res.ys, cfg, fit)),
                        "inside_grid": not w, "note": w} for b, w in zip(tmap.boundaries, where)],
        "fitted": {k: v if isinstance(v, int) else _json_value(float(v)) for k, v in fit.items()}, "note": tmap.note,
    }


def write_map(study, name: str, tmap: TheoremMap, res: MapResult, cfg: StudyConfig, size: str, overrides: dict,
              out_dir: Path) -> tuple[Path, Path]:
    """<out>/<study>-<map>.png and .json, each written atomically."""
    from theorylab.core.outputs import write_atomically

    fit = dict(tmap.fit(res.xs, res.ys, res.means, cfg)) if tmap.fit else {}
    title = f"{study.name}: {tmap.title}"
    given = ", ".join(f"{k}={v}" for k, v in overrides.items())
    caption = (f"{tmap.theorem} Measured: {tmap.metric_label}, mean over seeds {res.seeds} at size {size}"
               + (f" with {given}" if given else "") + "."
               + (" Fitted: " + ", ".join(f"{k} = {v:.4g}" for k, v in fit.items()) + "." if fit else "")
               + (f" {tmap.note}" if tmap.note else ""))
    out_dir = Path(out_dir)
    png, js = out_dir / f"{study.name}-{name}.png", out_dir / f"{study.name}-{name}.json"
    where: list[str] = []
    write_atomically(png, lambda tmp: where.extend(draw(tmap, res, cfg, fit, title, caption, tmp)))
    record = map_record(study, name, tmap, res, cfg, fit, size, overrides, where, title, caption)
    write_atomically(js, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return png, js
