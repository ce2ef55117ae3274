"""The SQLite store: one row per hash, weights, in-memory stores, DataFrames and export."""
import sqlite3

import pandas as pd
import torch
from typer.testing import CliRunner

from theorylab import api
from theorylab.cli import app
from theorylab.core.store import Cell, Store


def _cell(i: int, params: bool = True) -> Cell:
    return Cell(f"h{i}", "toy", "g", {"seed": i, "lr": 0.1 * i, "offsets": [1, i]}, {"error": i / 10, "curve": [1, 2]},
                {"step": [0, 1], "loss": [1.0, 0.5]}, params={"w": torch.full((2, 3), float(i))} if params else None)


def test_put_is_idempotent_and_keeps_the_first_row(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    assert st.put_cells([_cell(0), _cell(1)]) == 2
    again = _cell(1)
    again.metrics = {"error": 99.0}
    assert st.put_cells([again, _cell(2)]) == 1  # hash h1 already there: ignored, not duplicated
    assert st.count() == 3 and st.done(["h0", "h1", "h2", "h9"]) == {"h0", "h1", "h2"}
    got = st.get_cells(["h1", "h2"], with_params=True)
    assert got["h1"].metrics["error"] == 0.1 and torch.equal(got["h2"].params["w"], torch.full((2, 3), 2.0))
    with sqlite3.connect(tmp_path / "s.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_weights_can_be_added_later(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    st.put_cells([_cell(0, params=False)])
    assert st.done(["h0"]) == {"h0"} and st.done(["h0"], with_params=True) == set()
    assert st.put_cells([_cell(0)]) == 0  # the cell row stays, the weights are filled in
    assert st.done(["h0"], with_params=True) == {"h0"}


def test_memory_store_is_one_private_database():
    st = Store(":memory:")
    st.put_cells([_cell(0)])
    assert st.count() == 1 and st.get_cells(["h0"], with_params=True)["h0"].params["w"].shape == (2, 3)
    assert Store(":memory:").count() == 0


def test_dataframe_and_export(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).put_cells([_cell(i) for i in range(3)])
    df = api.results(path, study="toy")
    assert list(df["config_hash"]) == ["h0", "h1", "h2"]
    assert {"seed", "lr", "error"} <= set(df.columns) and "curve" not in df.columns  # final scalars only
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"cells.{fmt}"
        res = CliRunner().invoke(app, ["export", "--format", fmt, "--store", str(path), "--study", "toy", "--out", str(out)])
        assert res.exit_code == 0, res.output
        back = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
        assert len(back) == 3 and list(back["config_hash"]) == ["h0", "h1", "h2"]
        assert back["error"].tolist() == [0.0, 0.1, 0.2] and back["offsets"].tolist()[1] == "[1, 1]"


def test_export_errors_are_clear(tmp_path):
    res = CliRunner().invoke(app, ["export", "--store", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "no store" in res.output
    Store(tmp_path / "s.sqlite")
    res = CliRunner().invoke(app, ["export", "--format", "xlsx", "--store", str(tmp_path / "s.sqlite"), "--out", "x"])
    assert res.exit_code == 2 and "parquet or csv" in res.output
    res = CliRunner().invoke(app, ["export", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "no cells" in res.output
