"""Sweeps: a cell's result does not depend on its batch; SIGKILL + resume and concurrent sweeps
leave every cell exactly once in the store."""
import signal
import sqlite3
import subprocess
import time

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.backends import LocalBackend
from theorylab.core.grid import expand_grid
from theorylab.core.store import Store
from theorylab.core.study import get_study
from theorylab.core.sweep import sweep, train_cells

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def assert_same_cells(a, b, hashes, atol=1e-5):
    for h in hashes:
        for k, v in a[h].metrics.items():
            assert v == pytest.approx(b[h].metrics[k], abs=atol), (h[:8], k)
        for k, w in a[h].params.items():
            torch.testing.assert_close(w, b[h].params[k], atol=atol, rtol=0)


def _hashes_in(path) -> list[str]:
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        cells = [r[0] for r in con.execute("SELECT config_hash FROM cells")]
        params = [r[0] for r in con.execute("SELECT config_hash FROM params")]
    assert sorted(cells) == sorted(params)  # every cell has its weights, written in the same transaction
    return cells


def test_cell_result_is_the_same_alone_and_in_any_group(tiny):
    icl = get_study("icl")
    # lr, alpha, kappa and seed vary inside one ensemble group ([E] tensors)
    cfgs = expand_grid(icl, "quick", tiny, {"lr": [1.0, 5.0], "alpha": [0.6, 1.0], "kappa": [0.2], "seed": [0, 3]})
    assert len(cfgs) == 8
    group = train_cells(icl, cfgs, Store(":memory:"), CPU)
    chunked = train_cells(icl, cfgs, Store(":memory:"), CPU, max_models=3)  # chunks of 3, 3, 2
    hashes = [c.hash for c in cfgs]
    assert_same_cells(group, chunked, hashes)
    for c in (cfgs[0], cfgs[5]):
        alone = train_cells(icl, [c], Store(":memory:"), CPU)
        assert_same_cells(group, alone, [c.hash])
    # and the models did differ: the check is not vacuous
    assert len({round(group[h].metrics["train_loss"], 6) for h in hashes}) > 4


def test_sweep_skips_finished_cells_and_reports(tmp_path, tiny):
    icl = get_study("icl")
    st = Store(tmp_path / "s.sqlite")
    cfgs = expand_grid(icl, "quick", tiny, {"seed": [0, 1, 2]})
    first = sweep(icl, cfgs[:2], st, LocalBackend(CPU))
    assert (first.trained, first.skipped, first.written) == (2, 0, 2)
    second = sweep(icl, cfgs + cfgs, st, LocalBackend(CPU))  # duplicates in the request count once
    assert (second.cells, second.trained, second.skipped, second.written) == (3, 1, 2, 1)
    assert second.model_steps == tiny["steps"]
    assert st.count() == 3


def test_sweep_cli_summary_and_export(tmp_path, sweep_cmd):
    store = tmp_path / "s.sqlite"
    cli = lambda args: CliRunner().invoke(app, args)  # in-process: no interpreter start-up
    res = cli(sweep_cmd(store, ["seed=0..2", "lr=1,5"], "--max-models", "4")[3:])
    assert res.exit_code == 0, res.output
    assert "6 cells: 6 trained, 0 already in the store" in res.output and str(store) in res.output
    assert "theorylab export --format parquet" in res.output
    res = cli(sweep_cmd(store, ["seed=0..3", "lr=1,5"])[3:])
    assert "8 cells: 2 trained, 6 already in the store" in res.output
    out = tmp_path / "cells.parquet"
    res = cli(["export", "--format", "parquet", "--study", "icl", "--store", str(store), "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert len(df) == 8 and df["config_hash"].is_unique
    assert {"seed", "lr", "alpha", "steps", "id_error", "ood_error", "train_loss"} <= set(df.columns)
    assert sorted(zip(df["seed"], df["lr"])) == [(s, lr) for s in range(4) for lr in (1.0, 5.0)]


def _wait_for_cells(path, n: int, proc, timeout: float = 120) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as con:
                count = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
            if count >= n:
                return count
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.01)
    raise AssertionError(f"sweep ended or stalled before writing {n} cells: {proc.poll()}")


def test_sigkill_mid_sweep_then_resume_leaves_every_cell_once(tmp_path, tiny, sweep_cmd, cli_env, run_cli):
    icl = get_study("icl")
    store = tmp_path / "s.sqlite"
    grid = ["seed=0..9"]
    # chunks of one model each; steps raised so that the sweep is surely still running when killed
    args = sweep_cmd(store, grid, "--max-models", "1", "--set", "steps=150")
    expected = {c.hash for c in expand_grid(icl, "quick", {**tiny, "steps": 150}, {"seed": list(range(10))})}
    for kill_after in (1, 4):  # kill twice, at different points, re-running in between
        proc = subprocess.Popen(args, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_cells(store, kill_after, proc)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        partial = _hashes_in(store)
        assert len(partial) == len(set(partial)) < 10 and set(partial) <= expected
    res = run_cli(args)
    assert res.returncode == 0, res.stderr
    final = _hashes_in(store)
    assert len(final) == len(set(final)) == 10 and set(final) == expected


def test_two_concurrent_sweeps_into_one_store(tmp_path, tiny, sweep_cmd, cli_env):
    icl = get_study("icl")
    store = tmp_path / "s.sqlite"
    procs = [subprocess.Popen(sweep_cmd(store, [g], "--max-models", "2"), env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for g in ("seed=0..7", "seed=4..11")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    final = _hashes_in(store)
    expected = {c.hash for c in expand_grid(icl, "quick", tiny, {"seed": list(range(12))})}
    assert len(final) == len(set(final)) == 12 and set(final) == expected
    # the shared cells' results are the same whichever sweep wrote them
    solo = train_cells(icl, expand_grid(icl, "quick", tiny, {"seed": [5]}), Store(":memory:"), CPU)
    stored = Store(store).get_cells(list(solo), with_params=True)
    assert_same_cells(solo, stored, list(solo))


def test_sweep_counts_every_training_phase_of_a_cell():
    """A study that pre-trains and then fine-tunes several tasks reports all of those steps."""
    from theorylab.core.sweep import model_steps

    tv = get_study("task_vectors")
    cfg = tv.config("quick", pretrain_steps=30, steps=20)
    assert model_steps(tv, cfg) == 30 + 2 * 20
    cd = get_study("colored_digits")
    c = cd.config("quick")
    assert model_steps(cd, c) == c.pretrain_steps + c.steps * len(c.task_ps)
    icl = get_study("icl")
    assert model_steps(icl, icl.config("quick", steps=7)) == 7
