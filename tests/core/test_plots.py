"""The figure checks (core.plots.figure_defects) find each defect they name on a figure made to have it, and pass
the figures core draws itself: training curves, a theorem map, and a legend save_figure had to move off the data.
Every study's figures are checked on real tiny runs in tests/test_conformance.py."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from theorylab.core.plots import (STD_BAND, figure_defects, legend, mean_band, save_figure,  # noqa: E402
                                  seed_lines, training_curves)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def labelled(ax, x="step (count)", y="error (fraction)"):
    ax.set(xlabel=x, ylabel=y)
    return ax


def two_series():
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labelled(ax)
    ax.plot([0, 1, 2], [1.0, 0.5, 0.2], label="a")
    ax.plot([0, 1, 2], [0.9, 0.6, 0.4], label="b")
    return fig, ax


def test_a_clean_figure_has_no_defects():
    fig, ax = two_series()
    ax.axhline(0.3, ls="--", label="criterion: 2 x eps_hat (same run)")
    ax.legend(loc="upper right")
    fig.tight_layout()  # as save_figure lays it out
    assert figure_defects(fig) == []


@pytest.mark.parametrize("defect, make", [
    ("x axis has no label", lambda ax: ax.set_xlabel("")),
    ("y axis has no label", lambda ax: ax.set_ylabel("")),
    ("series not in any legend", lambda ax: None),  # two labelled series, no legend
    ("reference line/band", lambda ax: (ax.legend(), ax.axhline(0.3))),  # an unnamed criterion line
    ("reference line/band", lambda ax: (ax.axvspan(0.5, 1.0, alpha=0.1, label="pruned"), ax.legend(["a", "b"]))),
    ("x axis spans", lambda ax: (ax.legend(), ax.set_xlim(0, 20))),
    ("legend covers", lambda ax: ax.legend(loc="center", fontsize=20, markerscale=3)),
    ("runs past the edge of the figure",
     lambda ax: ax.legend(loc="upper left", bbox_to_anchor=(1.3, 1)).set_in_layout(False)),
])
def test_each_defect_is_found(defect, make):
    fig, ax = two_series()
    make(ax)
    fig.tight_layout()
    found = figure_defects(fig)
    assert any(defect in f for f in found), found


def test_overlapping_ticks_and_unreadable_axes_are_found():
    fig, ax = plt.subplots(figsize=(3, 2))
    labelled(ax).plot(np.arange(40), np.arange(40))
    ax.set_xticks(np.arange(40), [f"label {i}" for i in range(40)])
    assert any("x tick labels overlap" in f for f in figure_defects(fig))
    fig, ax = plt.subplots()
    labelled(ax).plot([2, 3], [2, 3])
    ax.set_yticks([])
    assert any("no tick label" in f for f in figure_defects(fig))


def test_a_panel_running_into_its_neighbour_is_found():
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6, 3))
    for ax in (a1, a2):
        labelled(ax, x="a very long x label that is far wider than its own panel (count)").plot([0, 1], [0, 1])
    assert any("overlaps the x label" in f for f in figure_defects(fig))


def test_a_colour_bar_needs_a_label():
    fig, ax = plt.subplots()
    im = labelled(ax, "lambda1 (unitless)", "lambda2 (unitless)").imshow(np.eye(3))
    bar = fig.colorbar(im, ax=ax)
    assert any("colour bar" in f for f in figure_defects(fig))
    bar.set_label("loss (unitless)")
    assert figure_defects(fig) == []


def test_a_figure_of_seed_means_must_say_how_their_spread_is_drawn():
    fig, ax = two_series()
    ax.legend(title="mean over seeds")
    assert any("spread" in f for f in figure_defects(fig))
    fig, ax = plt.subplots()
    labelled(ax)
    mean_band(ax, [0, 1, 2], [1, 0.5, 0.2], [0.1, 0.1, 0.05], "a")
    mean_band(ax, [0, 1, 2], [0.9, 0.6, 0.4], None, "b")
    legend(ax, f"mean over seeds; {STD_BAND}")
    assert figure_defects(fig) == [] and len(ax.collections) == 1  # one band: b has no spread recorded


def test_seed_lines_draw_each_seed_thin_and_their_mean_thick():
    fig, ax = plt.subplots()
    ys = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
    mean = seed_lines(labelled(ax), [0, 1], ys, "trained")
    assert mean.get_label() == "trained (mean of 3 seeds)" and len(ax.lines) == 4
    assert mean.get_ydata().tolist() == [3.0, 4.0]  # a NaN seed is left out of the mean


def test_save_figure_moves_a_legend_off_the_data(tmp_path):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labelled(ax)
    x = np.linspace(0, 1, 30)
    ax.plot(x, 0.5 + 0 * x, label="flat at the middle")
    ax.plot(x, x, label="rising")
    ax.legend(loc="center")
    assert any("legend covers" in f for f in figure_defects(fig))
    save_figure(fig, tmp_path / "f.png")
    assert figure_defects(fig) == [] and (tmp_path / "f.png").stat().st_size > 1000


def test_training_curves_are_readable(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figs = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figs.append(self), real(self, *a, **k))[1])
    curves = [{"step": [0, 10, 20], "loss": [1.0, 0.5 + s / 10, 0.2], "test_error": [0.5, 0.3, 0.1 + s / 20]}
              for s in range(3)]
    assert training_curves(curves, tmp_path / "t.png", "study: training curves")
    assert figure_defects(figs[-1]) == []


def test_a_theorem_map_is_readable(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from theorylab.core.maps import Axis, Boundary, MapResult, TheoremMap, draw

    figs = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figs.append(self), real(self, *a, **k))[1])
    tmap = TheoremMap("T loss", "Thm: loss small where x > y.", Axis("x", "x (unitless)", (0, 1, 2)),
                      Axis("y", "y (unitless)", (0, 1)), "loss", "loss (unitless)",
                      (Boundary("x = y (Thm: below the line)", lambda x, y, cfg, fit: x - y),))
    vals = np.random.default_rng(0).random((3, 2, 3))
    res = MapResult([0.0, 1.0, 2.0], [0.0, 1.0], vals, "loss", [0, 1, 2])
    draw(tmap, res, None, {}, "t", "caption", tmp_path / "m.png")
    fig = figs[-1]
    assert figure_defects(fig) == []
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert len(cells) == 6 and all("±" in c for c in cells)  # each cell gives its seed spread
    assert "std over seeds" in fig._suptitle.get_text()
