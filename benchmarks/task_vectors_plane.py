"""One (lambda1, lambda2) plane of the task-vector study at its full config, plain against fast, same run.

The full config: 5 seeds, n_test 4,096 test sequences of T', lam_step 0.1 (51 x 51 = 2,601 merges
Psi0 + l1 dPsi_T1 + l2 dPsi_T2). Weights are random (the cost does not depend on training). plain builds each merge
and runs eq. (7) on it (evaluate_grid fast=False); fast combines the parts' attention scores per merge
(model.forward_merged). Each path runs on a prefix of the plane, alternating, twice; the time per point is
extrapolated to the 2,601 points (the fast path's once-per-block scores are then counted in full).

Usage: OMP_NUM_THREADS=1 python benchmarks/task_vectors_plane.py [PLAIN_POINTS] [FAST_POINTS]   (default 24 400)
"""
from __future__ import annotations

import sys
import time

import torch

from theorylab.shared.task_arithmetic import evaluate_grid, lam_grid, plane_lambdas
from theorylab.studies.task_vectors.config import FULL, LAM_HI, LAM_LO, TaskVectorConfig
from theorylab.studies.task_vectors.evaluate import experiment
from theorylab.studies.task_vectors.model import readout


def main(n_plain: int = 24, n_fast: int = 400) -> None:
    cfgs = [TaskVectorConfig(seed=s, **FULL) for s in range(5)]
    E, d, m = len(cfgs), cfgs[0].d, cfgs[0].m
    g = torch.Generator().manual_seed(0)
    p = {"W0": 0.01 * torch.randn(E, d, d, generator=g), "V0": 0.1 * torch.randn(E, m, d, generator=g),
         "a": readout(cfgs, "cpu")}
    for t in ("T1", "T2"):
        p[f"W_{t}"] = p["W0"] + torch.randn(E, d, d, generator=g)
        p[f"V_{t}"] = p["V0"] + 0.3 * torch.randn(E, m, d, generator=g)
    ex = experiment(cfgs, p, torch.device("cpu"))
    lams = lam_grid(cfgs[0].lam_step, LAM_LO, LAM_HI)
    grid = plane_lambdas(lams, lams)
    N = len(grid)
    print(f"plane: {N} merges x {E} seeds x {cfgs[0].n_test} test sequences, {torch.get_num_threads()} thread(s)")
    for _ in range(2):
        for fast, n in ((False, n_plain), (True, n_fast)):
            t = time.perf_counter()
            evaluate_grid(ex, ("T1", "T2"), grid[:n], ("OOD",), fast=fast)
            dt = time.perf_counter() - t
            print(f"{'fast ' if fast else 'plain'}: {n} points in {dt:.2f} s = {dt / n * 1e3:.1f} ms/point "
                  f"-> {dt / n * N / 60:.2f} min a plane", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
