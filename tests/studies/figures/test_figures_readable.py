"""The four figures a newcomer found poor, drawn from figure data of tiny runs (tiny_figure_data.json, what the
claims returned at each study's tiny config, 3 seeds): every panel has labelled axes and a legend, the criterion
line is named in the legend, seed spread is drawn where the data has it, no legend covers the bars and no tick
labels overlap."""
import importlib
import json
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

DATA = json.loads((Path(__file__).parent / "tiny_figure_data.json").read_text())


def draw(monkeypatch, tmp_path, study: str, name: str):
    """Draws the figure as the report does and returns it (kept open) with the PNG's path."""
    mod = importlib.import_module(f"theorylab.studies.{study}.plots")
    kept = {}
    real = mod.save_figure

    def keep(fig, path):
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        fig.canvas.draw()
        kept["fig"] = fig

    monkeypatch.setattr(mod, "save_figure", keep)
    path = tmp_path / f"{name}.png"
    mod.PLOTS[name](DATA[study][name], path)
    assert real is not keep and path.stat().st_size > 1000
    return kept["fig"]


def legend_texts(ax) -> list[str]:
    leg = ax.get_legend()
    assert leg is not None, f"panel {ax.get_title()!r} has no legend"
    return [t.get_text() for t in leg.get_texts()]


def labelled(ax) -> None:
    assert ax.get_xlabel() and ax.get_ylabel(), f"panel {ax.get_title()!r} lacks an axis label"


def test_icl_error_vs_alpha_test(monkeypatch, tmp_path):
    fig = draw(monkeypatch, tmp_path, "icl", "error_vs_alpha_test")
    (ax,) = fig.axes
    labelled(ax)
    texts = legend_texts(ax)
    assert any(t.startswith("criterion: 2 x eps_hat") for t in texts)  # the dashed line says what it is
    assert "in-domain" not in ax.get_title() and "OOD" in ax.get_title()  # it plots OOD only, and says so
    curves = DATA["icl"]["error_vs_alpha_test"]["curves"]
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(curves)  # one spread band per curve
    assert "std over seeds" in ax.get_legend().get_title().get_text()


def test_icl_pruning(monkeypatch, tmp_path):
    fig = draw(monkeypatch, tmp_path, "icl", "pruning")
    rates = [r * 100 for r in DATA["icl"]["pruning"]["rates"]]
    assert len(fig.axes) == 3  # no twin axis stretching the rate axis past the data
    for ax in fig.axes:
        labelled(ax)
        legend_texts(ax)
    for ax in fig.axes[:2]:
        assert ax.get_xlim() == pytest.approx((min(rates), max(rates)))
        assert "no pruning (baseline)" in legend_texts(ax)
    assert any(isinstance(c, PolyCollection) for c in fig.axes[0].collections)  # the hinge risk's seed spread


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_dqn_eps_region(monkeypatch, tmp_path):
    fig = draw(monkeypatch, tmp_path, "dqn", "eps_region")
    a1, a2 = fig.axes
    for ax in (a1, a2):
        labelled(ax)
    assert any(t.startswith("criterion:") for t in legend_texts(a2)) and legend_texts(a1)
    labels = [t for t in a1.get_xticklabels() if t.get_text() and t.get_visible()]
    assert [t.get_text() for t in labels] == [f"{r:g}" for r in DATA["dqn"]["eps_region"]["radii"]]
    boxes = [t.get_window_extent() for t in labels]
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])  # no overlapping ticks


def test_retrieval_legend_leaves_the_bars_visible(monkeypatch, tmp_path):
    fig = draw(monkeypatch, tmp_path, "retrieval", "retrieval_table")
    a1, a2, a3 = fig.axes
    for ax in (a1, a2, a3):
        labelled(ax)
    bars = [p.get_window_extent() for p in a1.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    for ax in (a1, a3):
        box = ax.get_legend().get_window_extent()
        assert not _overlap(box, ax.get_window_extent())  # beside the panel, so it covers no bar or curve
    assert bars and len(legend_texts(a1)) == len(DATA["retrieval"]["retrieval_table"]["methods"])
