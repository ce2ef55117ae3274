"""The Ray backend on a local Ray instance gives the same cells as the local backend."""
import os
import subprocess
import sys

import pytest
import torch

ray = pytest.importorskip("ray")

from theorylab.core.backends import RayBackend  # noqa: E402
from theorylab.core.grid import expand_grid  # noqa: E402
from theorylab.core.store import Store  # noqa: E402
from theorylab.core.study import get_study  # noqa: E402
from theorylab.core.sweep import sweep, train_cells  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def test_ray_matches_local(local_ray, tmp_path, tiny, one_thread):
    icl = get_study("icl")
    cfgs = expand_grid(icl, "quick", tiny, {"seed": [0, 1, 2], "lr": [1.0, 5.0]})
    backend = RayBackend(address=None, device="cpu")  # joins the instance started above
    assert backend.workers == 2
    st = Store(tmp_path / "ray.sqlite")
    summary = sweep(icl, cfgs, st, backend)
    assert (summary.trained, summary.written, summary.chunks) == (6, 6, 2)  # split over the 2 workers
    hashes = [c.hash for c in cfgs]
    remote = st.get_cells(hashes, with_params=True)
    assert {c.device for c in remote.values()} == {"cpu"}
    local = train_cells(icl, cfgs, Store(":memory:"), torch.device("cpu"))
    for h in hashes:
        for k, v in local[h].metrics.items():
            assert v == pytest.approx(remote[h].metrics[k], abs=1e-5), k
        for k, w in local[h].params.items():
            torch.testing.assert_close(w, remote[h].params[k], atol=1e-5, rtol=0)
    assert sweep(icl, cfgs, st, backend).trained == 0  # resumes like local


def test_sweep_cli_joins_an_existing_cluster_by_address(tmp_path, sweep_cmd):
    """`theorylab sweep --backend ray --address ADDR` against a cluster another process started."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}  # a plain local test cluster
    head = subprocess.Popen(
        [sys.executable, "-c", "import ray, sys, time; ctx = ray.init(num_cpus=2, include_dashboard=False); "
         "print(ctx.address_info['address'], flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        address = head.stdout.readline().strip()
        assert address, "the Ray head did not start"
        store = tmp_path / "cluster.sqlite"
        args = sweep_cmd(store, ["seed=0..2"], "--backend", "ray", "--address", address)
        run = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        df = Store(store).cells_df("icl")
        assert len(df) == 3 and sorted(df["seed"]) == [0, 1, 2] and set(df["device"]) == {"cpu"}
    finally:
        head.stdin.close()
        head.wait(timeout=60)
