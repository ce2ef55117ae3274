"""Peer benchmark (issue 17): the ICL reference training step written four ways, timed in one run.

Same model (eq. (1): F = a^T ReLU(W_O W_V sum_i p_i softmax_i(p_i^T W_K^T W_Q p_q))), same data model (fresh
in-domain prompts every step: a task (a, b) of the training split, contexts on a or b with probability alpha,
labels +-q, noise kappa along an irrelevant pattern), same loss (hinge) and update (plain SGD), at the reference
config of `theorylab bench icl` (B = 64, l = 20, d_X = 30, d_Y = 10, m = 64, M1 = 6, M2 = 24):

  theorylab      the study's own training step (`theorylab bench icl`'s path: batched ensemble, the sampler's random
                 choices through torch.compile (bit-identical to eager), eq. (1) with its hand-written gradient)
  theorylab-eager  the same with the eager sampler (what runs too short to repay compiling use)
  torch.func     vmap(grad(per-model loss)) over the models, prompts from the theorylab sampler
  one-at-a-time  the theorylab step with E = 1, looped over models
  jax            vmap over models + jit of the whole step (sampling inside) + lax.scan over the steps

Each path is timed `--repeats` times, the paths alternating, and the best is kept (a shared machine's bursts
of load then penalise no path more than another). Prints model-steps/s per path and the ratios to JAX.

    pip install -e ".[bench]"          # jax[cpu]
    python benchmarks/peers/icl_peers.py --models 64,512 --threads 2                 # both cores
    taskset -c 0 python benchmarks/peers/icl_peers.py --models 64,512 --threads 1    # one core, every path

--threads sets torch's intra-op threads; XLA sizes its pool from the CPUs the process may use, so the one-thread
comparison pins the whole process to one core (taskset) to hold JAX to the same budget.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor
from theorylab.core.losses import hinge
from theorylab.core.study import get_study
from theorylab.studies.icl.bench import REFERENCE, icl_train_seconds
from theorylab.shared.icl_prompts import in_domain_world, sample_prompts, split_tasks
from theorylab.studies.icl.model import init_params


def configs(E: int):
    base = get_study("icl").config("quick", **REFERENCE)
    return [base.replace(seed=i) for i in range(E)]


WARMUP: dict[str, float] = {}  # path -> seconds of its first call (compilation included), printed once


def _warm(path: str, fn, *args) -> None:
    if path not in WARMUP:
        t0 = time.perf_counter()
        fn(*args)
        WARMUP[path] = time.perf_counter() - t0


def theorylab_rate(E: int, steps: int) -> float:
    """The default path (`theorylab bench icl`): compiled sampler, hand-written gradient."""
    _warm(f"theorylab E={E}", icl_train_seconds, configs(E), torch.device("cpu"), 2)
    return E * steps / icl_train_seconds(configs(E), torch.device("cpu"), steps)


def theorylab_eager_rate(E: int, steps: int) -> float:
    """The same with the eager sampler (THEORYLAB_COMPILE=0; what a short run uses)."""
    return E * steps / icl_train_seconds(configs(E), torch.device("cpu"), steps, compiled_sampler=False)


def one_at_a_time_rate(E: int, steps: int) -> float:
    cfgs = configs(min(E, 8))
    t = sum(icl_train_seconds([c], torch.device("cpu"), steps) for c in cfgs)
    return len(cfgs) * steps / t


def torch_func_rate(E: int, steps: int) -> float:
    from torch.func import grad, vmap

    cfgs = configs(E)
    dev = torch.device("cpu")
    rng = rng_for(cfgs, dev)
    p = init_params(cfgs, rng, dev)
    world = in_domain_world(cfgs, dev, split_tasks(cfgs[0])[0])
    alpha, lr = scalar_tensor(cfgs, "alpha", dev), scalar_tensor(cfgs, "lr", dev)
    B, L = cfgs[0].B, cfgs[0].l_tr
    names = ["W_Q", "W_K", "W_V", "W_O"]

    def loss(w, a, C, Q, z):  # one model: C [B, L, D], Q [B, D], z [B]
        s = torch.einsum("bld,bd->bl", C, (Q @ w["W_Q"].T) @ w["W_K"])
        h = torch.einsum("bl,bld->bd", torch.softmax(s, -1), C) @ w["W_V"].T
        return torch.clamp(1 - z * (torch.relu(h @ w["W_O"].T) @ a), min=0).mean()

    step_grad = vmap(grad(loss))
    t0 = time.perf_counter()
    for step in range(steps):
        pr = sample_prompts(world, rng, alpha, B, L, "train", step)
        g = step_grad({k: p[k] for k in names}, p["a"], pr.C, pr.Q, pr.z)
        with torch.no_grad():
            for k in names:
                p[k] -= lr[:, None, None] * g[k]
    return E * steps / (time.perf_counter() - t0)


def jax_rate(E: int, steps: int) -> float:
    from theorylab.core.bench import load_peer, peer_seconds  # benchmarks/peers/icl.py, as `bench icl --peer` times it

    peer = load_peer("icl")

    cfgs = configs(E)
    if f"jax E={E} ({steps} steps)" not in WARMUP:
        t0 = time.perf_counter()
        peer_seconds(peer, cfgs, steps)
        WARMUP[f"jax E={E} ({steps} steps)"] = time.perf_counter() - t0
    return E * steps / peer_seconds(peer, cfgs, steps)


PATHS = {"theorylab": theorylab_rate, "theorylab-eager": theorylab_eager_rate, "torch.func": torch_func_rate, "one-at-a-time": one_at_a_time_rate,
         "jax": jax_rate}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="64,512")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paths", default=",".join(PATHS))
    args = ap.parse_args()
    paths = args.paths.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for E in map(int, args.models.split(",")):
            best = {p: 0.0 for p in paths}
            for _ in range(args.repeats):
                for p in paths:
                    best[p] = max(best[p], PATHS[p](E, args.steps))
            row = {"E": E, "threads": threads, **{p: round(v) for p, v in best.items()}}
            if "jax" in best:
                row.update({f"{p}/jax": round(v / best["jax"], 2) for p, v in best.items() if p != "jax"})
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("first calls (compilation included), s:", json.dumps({k: round(v, 1) for k, v in WARMUP.items()}))


if __name__ == "__main__":
    main()
