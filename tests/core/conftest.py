"""Fixtures for the sweep / store / grid / backend / bench tests (tiny ICL configs)."""
import os
import subprocess
import sys

import pytest

# Small enough that a cell trains in a fraction of a second on one CPU core.
TINY = {"steps": 30, "n_test": 50, "B": 16, "curve_points": 4}


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture
def sweep_cmd():
    """sweep_cmd(store, grid, *extra) -> argv of `theorylab sweep icl` with the tiny config."""
    def make(store, grid, *extra) -> list[str]:
        args = [sys.executable, "-m", "theorylab", "sweep", "icl", "--device", "cpu", "--store", str(store), "--quiet"]
        for g in grid:
            args += ["--grid", g]
        # a field set again in `extra` is left out here: a repeated --set key is refused (issue 24)
        given = {extra[i + 1].partition("=")[0] for i, a in enumerate(extra[:-1]) if a == "--set"}
        for k, v in TINY.items():
            if k not in given:
                args += ["--set", f"{k}={v}"]
        return args + list(extra)
    return make


@pytest.fixture
def cli_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture
def run_cli(cli_env):
    def run(args, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=300, **kw)
    return run
