"""Grid parsing and expansion, grouping, chunk planning, and clear errors for bad grids."""
import pytest

from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.config import ConfigError
from theorylab.core.memory import footprint
from theorylab.core.grid import expand_grid, grid_size, parse_grid, parse_grid_item
from theorylab.core.study import get_study
from theorylab.core.sweep import group_cells, plan_chunks


def test_parse_lists_and_inclusive_ranges():
    key, values = parse_grid_item("seed=0..3")
    assert key == "seed" and list(values) == [0, 1, 2, 3]
    assert parse_grid_item("lr=0.1,1,1e-3") == ("lr", [0.1, 1, 1e-3])
    assert parse_grid_item("train_task_offsets=[1,5],[2,4]") == ("train_task_offsets", [[1, 5], [2, 4]])
    assert parse_grid_item(" alpha = 0.5 ") == ("alpha", [0.5])
    assert parse_grid(["lr=1,5", "seed=0..63"]) == {"lr": [1, 5], "seed": range(64)}


def test_expand_grid_product_with_seed_offsets():
    icl = get_study("icl")
    cells = expand_grid(icl, "quick", {"steps": 10}, {"lr": [1.0, 5.0], "alpha": [0.6, 0.8, 1.0]}, seeds=2)
    assert len(cells) == grid_size({"lr": [1, 5], "alpha": [0, 0, 0]}, 2) == 12
    assert {(c.lr, c.alpha, c.seed) for c in cells} == {(lr, a, s) for lr in (1.0, 5.0) for a in (0.6, 0.8, 1.0) for s in (0, 1)}
    assert all(c.steps == 10 for c in cells)
    assert len({c.hash for c in cells}) == 12
    # the base seed from --set shifts the offsets, like `run --seeds`
    assert [c.seed for c in expand_grid(icl, "quick", {"seed": 7}, {}, seeds=3)] == [7, 8, 9]


@pytest.mark.parametrize("item, words", [
    ("lr", ["'lr'", "key=v1,v2"]),
    ("lr=", ["'lr='", "key=v1,v2"]),
    ("=1,2", ["'=1,2'"]),
    ("seed=5..2", ["'seed=5..2'", "empty range"]),
    ("seed=a..3", ["'seed=a..3'", "integers"]),
    ("seed=0.5..3", ["'seed=0.5..3'", "integers"]),
    ("lr=1,,2", ["'lr=1,,2'", "empty value"]),
])
def test_bad_grid_syntax_names_the_item(item, words):
    with pytest.raises(ConfigError) as e:
        parse_grid([item])
    for w in words:
        assert w in str(e.value)


def test_bad_grid_values_name_cell_field_and_range():
    icl = get_study("icl")
    with pytest.raises(ConfigError, match="already given"):
        parse_grid(["lr=1", "lr=2"])
    with pytest.raises(ConfigError, match="unknown field.*'lrr'"):
        expand_grid(icl, "quick", {}, {"lrr": [1]})
    with pytest.raises(ConfigError) as e:
        expand_grid(icl, "quick", {}, {"seed": [0, 1], "lr": [1.0, 0.0]})
    msg = str(e.value)
    assert "grid cell seed=0, lr=0.0" in msg and "field 'lr'" in msg and "(0, 10000" in msg
    with pytest.raises(ConfigError, match="both by --set and --grid"):
        expand_grid(icl, "quick", {"lr": 1.0}, {"lr": [2.0]})
    with pytest.raises(ConfigError, match="--seeds"):
        expand_grid(icl, "quick", {}, {"seed": [0, 1]}, seeds=2)


def test_cli_rejects_bad_grid_before_training(tmp_path):
    store = tmp_path / "s.sqlite"
    res = CliRunner().invoke(app, ["sweep", "icl", "--grid", "seed=0..", "--store", str(store)])
    assert res.exit_code == 2
    assert "seed=0.." in res.output and "lo..hi" in res.output
    res = CliRunner().invoke(app, ["sweep", "icl", "--grid", "alpha=0.5,2", "--store", str(store)])
    assert res.exit_code == 2 and "alpha" in res.output and "(0, 1]" in res.output
    assert not store.exists()  # nothing trained, no store made


def test_grouping_scalars_share_a_group_shapes_do_not():
    icl = get_study("icl")
    scalar = expand_grid(icl, "quick", {}, {"lr": [1.0, 5.0], "alpha": [0.6, 1.0], "S1": [1.0, 1.3], "seed": [0, 1]})
    assert len(group_cells(scalar)) == 1
    shapes = expand_grid(icl, "quick", {}, {"m": [16, 32], "l_tr": [10, 20], "seed": [0, 1, 2]})
    groups = group_cells(shapes)
    assert len(groups) == 4 and all(len(g) == 3 for g in groups)
    assert all(len({(c.m, c.l_tr) for c in g}) == 1 for g in groups)


def test_chunks_fit_the_budget_and_spread_over_workers():
    icl = get_study("icl")
    cells = expand_grid(icl, "quick", {}, {"seed": list(range(10)), "m": [16, 32]})
    per_model = icl.bytes_per_model(cells[0])
    assert icl.bytes_per_model(cells[1]) > per_model  # m=32 needs more memory than m=16
    chunks = plan_chunks(icl, cells, budget=4 * per_model)
    assert sorted(c.hash for ch in chunks for c in ch) == sorted(c.hash for c in cells)  # each cell once
    assert all(len({c.m for c in ch}) == 1 for ch in chunks)  # a chunk never mixes groups
    by_m = {m: sorted(len(ch) for ch in chunks if ch[0].m == m) for m in (16, 32)}
    assert by_m[16] == [3, 3, 4]  # 10 cells, at most 4 fit: 3 balanced chunks
    assert max(by_m[32]) <= 3 and max(by_m[32]) - min(by_m[32]) <= 1
    assert [len(ch) for ch in plan_chunks(icl, cells, budget=1 << 40, max_models=6)] == [5, 5, 5, 5]
    m16 = [c for c in cells if c.m == 16]
    assert [len(ch) for ch in plan_chunks(icl, m16, budget=1 << 40, workers=4)] == [3, 3, 2, 2]  # one per Ray worker


def test_a_100000_cell_sweep_is_planned_in_chunks_that_fit_the_budget():
    icl = get_study("icl")
    cells = expand_grid(icl, "quick", {}, {"seed": list(range(25_000)), "alpha": [0.4, 0.6, 0.8, 1.0]})
    assert len(cells) == 100_000
    budget = 256 * 1024**2
    chunks = plan_chunks(icl, cells, budget=budget)
    assert sum(len(ch) for ch in chunks) == 100_000 and len({c.hash for ch in chunks for c in ch}) == 100_000
    assert all(footprint(icl, ch[0]).bytes_for(len(ch)) <= budget for ch in chunks)
    assert any(len({c.alpha for c in ch}) > 1 for ch in chunks)  # alpha is an [E] scalar: mixed within a chunk
