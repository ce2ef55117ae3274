"""Faults during concurrent sweeps on one store (issue 24), on real `theorylab sweep` processes: kill -9 while
a cell trains, SIGSTOP of a lease owner, a disk that fills mid-sweep. The scenarios live in fault_kit.py, so
benchmarks/hostile_inputs.py --faults repeats them and counts."""
import os
import sqlite3
import subprocess

import pytest

from tests.core import fault_kit as kit
from theorylab.core import store as store_module
from theorylab.core.store import Store, StoreError
from theorylab.core.study import get_study
from theorylab.core.sweep import sweep


def assert_every_cell_once(r):
    assert r["integrity"] == "ok"
    assert r["rows"] == r["cells"] and r["lost"] == r["duplicated"] == r["foreign"] == 0, r
    assert r["without_weights"] == 0 and r["leases_left"] == 0, r


def test_kill_9_while_one_of_two_concurrent_sweeps_trains_then_resume(tmp_path):
    r = kit.kill_during_training(tmp_path, n_cells=6, steps=500)
    assert r["landed_in_training"] == 1  # the killed sweep's leased cell was not stored when it died
    assert r["exit_codes"] == [0, 0], r["outputs"]  # the resumed sweep and the one that kept going
    assert_every_cell_once(r)


def test_sigstop_of_a_lease_owner_the_other_sweep_waits_for_expiry_then_takes_over(tmp_path):
    lease, renew = 4.0, 0.5
    r = kit.sigstop_lease_owner(tmp_path, lease=lease, renew=renew, poll=0.2)
    assert r["held_by_a_at_stop"] and r["taken"]
    # a stopped process is alive, so its lease is not taken at once (as a dead one's is): the other sweep waits
    # until the lease, last renewed at most `renew` s before the stop, runs out, and not much longer (B may still
    # be training its own cells when the lease runs out: at load 5-9 on 2 cores it overran an earlier lease + 10 s)
    assert lease - renew - 0.1 <= r["b_took_over_after_s"] <= lease + 30, r["b_took_over_after_s"]
    assert r["exit_codes"] == [0, 0], r["outputs"]  # the continued sweep finishes too; its late cell is ignored
    assert_every_cell_once(r)


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not kit.mount_tmpfs(disk, "512k"):
        pytest.skip("mounting a small tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_mid_sweep(small_disk):
    r = kit.disk_full(small_disk, n_cells=40, steps=30)
    assert r["exit_code"] == 2 and not r["traceback"]
    [line] = r["error_lines"]
    assert str(small_disk / "full.sqlite") in line and "disk is full" in line
    assert 0 < r["kept_when_full"] < 40 and f"the {r['kept_when_full']} cells it wrote before are kept" in line
    assert r["intact_when_full"] and r["resume_exit_code"] == 0
    assert_every_cell_once(r)


class _FullDisk:
    """A connection whose writes of cells fail as SQLite's do on a full disk, after `room` of them."""

    def __init__(self, con, room):
        self.con, self.room = con, room

    def execute(self, sql, *args):
        if sql.startswith("INSERT OR IGNORE INTO cells"):
            if self.room[0] == 0:
                raise sqlite3.OperationalError("database or disk is full")
            self.room[0] -= 1
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_a_full_disk_without_root_the_error_names_the_store_and_what_is_kept(tmp_path, monkeypatch):
    """The same fault where no tmpfs can be mounted (CI): writes fail as on a full disk after 2 cells."""
    study = get_study("icl")
    cfgs = study.seed_configs("quick", 5, **study.tiny)
    st = Store(tmp_path / "s.sqlite")
    room = [2]
    connect = Store._connect
    monkeypatch.setattr(Store, "_connect", lambda self: _FullDisk(connect(self), room))
    with pytest.raises(StoreError, match=r"s\.sqlite: database or disk is full; .* the 2 cells it wrote before"):
        sweep(study, cfgs, st, max_models=1)
    monkeypatch.undo()
    r = kit.store_counts(st.path, {c.hash for c in cfgs})
    assert r["integrity"] == "ok" and r["rows"] == 2 and r["lost"] == 3 and r["without_weights"] == 0
    assert sweep(study, cfgs, st, max_models=1).trained == 3
    assert_every_cell_once(kit.store_counts(st.path, {c.hash for c in cfgs}))
