"""Merge throughput and peak RSS on generated LLaMA-shaped checkpoints (no downloads).

Generates a base checkpoint (~2 GB in bf16 by default, two shards + index) and N "fine-tuned" copies
(base + small noise), then runs ``theorylab.hf.merge_checkpoints`` for several methods, each in a fresh
subprocess so that its peak RSS (ru_maxrss of the child) is the merge's alone.

    python benchmarks/merge_bench.py --workdir /tmp/merge_bench --layers 17 --models 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

HIDDEN, INTER, VOCAB = 2048, 5632, 32000


def layer_shapes(n_layers: int) -> dict[str, tuple[int, ...]]:
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for l in range(n_layers):
        p = f"model.layers.{l}."
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[p + f"self_attn.{m}.weight"] = (HIDDEN, HIDDEN)
        shapes[p + "mlp.gate_proj.weight"] = (INTER, HIDDEN)
        shapes[p + "mlp.up_proj.weight"] = (INTER, HIDDEN)
        shapes[p + "mlp.down_proj.weight"] = (HIDDEN, INTER)
        shapes[p + "input_layernorm.weight"] = (HIDDEN,)
        shapes[p + "post_attention_layernorm.weight"] = (HIDDEN,)
    shapes["model.norm.weight"] = (HIDDEN,)
    shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return shapes


def generate(folder: Path, shapes, dtype, seed: int, base: Path | None, shard_bytes: int) -> None:
    """Write one checkpoint tensor by tensor with theorylab's streaming writer (never all in memory)."""
    from theorylab.hf import CheckpointReader, ShardedWriter, TensorInfo, atomic_output_dir

    g = torch.Generator().manual_seed(seed)
    reader = CheckpointReader(base) if base else None
    with atomic_output_dir(folder, overwrite=True) as tmp:
        w = ShardedWriter(tmp, [TensorInfo(n, s, dtype) for n, s in shapes.items()], shard_bytes)
        for n, s in shapes.items():
            if reader is None:
                t = (torch.randn(s, generator=g) * 0.02).to(dtype)
            else:  # a "fine-tuned" model: base + a small update
                t = (reader.read(n).float() + 0.002 * torch.randn(s, generator=g)).to(dtype)
            w.write(n, t)
            del t
        w.close()
        (tmp / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                     "hidden_size": HIDDEN, "num_hidden_layers": len(shapes) // 9,
                                                     "torch_dtype": str(dtype)[6:]}))
    if reader:
        reader.close()


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir() if f.suffix == ".safetensors")


# Peak RSS is the child's VmHWM: ru_maxrss would carry over the parent's peak across fork + exec on Linux.
PEAK = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"

CHILD = r"""
import sys, time, json
from theorylab.hf import merge_checkpoints, parse_config
cfg = parse_config(json.loads(sys.argv[1]))
t = time.perf_counter()
merge_checkpoints(cfg, sys.argv[2], progress=False, overwrite=True)
print(json.dumps({"seconds": time.perf_counter() - t, "maxrss_kb": %s}))
""" % PEAK

IDLE = r"""
import json
import theorylab.hf, torch
print(json.dumps({"maxrss_kb": %s}))
""" % PEAK


def run_child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/merge_bench"))
    ap.add_argument("--layers", type=int, default=17, help="17 layers of LLaMA-1B width give ~2.0 GB in bf16")
    ap.add_argument("--models", type=int, default=3, help="fine-tuned checkpoints merged into the base")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--methods", default="task_arithmetic,ties,dare_ties")
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    shapes = layer_shapes(args.layers)
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = args.workdir / "base"
    t = time.perf_counter()
    if not base.exists():
        generate(base, shapes, dtype, 0, None, 1 << 30)
    models = []
    for i in range(args.models):
        m = args.workdir / f"ft{i}"
        if not m.exists():
            generate(m, shapes, dtype, i + 1, base, 1 << 30)
        models.append(m)
    gb = folder_bytes(base) / 1e9
    print(f"checkpoints ready ({time.perf_counter() - t:.0f}s): {args.models + 1} x {gb:.2f} GB, "
          f"{sum(map(lambda s: torch.Size(s).numel(), shapes.values())) / 1e9:.2f} B params, {args.dtype}")
    idle = run_child(IDLE)["maxrss_kb"] / 1024
    print(f"python + torch + theorylab.hf imported, idle RSS: {idle:.0f} MB")
    rows = []
    for method in args.methods.split(","):
        for n in sorted({1, args.models}):
            params = {} if method == "task_arithmetic" else {"density": 0.2 if method == "ties" else 0.1}
            cfg = {"merge_method": method, "base_model": str(base),
                   "models": [{"model": str(m), "parameters": {"weight": 1.0 / n, **params}} for m in models[:n]]}
            res = run_child(CHILD, json.dumps(cfg), str(args.workdir / "out"))
            read_gb = gb * (n + 1)
            rows.append((method, n, res["seconds"], read_gb / res["seconds"], res["maxrss_kb"] / 1024))
            print(f"{method:16s} models={n}  {res['seconds']:7.1f}s  {read_gb / res['seconds']:6.3f} GB/s read  "
                  f"peak RSS {res['maxrss_kb'] / 1024:7.0f} MB", flush=True)
    print(f"\nmachine: {platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
          f"torch {torch.__version__} threads {torch.get_num_threads()}")
    print("| method | models merged | checkpoint size | time (s) | input read (GB/s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for method, n, s, tput, rss in rows:
        print(f"| {method} | {n} | {gb:.2f} GB | {s:.1f} | {tput:.3f} | {rss:.0f} |")
    shutil.rmtree(args.workdir / "out", ignore_errors=True)
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
