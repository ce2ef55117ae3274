"""Fault scenarios for concurrent sweeps on one store (issue 24): kill -9 during training, SIGSTOP of a lease
owner, a disk that fills mid-sweep. Each returns a dict of counts; tests/core/test_faults.py asserts on them and
benchmarks/hostile_inputs.py --faults repeats them and prints the totals.

Sweeps run as real `theorylab sweep icl` processes. For the SIGSTOP scenario the lease timings are shortened in
the child (LEASE_SECONDS etc. are module constants read at call time), so an expiry takes seconds, not minutes.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from theorylab.core.grid import expand_grid
from theorylab.core.study import get_study

TINY = {"n_test": 50, "B": 16, "curve_points": 4}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "400"}
# `python -c` body: shortens the lease timings, then runs the CLI with the remaining arguments
_LAUNCH = ("import sys, theorylab.core.store as st, theorylab.core.sweep as sw; "
           "st.LEASE_SECONDS, st.RENEW_EVERY, sw.POLL_SECONDS = map(float, sys.argv[1:4]); "
           "sys.argv = ['theorylab', *sys.argv[4:]]; from theorylab.cli import main; main()")


def sweep_argv(store: Path, n_cells: int, steps: int, lease: tuple[float, float, float] | None = None) -> list[str]:
    """argv of a one-model-per-chunk `theorylab sweep icl` over seeds 0..n_cells-1; `lease`: (LEASE_SECONDS,
    RENEW_EVERY, POLL_SECONDS) in the child."""
    head = [sys.executable, "-c", _LAUNCH, *map(str, lease)] if lease else [sys.executable, "-m", "theorylab"]
    args = [*head, "sweep", "icl", "--device", "cpu", "--store", str(store), "--quiet", "--max-models", "1",
            "--grid", f"seed=0..{n_cells - 1}", "--set", f"steps={steps}"]
    for k, v in TINY.items():
        args += ["--set", f"{k}={v}"]
    return args


def expected_hashes(n_cells: int, steps: int) -> set[str]:
    icl = get_study("icl")
    return {c.hash for c in expand_grid(icl, "quick", {**TINY, "steps": steps}, {"seed": list(range(n_cells))})}


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _query(store: Path, sql: str) -> list[tuple]:
    # not mode=ro: a read-only connection cannot open a WAL store whose -shm file went with the last writer
    if not store.exists():
        return []
    try:
        with closing(sqlite3.connect(store, timeout=30)) as con:
            return con.execute(sql).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []  # the sweep has not created its tables yet
        raise


def stored(store: Path) -> list[str]:
    return [r[0] for r in _query(store, "SELECT config_hash FROM cells")]


def leases(store: Path) -> dict[str, str]:
    return dict(_query(store, "SELECT config_hash, owner FROM leases"))


def owned_by(owner: str, proc: subprocess.Popen) -> bool:
    return owner.split(":")[1] == str(proc.pid)


def training_lease(store: Path, proc: subprocess.Popen) -> str | None:
    """A cell `proc` holds a lease on and has not stored: the cell it is training right now."""
    done = set(stored(store))
    return next((h for h, o in leases(store).items() if owned_by(o, proc) and h not in done), None)


def wait_for(cond, timeout: float, what: str, procs: tuple[subprocess.Popen, ...] = (), poll: float = 0.02):
    """cond()'s first true value; fails at once (with its output) if one of `procs` ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (v := cond()):
            return v
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"a sweep ended (exit {p.returncode}) while waiting for {what}: "
                                     f"{p.stdout.read()[-2000:] if p.stdout else ''}")
        time.sleep(poll)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def store_counts(store: Path, expected: set[str]) -> dict:
    with closing(sqlite3.connect(store)) as con:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        cells = [r[0] for r in con.execute("SELECT config_hash FROM cells")]
        params = [r[0] for r in con.execute("SELECT config_hash FROM params")]
        left = con.execute("SELECT COUNT(*) FROM leases").fetchone()[0]
    return {"cells": len(expected), "rows": len(cells), "lost": len(expected - set(cells)),
            "duplicated": len(cells) - len(set(cells)), "foreign": len(set(cells) - expected),
            "without_weights": len(set(cells) - set(params)), "leases_left": left, "integrity": integrity}


def kill_during_training(folder: Path, n_cells: int = 8, steps: int = 600, seed: int = 0) -> dict:
    """Two sweeps of the same cells on one store; sweep A is killed -9 while it trains a leased cell (after at
    least one cell is stored, so not during start-up) and restarted at once while B keeps going. Reports
    whether the kill landed mid-training (A's leased cell was still unstored right after it)."""
    store = folder / "kill.sqlite"
    argv = sweep_argv(store, n_cells, steps)
    a, b = start(argv), None
    try:
        # B starts once A trains, so A surely has cells left to be killed in
        wait_for(lambda: training_lease(store, a), 120, "A to start training", (a,))
        b = start(argv)
        h = wait_for(lambda: stored(store) and training_lease(store, a), 120, "A to train a leased cell", (a,))
        time.sleep(random.Random(seed).uniform(0.0, 0.2))  # somewhere inside the cell's training
        if training_lease(store, a) != h:
            h = wait_for(lambda: training_lease(store, a), 60, "A to train its next cell", (a,))
        a.send_signal(signal.SIGKILL)
        a.wait()
        landed = h not in stored(store)
        a = start(argv)  # resume, with B still running
        outs = [p.communicate(timeout=300)[0] for p in (a, b)]
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    return {"kills": 1, "landed_in_training": int(landed), "exit_codes": [a.returncode, b.returncode],
            **store_counts(store, expected_hashes(n_cells, steps)), "outputs": outs}


def sigstop_lease_owner(folder: Path, lease: float = 4.0, renew: float = 0.5, poll: float = 0.2,
                        n_cells: int = 4, steps: int = 600) -> dict:
    """Sweep A is stopped (SIGSTOP) while it trains a leased cell; sweep B on the same cells finishes its own
    and then waits: A's process is alive, so its lease stands until it stops being renewed for `lease` seconds,
    then B takes the cell over. A is continued after B is done; its late result for that cell is ignored
    (stored once). Reports how long B waited after the stop."""
    store = folder / "stop.sqlite"
    argv = sweep_argv(store, n_cells, steps, (lease, renew, poll))
    a, b = start(argv), start(argv)
    try:
        h = wait_for(lambda: training_lease(store, a), 120, "A to train a leased cell", (a,))
        a.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        still_a = leases(store).get(h, "")
        taken = wait_for(lambda: h in stored(store) or owned_by(leases(store).get(h, "x:0:x"), b), lease + 60,
                         "B to take the stopped sweep's cell over")
        took_over_after = time.monotonic() - stopped
        b_out = b.communicate(timeout=120)[0]
        a.send_signal(signal.SIGCONT)
        a_out = a.communicate(timeout=120)[0]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
    return {"lease_seconds": lease, "renew_every": renew, "held_by_a_at_stop": owned_by(still_a, a) if still_a else False,
            "b_took_over_after_s": round(took_over_after, 2), "taken": bool(taken),
            "exit_codes": [a.returncode, b.returncode], **store_counts(store, expected_hashes(n_cells, steps)),
            "outputs": [a_out, b_out]}


def mount_tmpfs(folder: Path, size: str) -> bool:
    """A small tmpfs at `folder` (needs root and a kernel that lets this container mount); False if refused."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def disk_full(disk: Path, n_cells: int = 40, steps: int = 30) -> dict:
    """A sweep into a store on a full-to-be tmpfs (`disk`, already mounted and small): it must stop with one
    line naming the store, keep every cell written before, and leave the store intact; after room is made,
    the same sweep resumes and completes every cell once."""
    store = disk / "full.sqlite"
    argv = sweep_argv(store, n_cells, steps)
    first = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    lines = [l for l in (first.stdout + first.stderr).splitlines() if l.strip()]
    kept = len(set(stored(store)))
    intact_when_full = _query(store, "PRAGMA integrity_check") == [("ok",)]
    # room is made the way a user would: the disk grows (here: the tmpfs is remounted larger)
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    resumed = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    errors = [l for l in lines if l.startswith("error:")]
    return {"exit_code": first.returncode, "error_lines": errors, "traceback": "Traceback" in first.stdout + first.stderr, "kept_when_full": kept, "intact_when_full": intact_when_full,
            "resume_exit_code": resumed.returncode, **store_counts(store, expected_hashes(n_cells, steps))}
