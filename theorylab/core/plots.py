"""What every study's figures share, and the figure every study gets without writing one: its training curves.

Shared: save_figure (lays out, moves a legend off the data, writes), the seed-spread helpers (seed_lines, mean_band)
with the notes that say which spread is drawn, legend / shared_legend / log_ticks, and figure_defects, the checks
every figure passes (docs/figures.md)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

STEP_KEYS = ("step", "iter", "epoch")  # the x axis of a cell's curves (the first one present)
X_LABELS = {"step": "training step (steps)", "iter": "iteration (steps)", "epoch": "epoch (count)"}
MAX_PANELS = 6
# how a figure's seed spread is drawn, said in its legend or title
SEED_LINES = "thick: mean; thin: each seed"
STD_BAND = "shaded: ±1 std over seeds"
ERROR_BARS = "bars: ±1 std over seeds"


def save_figure(fig, path) -> None:
    """Lays the figure out, moves any legend that covers a data point off it (see _move_covering_legends), and
    writes it."""
    fig.tight_layout()
    for _ in range(3):  # a move changes the layout; the next pass checks the new one
        if not _move_covering_legends(fig):
            break
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


INSIDE = ("upper right", "upper left", "lower left", "lower right", "center right", "center left", "upper center",
          "lower center", "center")


def _move_covering_legends(fig) -> bool:
    """A legend inside a panel that covers one of its data points (or criterion lines) moves to the inside spot
    that covers none, or, when every one does, under the panel with the figure made taller by the legend's height
    (the panels keep their size). True when one moved."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    moved = False
    for ax in fig.axes:
        lg = ax.get_legend()
        if lg is None or ax.images or not _covered_points(ax, lg, renderer):
            continue
        moved = True
        for loc in INSIDE:
            lg.set_loc(loc)
            if not _covered_points(ax, lg, renderer):
                break
        else:  # under the panel's tick labels and x label (an offset in points: it holds through a re-layout)
            from matplotlib.transforms import offset_copy

            lg.set_loc("upper center")
            drop = (ax.get_window_extent(renderer).y0 - _tight_bottom(ax, renderer)) * 72 / fig.dpi + 4
            lg.set_bbox_to_anchor((0.5, 0), transform=offset_copy(ax.transAxes, fig=fig, y=-drop, units="points"))
            w, h = fig.get_size_inches()
            fig.set_size_inches(w, h + lg.get_window_extent(renderer).height / fig.dpi + 0.1)
    return moved


def _tight_bottom(ax, renderer) -> float:
    """The lowest pixel of a panel's frame, tick labels and x label (its legend left out)."""
    boxes = [ax.get_window_extent(renderer)]
    boxes += [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    if ax.xaxis.label.get_text():
        boxes.append(ax.xaxis.label.get_window_extent(renderer))
    return min(b.y0 for b in boxes)


def _covered_points(ax, lg, renderer) -> int:
    box, frame = lg.get_window_extent(renderer), ax.get_window_extent(renderer)
    if not _overlap(box, frame):
        return 0
    pts = _data_points(ax)
    return int(((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)).sum())


def curve_panels(curves: list[dict[str, list]]) -> tuple[str, list[str]]:
    """(x key, curve names to draw) of per-model curve dicts: names every model has, of the x axis's length."""
    x_key = next((k for k in STEP_KEYS if all(k in c for c in curves)), None)
    if x_key is None:
        return "", []
    n = len(curves[0][x_key])
    names = [k for k in curves[0] if k != x_key and all(len(c.get(k) or ()) == n for c in curves)]
    return x_key, names[:MAX_PANELS]


def training_curves(curves: list[dict[str, list]], path, title: str = "") -> bool:
    """One panel per recorded curve: every seed thin, their mean thick. False (nothing drawn) when the curves
    share no x axis."""
    x_key, names = curve_panels(curves)
    if not names:
        return False
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        x = np.asarray(curves[0][x_key], dtype=float)
        ys = np.asarray([c[name] for c in curves], dtype=float)  # [seeds, T]
        for i, y in enumerate(ys):
            ax.plot(x, y, color="tab:blue", alpha=0.3, lw=0.8, label="each seed" if i == 0 else None)
        with np.errstate(all="ignore"):
            ax.plot(x, np.nanmean(ys, 0), color="tab:blue", lw=2, label=f"mean of {len(ys)} seeds")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(X_LABELS.get(x_key, x_key))
        ax.set_ylabel(f"{name} (as recorded)", fontsize=8)
        positive = ys[np.isfinite(ys)]
        if positive.size and (positive > 0).all() and positive.max() / positive.min() > 100:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best", title=SEED_LINES, title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return True


# ------------------------------------------------------------------------------------------ seed spread helpers


def seed_lines(ax, x, ys, label: str, color=None, style: str = "-", ms: float = 0, **kw):
    """Every seed thin, their mean thick (NaN-aware), one legend entry "label (mean of N seeds)"; returns the mean's
    line. ys: [seeds, len(x)]."""
    ys = np.atleast_2d(np.asarray(ys, dtype=float))
    with np.errstate(all="ignore"):
        mean = np.nanmean(ys, 0)
    line, = ax.plot(x, mean, style, color=color, lw=2, ms=ms, label=f"{label} (mean of {len(ys)} seeds)", **kw)
    if len(ys) > 1:
        for y in ys:
            ax.plot(x, y, style.replace("o", "").replace("s", "").replace("^", "") or "-", color=line.get_color(),
                    lw=0.7, alpha=0.35, **kw)
    return line


def mean_band(ax, x, mean, std, label: str, color=None, style: str = "-", floor: float | None = None, **kw):
    """The mean as a line with a +-1 std band over seeds; `floor` clips line and band (a log axis's floor, or 0 for
    a quantity that cannot be negative); returns the line."""
    mean = np.asarray(mean, dtype=float)
    shown = mean if floor is None else np.maximum(mean, floor)
    line, = ax.plot(x, shown, style, color=color, label=label, **kw)
    if std is not None:
        sd = np.asarray(std, dtype=float)
        lo, hi = mean - sd, mean + sd
        if floor is not None:
            lo, hi = np.maximum(lo, floor), np.maximum(hi, floor)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
    return line


def pruned_rows_panel(ax, sorted_norms, rate_max: float, label: str) -> None:
    """Which rows magnitude pruning removes: the sorted row norms with the pruned share (up to rate_max %) shaded."""
    norms = np.asarray(sorted_norms, dtype=float)
    rank = (np.arange(len(norms)) + 0.5) / len(norms) * 100
    ax.plot(rank, norms, c="gray", label=label)
    ax.axvspan(0, rate_max, color="C0", alpha=0.1, label=f"smallest rows pruned up to R = {rate_max:g}%")
    ax.set(xlabel="row rank by norm (% of rows)", ylabel="row norm (weight units)", xlim=(0, 100),
           title="which rows a rate R removes")
    legend(ax)


def legend(ax, note: str = "", outside: bool = False, **kw):
    """The panel's legend where it covers least (loc='best'), or to the right of the panel; `note` (how the seed
    spread is drawn) becomes its title."""
    kw.setdefault("fontsize", 7)
    if note:
        kw.update(title=note, title_fontsize=7)
    if outside:
        kw.update(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    else:
        kw.setdefault("loc", "best")
    return ax.legend(**kw)


def shared_legend(ax, axes, note: str = "", **kw):
    """One legend for panels that draw the same series: every distinct label of `axes`, beside `ax` (on its right)."""
    seen: dict[str, object] = {}
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return legend(ax, note, outside=True, handles=list(seen.values()), labels=list(seen), **kw)


# ------------------------------------------------------------------------------------------ readability checks
SEED_AGGREGATE = ("mean over seeds", "mean of", "seed mean", "mean over draws")
SPREAD_WORDS = ("std", "each seed", "per seed", "thin", "min-max", "one line per seed", "seeds behind", "dots: seeds")


def _is_reference(artist, ax) -> bool:
    """An axhline / axvline / axhspan / axvspan: drawn in the axes' blended transforms."""
    refs = (ax.get_xaxis_transform(), ax.get_yaxis_transform())
    t = artist.get_data_transform() if hasattr(artist, "get_data_transform") else artist.get_transform()
    return any(t is r for r in refs)


def _labelled(artist) -> bool:
    lab = artist.get_label()
    return bool(lab) and not lab.startswith("_")


def _overlap(a, b, pad: float = 0.0) -> bool:
    return a.x0 + pad < b.x1 and b.x0 + pad < a.x1 and a.y0 + pad < b.y1 and b.y0 + pad < a.y1


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the data an axes draws (line vertices, scatter points, bar tops), references excluded."""
    pts = []
    for line in ax.lines:  # criterion / reference lines too: a legend over them hides what they mark
        if line.get_visible() and len(line.get_xydata()):
            xy = line.get_transform().transform(line.get_xydata())
            if len(xy) > 1 and line.get_linestyle() not in ("None", "none", "", " "):  # points along each segment
                t = np.linspace(0, 1, 12)[:, None, None]
                xy = (xy[:-1][None] * (1 - t) + xy[1:][None] * t).reshape(-1, 2)
            pts.append(xy)
    for c in ax.collections:
        offs = getattr(c, "get_offsets", lambda: np.empty((0, 2)))()
        if type(c).__name__ == "PathCollection" and len(offs):
            pts.append(c.get_offset_transform().transform(offs))
    for p in ax.patches:  # bars: a grid of points over each bar
        if type(p).__name__ == "Rectangle" and not _is_reference(p, ax) and p.get_height() != 0:
            e = p.get_window_extent()
            gx, gy = np.meshgrid(np.linspace(e.x0, e.x1, 5), np.linspace(e.y0, e.y1, 9))
            pts.append(np.stack([gx.ravel(), gy.ravel()], 1))
    pts = [p for p in pts if np.isfinite(p).all(1).any()]
    return np.concatenate(pts) if pts else np.empty((0, 2))


def _shares_labelled(ax, axis) -> bool:
    """True when the axis is shared with another panel (its tick labels are drawn there)."""
    group = ax.get_shared_x_axes() if axis is ax.xaxis else ax.get_shared_y_axes()
    return len(group.get_siblings(ax)) > 1


def log_ticks(ax, values, axis: str = "x") -> None:
    """Ticks of a log axis at the given values, written plainly (no 2x10^0, no crowded minor labels)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    a = ax.xaxis if axis == "x" else ax.yaxis
    vals = sorted({float(v) for v in values if np.isfinite(v) and v > 0})
    a.set_major_locator(FixedLocator(vals))
    a.set_minor_locator(NullLocator())
    a.set_ticklabels([f"{v:g}" for v in vals])


def _panel_overlaps(fig, renderer) -> list[str]:
    """A title, axis label or legend of one panel over another panel's frame or text (twin axes count as one)."""
    parts = []
    for k, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = ax.get_title() or ax.get_ylabel() or f"axes {k}"
        items = [("frame", ax.get_window_extent(renderer))]
        for what, t in (("title", ax.title), ("x label", ax.xaxis.label), ("y label", ax.yaxis.label)):
            if t.get_text() and t.get_visible():
                items.append((what, t.get_window_extent(renderer)))
        if ax.get_legend() is not None:
            items.append(("legend", ax.get_legend().get_window_extent(renderer)))
        parts.append((name, ax.get_position().bounds, items))
    out = []
    page = fig.bbox
    for name, _, items in parts:
        for what, box in items:
            if what != "frame" and (box.x0 < page.x0 - 2 or box.x1 > page.x1 + 2 or box.y0 < page.y0 - 2
                                    or box.y1 > page.y1 + 2):
                out.append(f"{name}: its {what} runs past the edge of the figure")
    for i, (n1, pos1, items1) in enumerate(parts):
        for n2, pos2, items2 in parts[i + 1:]:
            if np.allclose(pos1, pos2):  # twin axes
                continue
            for w1, b1 in items1:
                for w2, b2 in items2:
                    if (w1, w2) != ("frame", "frame") and _overlap(b1, b2, 1.0):
                        out.append(f"{n1}: its {w1} overlaps the {w2} of {n2}")
    return out


def figure_defects(fig) -> list[str]:
    """What makes a figure hard to read, one line each (empty: none found). Every shown axis is labelled (units are
    a reviewer's call); a colour bar says what its colour is; every reference line (axhline/axvline/span) is named in
    a legend, and so is every labelled series of a panel drawing two or more; a panel of several unlabelled line
    colours has a legend; no legend inside a panel covers a data point; no two tick labels overlap; no title, axis
    label or legend runs into another panel; no x axis spans more than 1.5x its data; a figure that says it averages
    seeds also says how their spread is drawn."""
    if not hasattr(fig.canvas, "get_renderer"):  # a closed figure: draw it on an Agg canvas of its own
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out: list[str] = []
    legends = [lg for a in fig.axes for lg in ([a.get_legend()] if a.get_legend() else [])] + list(fig.legends)
    in_legend = {t.get_text() for lg in legends for t in lg.get_texts()}
    texts = [fig._suptitle.get_text() if fig._suptitle else ""] + [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        name = ax.get_title() or ax.get_ylabel() or f"axes {fig.axes.index(ax)}"
        if not hasattr(ax, "_colorbar") and not ax.images:  # a heatmap of means says so; its spread is in the data
            texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        if not ax.get_visible() or not ax.axison:
            continue
        if hasattr(ax, "_colorbar"):
            if not ax.get_ylabel() and not ax.get_xlabel():
                out.append(f"{name}: colour bar without a label")
            continue
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            shown = axis.get_visible() and any(t.get_visible() and t.get_text() for t in axis.get_ticklabels())
            if shown and not label.strip():
                out.append(f"{name}: {axis.axis_name} axis has no label")
            ticked = [t for t in axis.get_ticklabels(minor=False) + axis.get_ticklabels(minor=True)
                      if t.get_visible() and t.get_text()]
            if axis.get_visible() and label.strip() and not ticked and not _shares_labelled(ax, axis):
                out.append(f"{name}: {axis.axis_name} axis shows no tick label (no value can be read)")
            boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            if any(_overlap(a, b, 0.5) for i, a in enumerate(boxes) for b in boxes[i + 1:]):
                out.append(f"{name}: {axis.axis_name} tick labels overlap")
        artists = list(ax.lines) + list(ax.collections) + list(ax.patches) + list(ax.containers)
        refs = [a for a in list(ax.lines) + list(ax.patches) if _is_reference(a, ax)]
        for r in refs:
            if not _labelled(r) or r.get_label() not in in_legend:
                out.append(f"{name}: a reference line/band ({r.get_label() or 'unlabelled'}) is not named in a legend")
        labelled = [a.get_label() for a in artists if _labelled(a) and a not in refs]
        if len(set(labelled)) >= 2:
            missing = sorted(set(labelled) - in_legend)
            if missing:
                out.append(f"{name}: series not in any legend: {missing}")
        colours = {str(line.get_color()) for line in ax.lines if not _is_reference(line, ax)}
        if len(colours) >= 2 and not labelled and ax.get_legend() is None:
            out.append(f"{name}: {len(colours)} line colours and no legend")
        lg = ax.get_legend()
        if lg is not None and not ax.images:
            covered = _covered_points(ax, lg, renderer)
            if covered:
                out.append(f"{name}: the legend covers {covered} data point(s)")
        if not ax.images and ax.dataLim.width > 0 and np.isfinite(ax.dataLim.intervalx).all():
            lo, hi = sorted(ax.get_xlim())
            dlo, dhi = ax.dataLim.intervalx
            if ax.get_xscale() == "log" and min(lo, dlo) > 0:
                lo, hi, dlo, dhi = np.log(lo), np.log(hi), np.log(dlo), np.log(dhi)
            if (hi - lo) > 1.5 * (dhi - dlo) + 1e-12:
                out.append(f"{name}: x axis spans {(hi - lo) / (dhi - dlo):.1f}x its data")
        if lg is not None and not ax.images:  # a heatmap's legend names its lines; its means are said on the bar
            texts += [lg.get_title().get_text()] + [t.get_text() for t in lg.get_texts()]
    out += _panel_overlaps(fig, renderer)
    texts += [lg.get_title().get_text() for lg in fig.legends] + [t.get_text() for lg in fig.legends
                                                                 for t in lg.get_texts()]
    low = " | ".join(texts).lower()
    if any(w in low for w in SEED_AGGREGATE) and "seed" in low and not any(w in low for w in SPREAD_WORDS):
        out.append("the figure averages seeds but does not say how their spread is drawn")
    return out
