"""Concurrent sweeps on one store split the cells through leases; a dead sweep's lease expires; every cell is
written exactly once."""
import os
import re
import subprocess
import sys
import time

from theorylab.core import sweep as sweep_module
from theorylab.core.store import Store
from theorylab.core.study import get_study
from theorylab.core.sweep import sweep

TINY = ["--set", "steps=30", "--set", "n_test=100", "--set", "B=8", "--set", "curve_points=2"]


def test_two_sweeps_on_one_store_share_the_cells(tmp_path):
    store = tmp_path / "s.sqlite"
    Store(store)
    cmd = [sys.executable, "-m", "theorylab", "sweep", "icl", "--grid", "seed=0..7", *TINY, "--max-models", "1",
           "--store", str(store), "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trained = [int(re.search(r"(\d+) trained", " ".join(o.split())).group(1)) for o in outs]
    assert sum(trained) == 8, outs  # no cell trained twice, none left out
    st = Store(store, create=False)
    assert st.count("icl") == 8
    with st._con() as con:
        assert con.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0  # every lease given back


def test_a_dead_sweeps_lease_expires_and_a_live_one_is_waited_for(tmp_path, monkeypatch):
    study = get_study("icl")
    cfgs = study.seed_configs("quick", 2, **study.tiny)
    st = Store(tmp_path / "s.sqlite")
    with st._con() as con:  # seed 0: a dead sweep's expired lease; seed 1: a live lease that ends in 1.5 s
        con.execute("INSERT INTO leases VALUES (?,?,?)", (cfgs[0].hash, "dead:1:x", time.time() - 1))
        con.execute("INSERT INTO leases VALUES (?,?,?)", (cfgs[1].hash, "live:2:y", time.time() + 1.5))
    monkeypatch.setattr(sweep_module, "POLL_SECONDS", 0.2)
    t0 = time.perf_counter()
    summary = sweep(study, cfgs, st, max_models=1)
    assert summary.trained == 2 and st.count("icl") == 2
    assert time.perf_counter() - t0 >= 1.0  # it waited for the live lease to run out before taking the cell


def test_a_lease_is_not_taken_for_a_stored_cell_or_from_a_live_owner(tmp_path):
    study = get_study("icl")
    cfgs = study.seed_configs("quick", 2, **study.tiny)
    a, b = Store(tmp_path / "s.sqlite"), Store(tmp_path / "s.sqlite")
    assert a.lease([c.hash for c in cfgs]) == {c.hash for c in cfgs}
    assert b.lease([c.hash for c in cfgs]) == set()
    a.release_leases()
    assert b.lease([cfgs[0].hash]) == {cfgs[0].hash}


def test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(tmp_path):
    import socket

    study = get_study("icl")
    cfg = study.seed_configs("quick", 1, **study.tiny)[0]
    st = Store(tmp_path / "s.sqlite")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with st._con() as con:
        con.execute("INSERT INTO leases VALUES (?,?,?)", (cfg.hash, f"{socket.gethostname()}:{dead.pid}:x", time.time() + 60))
    assert st.lease([cfg.hash]) == {cfg.hash}
