"""Export says where each row came from: a run id, what produced it (sweep, run, check, ...), ISO-8601 times, and
the config fields of each cell. Stores written before these columns existed stay readable, and a writer adds the
columns (nullable) without touching the old rows."""
import datetime as dt
import hashlib
import json
import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core import store as store_mod
from theorylab.core.store import PROVENANCE, Store

# the schema of a store written before provenance was recorded: today's, less the two columns
OLD_SCHEMA = store_mod._SCHEMA.replace(",\n    run_id TEXT,\n    source TEXT\n", "\n")
OLD_TIME = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _old_store(path):
    assert "run_id" not in OLD_SCHEMA
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?)",
                ("h0", "toy", "g", json.dumps({"seed": 3, "alpha": 0.6}), json.dumps({"error": 0.25}), "{}", "done", 1.5,
                 "cpu", OLD_TIME))
    con.execute("INSERT INTO claims (study, claim, size, seeds, passed, verdict, summary, numbers, figures, seconds,"
                " created) VALUES ('toy','c1','quick',5,1,'holds','s','{}','{}',0.1,?)", (OLD_TIME,))
    con.commit()
    con.close()


def _columns(path, table):
    with sqlite3.connect(path) as con:
        return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]


def test_an_old_store_is_read_as_it_is(tmp_path):
    path = tmp_path / "old.sqlite"
    _old_store(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for rows in ("cells", "claims"):
        out = tmp_path / f"{rows}.csv"
        res = CliRunner().invoke(app, ["export", "--format", "csv", "--rows", rows, "--store", str(path), "--out", str(out)])
        assert res.exit_code == 0, res.output
        df = pd.read_csv(out)
        assert {"run_id", "source", "created"} <= set(df.columns) and df["source"].isna().all()
        assert df["created"][0] == "2023-11-14T22:13:20.000+00:00"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # a reader never migrates (or touches) it
    assert "run_id" not in _columns(path, "cells")


def test_a_writer_adds_the_columns_and_keeps_old_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    _old_store(path)
    st = Store(path, source="sweep")
    for table in ("cells", "claims"):
        assert _columns(path, table)[-2:] == PROVENANCE
    Store(path, source="check")  # opened again (another process): nothing to add, no error
    old = st.get_cells(["h0"])["h0"]
    assert old.config == {"seed": 3, "alpha": 0.6} and old.metrics == {"error": 0.25}
    st.put_cells([store_mod.Cell("h1", "toy", "g", {"seed": 4, "alpha": 0.8}, {"error": 0.5}, {})])
    st.put_claim("toy", "c1", "quick", 5, True, "holds", "s", {}, {}, 0.1)
    df = st.cells_df("toy").set_index("config_hash")
    assert pd.isna(df.loc["h0", "source"]) and df.loc["h1", "source"] == "sweep" and df.loc["h1", "run_id"] == st.run_id
    claims = st.claims_df("toy")
    assert pd.isna(claims["source"][0]) and claims["source"][1] == "sweep"
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_store_of_another_shape_is_still_refused(tmp_path):
    path = tmp_path / "odd.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript(OLD_SCHEMA.replace("created REAL NOT NULL\n);\nCREATE INDEX",
                                             "created REAL NOT NULL, extra TEXT\n);\nCREATE INDEX", 1))
    with pytest.raises(store_mod.StoreError, match="another shape"):
        Store(path)


def test_export_names_run_source_time_and_config_of_each_row(tmp_path, sweep_cmd, tiny):
    path = tmp_path / "s.sqlite"
    runner = CliRunner()
    res = runner.invoke(app, sweep_cmd(path, ["alpha=0.6,0.8"])[3:])
    assert res.exit_code == 0, res.output
    sets = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    res = runner.invoke(app, ["check", "icl", "--claim", "thm1_in_domain", "--seeds", "2", "--device", "cpu",
                              "--store", str(path), *sets])
    assert res.exit_code in (0, 1, 3), res.output
    out = tmp_path / "cells.parquet"
    assert runner.invoke(app, ["export", "--store", str(path), "--out", str(out)]).exit_code == 0
    cells = pd.read_parquet(out)
    assert set(cells["source"]) == {"sweep", "check"}
    assert cells.groupby("source")["run_id"].nunique().to_dict() == {"check": 1, "sweep": 1}
    assert sorted(cells.loc[cells.source == "sweep", "alpha"]) == [0.6, 0.8]
    assert {"M1", "alpha", "steps", "seed", "config_hash"} <= set(cells.columns)  # the config, not only its hash
    for t in cells["created"]:
        assert dt.datetime.fromisoformat(t).tzinfo is not None
    out = tmp_path / "claims.csv"
    assert runner.invoke(app, ["export", "--rows", "claims", "--format", "csv", "--store", str(path),
                               "--out", str(out)]).exit_code == 0
    claims = pd.read_csv(out)
    assert claims["source"].tolist() == ["check"] and claims["claim"].tolist() == ["thm1_in_domain"]
    assert claims["run_id"][0] == cells.loc[cells.source == "check", "run_id"].iloc[0]


def test_bad_rows_option_is_one_line(tmp_path):
    path = tmp_path / "old.sqlite"
    _old_store(path)
    res = CliRunner().invoke(app, ["export", "--rows", "runs", "--store", str(path), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and res.output.strip() == "error: --rows must be cells or claims (got 'runs')"
