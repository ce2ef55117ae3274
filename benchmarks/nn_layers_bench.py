"""Batched ensemble layers (theorylab.core.nn) vs the same per-model block vmapped with torch.func.

One pre-norm ViT block (LN, 2-head self-attention, +res, LN, GELU MLP, +res) on E models at once, forward +
backward of a per-model squared error summed over models (what core.train does). Variants:
  batched         core.nn layers on [E, B, N, D] (the implementation kept), attention by scaled_dot_product_attention
                  or, with probes, as an explicit softmax
  vmap            the per-model block (plain torch.nn.functional on [B, N, D]) under torch.func.vmap, autograd through it;
                  attention as an explicit softmax, or as scaled_dot_product_attention (no vmap batching rule on CPU)
  vmap(grad)      torch.func.vmap(torch.func.grad(per-model loss)), explicit softmax
Runs alternate between variants and the best of `repeats` is kept, so a burst of load from other processes on a
shared machine penalises no variant more than another; the process's CPU time is printed beside the wall clock,
as it counts only this process's work.

    PYTHONPATH=. python3 benchmarks/nn_layers_bench.py [--threads 2] [--steps 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from theorylab.core import nn
from theorylab.core.rng import EnsembleRNG

E, B, N, D, HEADS, MLP = 64, 64, 16, 32, 2, 64


def init_block(E: int) -> dict[str, torch.Tensor]:
    rng = EnsembleRNG(range(E))
    p = {**nn.init_layer_norm(rng, "ln1", D), **nn.init_attention(rng, "attn", D, HEADS),
         **nn.init_layer_norm(rng, "ln2", D), **nn.init_mlp(rng, "mlp", D, MLP)}
    return {k: v + 0.1 * torch.randn(v.shape) for k, v in p.items()}  # biases and LN off their init


def block_batched(p: dict, x: torch.Tensor, probes: dict | None = None) -> torch.Tensor:
    """x [E, B, N, D] -> [E, B, N, D] with core.nn (with probes, attention is the explicit softmax)."""
    x = x + nn.attention(nn.layer_norm(x, p, "ln1"), p, "attn", HEADS, probes=probes)
    return x + nn.mlp(nn.layer_norm(x, p, "ln2"), p, "mlp")


def _softmax_attention(q, k, v):
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v


def block_one(p: dict, x: torch.Tensor, attend=_softmax_attention) -> torch.Tensor:
    """One model: params without E, x [B, N, D] -> [B, N, D]."""
    qkv = F.layer_norm(x, (D,), p["ln1.w"], p["ln1.b"]) @ p["attn.qkv.w"] + p["attn.qkv.b"]
    q, k, v = (t.unflatten(-1, (HEADS, -1)).transpose(-2, -3) for t in qkv.chunk(3, -1))  # [B, H, N, dh]
    x = x + attend(q, k, v).transpose(-2, -3).flatten(-2) @ p["attn.proj.w"] + p["attn.proj.b"]
    h = F.gelu(F.layer_norm(x, (D,), p["ln2.w"], p["ln2.b"]) @ p["mlp.fc1.w"] + p["mlp.fc1.b"])
    return x + h @ p["mlp.fc2.w"] + p["mlp.fc2.b"]


def variants(P: dict, X: torch.Tensor, Y: torch.Tensor) -> dict:
    """name -> (one training step's gradients, forward used by the agreement check)."""
    forwards = {"batched": block_batched, "batched, softmax": lambda p, x: block_batched(p, x, {}), "vmap": vmap(block_one),
                "vmap, sdpa": vmap(lambda p, x: block_one(p, x, F.scaled_dot_product_attention))}

    def autograd_step(forward):
        def step():
            p = {k: v.detach().requires_grad_() for k, v in P.items()}
            ((forward(p, X) - Y) ** 2).mean((1, 2, 3)).sum().backward()  # per-model losses, one backward
            return {k: v.grad for k, v in p.items()}
        return step

    per_model_grad = vmap(grad(lambda p, x, y: ((block_one(p, x) - y) ** 2).mean()))
    steps = {name: autograd_step(f) for name, f in forwards.items()}
    steps["vmap(grad)"] = lambda: per_model_grad(P, X, Y)
    return steps


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=10, help="steps per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per variant; the best is kept")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*batching rule.*")  # the sdpa fallback, measured below
    torch.manual_seed(0)
    P, X, Y = init_block(E), torch.randn(E, B, N, D), torch.randn(E, B, N, D)
    steps = variants(P, X, Y)
    reference = steps["batched"]()
    for name, step in steps.items():  # same function, same gradients (and a warm-up)
        for k, g in step().items():
            torch.testing.assert_close(g, reference[k], atol=1e-5, rtol=1e-4, msg=f"{name} {k}")
    wall = {name: math.inf for name in steps}
    cpu = dict(wall)
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            wall[name] = min(wall[name], (time.perf_counter() - t0) / args.steps)
            cpu[name] = min(cpu[name], (time.process_time() - c0) / args.steps)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"ViT block E={E} B={B} N={N} D={D} heads={HEADS} MLP={MLP}, forward+backward, best of {args.repeats} x "
          f"{args.steps} steps (wall clock, and CPU time of this process: less sensitive to other processes' load)")
    print(f"{'variant':<16} {'ms/step':>8} {'model-steps/s':>14} {'/ batched':>10} {'CPU ms/step':>12} {'/ batched':>10}")
    for name in steps:
        print(f"{name:<16} {1e3 * wall[name]:>8.1f} {E / wall[name]:>14.0f} {wall[name] / wall['batched']:>10.2f} "
              f"{1e3 * cpu[name]:>12.1f} {cpu[name] / cpu['batched']:>10.2f}")

if __name__ == "__main__":
    main()
