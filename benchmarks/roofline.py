"""How much faster can an ensemble be than one model at a time? A roofline bound per study, from the step's FLOPs.

Batching E models into one call can only remove overhead: the arithmetic of E model-steps stays. So if one model
alone already runs its step at a fraction f of what this machine's matrix products reach, no ensemble can be more
than 1/f times faster per model-step than one model at a time, on this machine. This script measures, in one run:

- peak: the best float32 GFLOP/s of a large square matmul (the fastest thing the CPU does; a step's convolutions
  and batched products run at or below it);
- per study, the FLOPs of one model-step (forward + backward of the study's Training loss; torch's FlopCounterMode,
  which counts matmuls, convolutions and attention, not elementwise work: so the achieved rate is under-counted and
  the bound 1/f is generous), and the achieved GFLOP/s of the bare step one model at a time and as an ensemble of
  E models (core.bench.protocol_train_seconds, the step `theorylab bench` times);
- ceiling = peak / (one-at-a-time GFLOP/s): the most an ensemble could gain over one model at a time.

    python benchmarks/roofline.py --threads 1 --out results/roofline.jsonl
    python benchmarks/roofline.py --markdown results/roofline.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from theorylab.core.bench import on_protocol, protocol_train_seconds
from theorylab.core.ensemble import rng_for
from theorylab.core.report import machine_description
from theorylab.core.study import get_study, study_names

CPU = torch.device("cpu")


def peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n float32 matmul (2 n^3 FLOPs), best of `repeats` runs of a few products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - t0) / 4)
    return 2 * n**3 / best / 1e9


def step_flops(name: str, models: int) -> float:
    """FLOPs of one training step (loss forward and its gradient) of an ensemble of `models` at the bench config."""
    s = get_study(name)
    base = s.config("quick", **s.bench_config)
    cfgs = [base.replace(seed=i) for i in range(models)]
    tr = s.train_group.training(cfgs, rng_for(cfgs, CPU), CPU)
    params = {k: v.detach().clone() for k, v in tr.params.items()}
    wrt = [params[k].requires_grad_(True) for k in tr.trainable]
    with FlopCounterMode(display=False) as counter:
        loss = tr.loss(params, 0)["loss"]
        torch.autograd.grad(loss.sum(), wrt)
    return float(counter.get_total_flops())


def rate(name: str, models: int, target: float = 3.0, repeats: int = 3) -> float:
    """Best model-steps/s of the bare step at E = models over `repeats` runs of about `target` seconds each."""
    s = get_study(name)
    base = s.config("quick", **s.bench_config)
    cfgs = [base.replace(seed=i) for i in range(models)]
    t2 = protocol_train_seconds(s, cfgs, CPU, 2)  # warm-up, and the step count for `target` seconds
    steps = int(min(2000, getattr(base, "steps", 2000), max(3, target / max(t2 / 2, 1e-4))))  # within the config's
    # schedule (a study may key its step's draws or schedules to the configured step count)
    return max(models * steps / protocol_train_seconds(s, cfgs, CPU, steps) for _ in range(repeats))


def row(name: str, peak: float, models: int) -> dict:
    # both paths run the same arithmetic per model-step, so one model's count is used for both (the counter's
    # formula for a convolution ignores groups, and some studies run an ensemble's convolutions as grouped ones)
    flops_alone = step_flops(name, 1)
    alone, ens = rate(name, 1), rate(name, models)
    achieved_alone = flops_alone * alone / 1e9
    return {"study": name, "mflop_per_model_step": flops_alone / 1e6,
            "alone_model_steps_per_s": alone, "ensemble_model_steps_per_s": ens, "models": models,
            "alone_gflops": achieved_alone, "ensemble_gflops": flops_alone * ens / 1e9, "peak_gflops": peak,
            "alone_fraction_of_peak": achieved_alone / peak,
            "ceiling": peak / achieved_alone if achieved_alone > 0 else float("inf"),
            "measured_ratio": ens / alone}


def markdown(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    head = rows[0]
    peak = max(r["peak_gflops"] for r in rows)
    rows = [rows[0]] + [r for r in rows if "study" in r]
    out = [f"Machine: {head['machine']}, torch threads {head['threads']}, peak (1024^3 float32 matmul, best seen) "
           f"{peak:.1f} GFLOP/s.", "",
           "| study | MFLOP / model-step | one at a time: GFLOP/s (of peak) | ceiling: peak / one at a time "
           f"| E = {rows[1]['models'] if len(rows) > 1 else '?'}: GFLOP/s | measured ensemble / one at a time |",
           "|---|---|---|---|---|---|"]
    for r in rows[1:]:
        r = {**r, "alone_fraction_of_peak": r["alone_gflops"] / peak, "ceiling": peak / max(r["alone_gflops"], 1e-12)}
        out.append(f"| {r['study']} | {r['mflop_per_model_step']:.2f} | {r['alone_gflops']:.2f} "
                   f"({100 * r['alone_fraction_of_peak']:.0f}%) | {r['ceiling']:.1f}x | {r['ensemble_gflops']:.2f} "
                   f"| {r['measured_ratio']:.1f}x |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", default="", help="comma-separated; default: every study on the protocol")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--markdown", type=Path, help="print the table of a finished run and exit")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(a.markdown))
        return
    torch.set_num_threads(a.threads)
    names = [n for n in (a.studies.split(",") if a.studies else study_names()) if n]
    names = [n for n in names if on_protocol(get_study(n))]
    peak = peak_gflops()  # re-measured before every row; the best seen so far is used (load only lowers it)
    lines = [{"machine": machine_description("cpu"), "threads": a.threads, "peak_gflops": peak,
              "load_average_1min": os.getloadavg()[0]}]
    print(json.dumps(lines[0]), flush=True)
    if a.out and a.out.exists():  # resume: keep the rows of a run that stopped, and their peaks
        lines = [json.loads(x) for x in a.out.read_text().splitlines() if x.strip()] + lines[:1]
        names = [n for n in names if n not in {r.get("study") for r in lines}]
    for name in names:
        peak = max(peak, peak_gflops())
        r = row(name, peak, a.models)
        r["load_average_1min"] = os.getloadavg()[0]
        print(json.dumps(r), flush=True)
        lines.append(r)
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text("".join(json.dumps(x) + "\n" for x in lines))


if __name__ == "__main__":
    main()
