"""The selective scan's cost as the sequence grows: CPU time per model-step (forward + backward) against L.

Four scans, each batched over the ensemble axis E (E models, B sequences each, width d):
- kit S6:      core.nn.selective_scan_parallel (Mamba's S6: per-channel state of n numbers, the doubling scan in
               log2 L whole-tensor steps) and core.nn.selective_scan_sequential (a Python loop over L; the CPU default);
- study last:  the Mamba study's SSM, last state only (closed form: one reversed cumulative sum, O(L));
- study mean:  the same SSM with every state h_l (the mean read-out: an L x L weight matrix, O(L^2));
- sequential:  the study's recurrence h_l = (1 - g_l) h_{l-1} + g_l x_l as a loop over L (what the closed forms
               replace).

Usage: OMP_NUM_THREADS=1 python benchmarks/mamba_scan_bench.py [--lengths 8,16,...] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from theorylab.core import nn
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.mamba.model import all_scan_weights, scan_weights


def sequential(w: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """h_L by the recurrence, batched over [E, B]."""
    g = torch.sigmoid(torch.einsum("ebld,ed->ebl", X, w))
    h = torch.zeros_like(X[..., 0, :])
    for l in range(X.shape[-2]):
        h = (1 - g[..., l, None]) * h + g[..., l, None] * X[..., l, :]
    return h


def runners(E: int, B: int, L: int, d: int, state: int):
    rng = EnsembleRNG(list(range(E)))
    X = rng.normal((B, L, d), "x")
    w = (0.3 * rng.normal((d,), "w")).requires_grad_()
    kit = {k: v.requires_grad_() for k, v in nn.init_selective_scan(rng, "s6", d, state).items()}
    return {
        "kit S6 parallel (doubling)": (lambda: nn.selective_scan_parallel(X, kit, "s6")[..., -1, :].square().sum(), list(kit.values())),
        "kit S6 sequential": (lambda: nn.selective_scan_sequential(X, kit, "s6")[..., -1, :].square().sum(), list(kit.values())),
        "study last state (closed form)": (lambda: torch.einsum("ebl,ebld->ebd", scan_weights(w, X, "sigmoid"), X).square().sum(), [w]),
        "study every state (mean read-out)": (lambda: (all_scan_weights(w, X, "sigmoid") @ X).square().sum(), [w]),
        "study recurrence (loop over L)": (lambda: sequential(w, X).square().sum(), [w]),
    }


def time_one(fn, params, repeats: int) -> float:
    """Best CPU seconds of one forward + backward over `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        loss = fn()
        torch.autograd.grad(loss, params)
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="8,16,32,64,128,256")
    ap.add_argument("--E", type=int, default=8)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--state", type=int, default=16, help="S6 state size n per channel")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="folder for mamba_scan_bench.json and .png")
    a = ap.parse_args()
    torch.set_num_threads(1)
    lengths = [int(x) for x in a.lengths.split(",")]
    res: dict[str, list[float]] = {}
    for L in lengths:
        for name, (fn, params) in runners(a.E, a.B, L, a.d, a.state).items():
            time_one(fn, params, 1)  # warm-up
            res.setdefault(name, []).append(time_one(fn, params, a.repeats) / a.E * 1e3)  # ms per model-step
            print(f"L={L} {name}: {res[name][-1]:.3g} ms", flush=True)
    print(f"CPU ms per model-step (forward + backward; E={a.E}, B={a.B}, d={a.d}, S6 state {a.state}, 1 thread)")
    print("| scan | " + " | ".join(f"L={L}" for L in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for name, ms in res.items():
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in ms) + " |")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "mamba_scan_bench.json").write_text(json.dumps({"lengths": lengths, "ms_per_model_step": res, **vars(a)}, indent=1))
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for name, ms in res.items():
            ax.plot(lengths, ms, "o-", label=name)
        ax.set(xscale="log", yscale="log", xlabel="sequence length L", ylabel="CPU ms per model-step",
               title="selective scan cost vs L")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "mamba_scan_bench.png", dpi=110)


if __name__ == "__main__":
    main()
