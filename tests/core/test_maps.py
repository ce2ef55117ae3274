"""Theorem maps (`theorylab map`, core.maps): the command writes a PNG and a JSON whose numbers are the stored
cells', the boundaries evaluate on the grid, bad input is refused in one line before anything trains; every study
that declares maps declares ones its config and a tiny run can fill."""
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.maps import boundary_values, cell_value, get_map, map_grid
from theorylab.core.store import Store
from theorylab.core.study import get_study, study_names
from theorylab.core.sweep import stack_params, train_cells

runner = CliRunner()
CPU = torch.device("cpu")


def tiny_sets(study: str) -> list[str]:
    return [a for k, v in get_study(study).tiny.items() for a in ("--set", f"{k}={v}")]


def run_map(tmp_path, study: str, *grid: str, extra=()):
    store = tmp_path / "s.sqlite"
    args = ["map", study, *[a for g in grid for a in ("--grid", g)], *tiny_sets(study), "--store", str(store),
            "--quiet", *extra]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    folder = tmp_path / "maps" / study
    name = next(iter(get_study(study).maps))
    png, js = folder / f"{study}-{name}.png", folder / f"{study}-{name}.json"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    return json.loads(js.read_text()), Store(store, create=False)


def test_icl_map_means_are_the_stored_cells_metrics(tmp_path):
    d, store = run_map(tmp_path, "icl", "S1=0.6,1.2", "alpha_test=0.1,0.8")
    assert d["x"]["values"] == [0.6, 1.2] and d["y"]["values"] == [0.1, 0.8] and d["seeds"] == [0, 1]
    assert d["metric"]["name"] == "ood_error" and d["title"] and "Thm 2" in d["caption"]
    cells = store.get_cells([h for row in d["cells"] for col in row for h in col])
    for i in range(2):
        for j in range(2):
            got = [cells[h] for h in d["cells"][i][j]]
            assert all(c.config["S1"] == d["x"]["values"][i] and c.config["alpha_test"] == d["y"]["values"][j]
                       for c in got)
            assert d["means"][i][j] == pytest.approx(np.mean([c.metrics["ood_error"] for c in got]), abs=1e-12)
    # S1 and alpha' only change the test: the cells of one seed are one trained model (common random numbers)
    w = store.get_cells([d["cells"][0][0][0], d["cells"][1][1][0]], with_params=True)
    a, b = (w[h].params for h in (d["cells"][0][0][0], d["cells"][1][1][0]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the boundaries on the grid: S1 - 1 and l_ts - 1/alpha'
    s1, length = d["boundaries"]
    assert s1["values"] == [[pytest.approx(-0.4)] * 2, [pytest.approx(0.2)] * 2] and s1["inside_grid"]
    l_ts = get_study("icl").config("quick").l_ts
    assert length["values"][0] == [pytest.approx(l_ts - 10), pytest.approx(l_ts - 1.25)]
    # a second run trains nothing and draws the same numbers
    again, _ = run_map(tmp_path, "icl", "S1=0.6,1.2", "alpha_test=0.1,0.8")
    assert again["means"] == d["means"]


def test_task_vectors_map_is_evaluated_on_trained_task_vectors_with_region8(tmp_path):
    from theorylab.edit.coefficients import in_region8, plane_lambdas
    from theorylab.studies.task_vectors.claims import C_REGION
    from theorylab.studies.task_vectors.data import ood_gammas

    d, store = run_map(tmp_path, "task_vectors", "lambda1=0,1.5,3", "lambda2=-1,2")
    assert store.count("task_vectors") == 2  # the seeds' cells only: the grid is evaluated, not trained
    means = np.array(d["means"], dtype=float)
    assert means.shape == (3, 2) and np.isfinite(means).all() and len(np.unique(means)) == 6
    assert np.allclose(means, np.array(d["per_seed"]).mean(-1))
    # the boundary's sign is region (8) as the claims compute it (edit.coefficients.in_region8)
    cfg = get_study("task_vectors").config("quick", **get_study("task_vectors").tiny)
    inside = in_region8(plane_lambdas([0.0, 1.5, 3.0], [-1.0, 2.0]), ood_gammas([cfg], CPU)[0, :2], 1 / cfg.d, C_REGION)
    assert (np.array(d["boundaries"][0]["values"]).reshape(-1) >= 0).tolist() == inside.tolist()
    assert inside.any() and not inside.all()


def test_mamba_map_measures_iterations_from_the_stored_curves(tmp_path):
    from theorylab.studies.mamba.maps import iterations_to_target

    d, store = run_map(tmp_path, "mamba", "alpha_r=0.2,0.4", "tau=0,0.25")
    cells = store.get_cells([h for row in d["cells"] for col in row for h in col])
    for i in range(2):
        for j in range(2):
            assert d["per_seed"][i][j] == [iterations_to_target(cells[h]) for h in d["cells"][i][j]]
    steps = get_study("mamba").tiny["steps"]
    assert all(0 <= v <= steps + 1 for row in d["per_seed"] for col in row for v in col)
    assert set(d["fitted"]) == {"K", "cells_fitted"} and len(d["boundaries"]) == 2


@pytest.mark.parametrize("args, words", [
    (["icl", "--map", "nope"], ["unknown map", "ood"]),
    (["icl", "--grid", "alpha=0.1,0.2"], ["alpha", "S1", "alpha_test"]),
    (["icl", "--grid", "S1=0.5,200"], ["S1", "100"]),
    (["icl", "--grid", "S1=0.5"], ["at least two"]),
    (["task_vectors", "--grid", "lambda1=0,5"], ["lambda1", "[-2.0, 3.0]"]),
    (["mamba", "--grid", "tau=0,-1"], ["tau"]),
    (["icl", "--seeds", "30000"], ["map refused", "100,000"]),
    (["nosuchstudy"], ["unknown study"]),
    (["graph"], ["declares no theorem maps"]),
])
def test_bad_input_is_refused_in_one_line_before_training(tmp_path, args, words):
    store = tmp_path / "s.sqlite"
    r = runner.invoke(app, ["map", *args, "--store", str(store)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert line.startswith("error:") and "\n" not in line and "Traceback" not in line
    assert all(w in line for w in words), line
    assert not store.exists() and not (tmp_path / "maps").exists()  # nothing trained, nothing written


MAPPED = [n for n in study_names() if get_study(n).maps]


def test_at_least_three_studies_declare_maps():
    assert {"icl", "task_vectors", "mamba"} <= set(MAPPED)


@pytest.mark.parametrize("name", MAPPED)
def test_every_declared_map_fits_its_study(name):
    """The axes are config fields (swept ones: cells of one seed share their world) or bounded evaluation
    parameters; the default grid is valid; the metric exists in a tiny run; every boundary evaluates on the grid."""
    s = get_study(name)
    for map_name, tmap in s.maps.items():
        assert get_map(s, map_name)[1] is tmap and tmap.title and tmap.theorem and tmap.metric_label
        xs, ys = map_grid(s, tmap, {})
        base = s.config("quick", **s.tiny)
        if tmap.evaluate is None:
            for axis, values in ((tmap.x, xs), (tmap.y, ys)):
                assert axis.name in s.config_cls.swept_fields, (map_name, axis.name)
                for v in values:
                    assert base.replace(**{axis.name: v}).world_hash == base.world_hash
            cfgs = [base.replace(**{tmap.x.name: xs[0], tmap.y.name: ys[-1]})]
            cell = train_cells(s, cfgs, Store(":memory:"), CPU)[cfgs[0].hash]
            assert math.isfinite(cell_value(tmap, None, cell)), map_name
        else:
            assert tmap.x.bounds and tmap.y.bounds and tmap.x.name not in s.config_cls.model_fields
            cfgs = [base]
            cells = train_cells(s, cfgs, Store(":memory:"), CPU)
            out = tmap.evaluate(cfgs, stack_params(cells, cfgs, CPU), xs[:2], ys[:2], CPU)
            assert tmap.metric in out and tuple(out[tmap.metric].shape) == (2, 2, 1)
        means = np.ones((len(xs), len(ys)))
        fit = tmap.fit(xs, ys, means, base) if tmap.fit else {}
        for b in tmap.boundaries:
            v = boundary_values(tmap, b, xs, ys, base, fit)
            assert v.shape == (len(xs), len(ys)) and not np.isnan(v).any(), (map_name, b.label)
