"""Issue 26's table: every study's training step, ensemble vs one model at a time vs its peer, at E = 64 and 512,
1 and 2 torch threads, in one run on one machine (BENCHMARKS.md "Speed of every study").

Each cell is `theorylab bench STUDY` (core.bench.run_bench: the paths alternate, best of --repeats), with the step
count chosen per study so that one ensemble run takes about --target seconds (from a timed 2-step run after the
warm-up). One model at a time is timed on 8 models; its rate is per model-step like the others.

    pip install -e ".[bench]"                                       # jax[cpu], for the peers
    python benchmarks/speed_table.py --out results/speed.jsonl       # every study (about 30 min on 2 cores)
    python benchmarks/speed_table.py --studies graph,mamba --threads 1 --models 64
    python benchmarks/speed_table.py --markdown results/speed.jsonl  # the table, from a finished run
    python benchmarks/speed_table.py --rates results/speed.jsonl     # write theorylab/core/reference_rates.json

The reference rates are what the cost guard falls back on for a study with no chunk in the store yet.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import time
from pathlib import Path

import torch

from theorylab.core.backends import memory_budget
from theorylab.core.bench import PeerUnavailable, load_peer, on_protocol, run_bench, step_footprint, train_seconds
from theorylab.core.cost import REFERENCE_RATES
from theorylab.core.memory import footprint
from theorylab.core.report import machine_description
from theorylab.core.study import get_study, study_names

CPU = torch.device("cpu")


def trains(name: str) -> bool:
    return "steps" in type(get_study(name).config("quick")).model_fields


def steps_for(name: str, E: int, target: float) -> int:
    """Steps that make one ensemble run of E models take about `target` seconds (at least 5), from a 2-step run
    (a first compilation inflates it: fewer steps, never too many)."""
    s = get_study(name)
    base = s.config("quick", **s.bench_config)
    seconds, _ = train_seconds(s, [base.replace(seed=i) for i in range(E)], CPU, 2)
    return int(min(2000, max(5, target / max(seconds / 2, 1e-4))))


SLOW = 60.0  # seconds: a cell whose 5 ensemble steps would take longer (from the E = 64 rate) is not run


def cell(name: str, E: int, threads: int, target: float, repeats: int, peer: bool, rate_64: float | None = None,
         steps: int | None = None) -> dict:
    torch.set_num_threads(threads)
    s = get_study(name)
    if rate_64 and E > 64 and E * 5 / rate_64 > SLOW:
        return {"study": name, "models": E, "threads": threads,
                "skipped": f"not run: 5 steps would take about {E * 5 / rate_64:.0f} s at the E = 64 rate"}
    base = s.config("quick", **s.bench_config)
    # the bare step's own memory (a sliced step holds one slice's activations): the dry-run footprint of a whole
    # train_group counts its evaluation and every model's activations, and refused E = 512 for steps that fit
    fp = step_footprint(s, base, (8, 16)) if on_protocol(s) and s.bench is None else footprint(s, base)
    need, budget = fp.bytes_for(E), memory_budget(CPU)
    if need > budget:
        return {"study": name, "models": E, "threads": threads, "skipped": f"needs {need / 2**30:.1f} GiB > budget"}
    steps = steps or steps_for(name, E, target)
    try:
        if peer:
            load_peer(name)
    except PeerUnavailable as e:
        peer, why = False, str(e)
    else:
        why = None
    t0 = time.perf_counter()
    res = run_bench(s, CPU, E, steps, naive_models=8, repeats=repeats, peer=peer)
    res.update(threads=threads, wall_seconds=time.perf_counter() - t0, peer_missing=why)
    return res


def markdown(rows: list[dict]) -> str:
    head = ("| study | E | threads | ours | one at a time | ratio | peer | ours / peer |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['study']} | {r['models']} | {r['threads']} | {r['skipped']} | | | | |")
            continue
        peer = f"{r['peer_model_steps_per_s']:,.0f}" if r.get("peer") else "(none)"
        vs = f"{r['ratio_to_peer']:.2f}x" if r.get("peer") else ""
        lines.append(f"| {r['study']} | {r['models']} | {r['threads']} | {r['ensemble_model_steps_per_s']:,.0f} | "
                     f"{r['naive_model_steps_per_s']:,.0f} | {r['ratio']:.1f}x | {peer} | {vs} |")
    return "\n".join(lines)


def reference_rates(rows: list[dict]) -> dict:
    """{study: {threads: {E: model-steps/s}}}, E = 1 being the one-at-a-time rate."""
    studies: dict = {}
    for r in rows:
        if "skipped" in r or r["ensemble_model_steps_per_s"] != r["ensemble_model_steps_per_s"]:
            continue
        at = studies.setdefault(r["study"], {}).setdefault(str(r["threads"]), {})
        at[str(r["models"])] = round(r["ensemble_model_steps_per_s"], 1)
        if math.isfinite(r["naive_model_steps_per_s"]):
            at["1"] = max(at.get("1", 0.0), round(r["naive_model_steps_per_s"], 1))
    return {"machine": rows[0]["device"].split("(", 1)[-1].rstrip(")") if rows else "",
            "measured": rows[0].get("date", str(datetime.date.today())) if rows else "",
            "source": "benchmarks/speed_table.py (BENCHMARKS.md, Speed of every study)", "studies": studies}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", default="")
    ap.add_argument("--models", default="64,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--target", type=float, default=2.0, help="seconds of one ensemble run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="steps of every run (default: from --target)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--out", default="speed.jsonl")
    ap.add_argument("--markdown", help="print the table of a finished run (a .jsonl) and exit")
    ap.add_argument("--rates", help="write theorylab/core/reference_rates.json from a finished run and exit")
    args = ap.parse_args()
    if args.markdown or args.rates:
        rows = [json.loads(line) for line in open(args.markdown or args.rates)]
        if args.markdown:
            print(markdown(rows))
        else:
            REFERENCE_RATES.write_text(json.dumps(reference_rates(rows), indent=1) + "\n")
            print(f"wrote {REFERENCE_RATES}")
        return
    names = [n for n in (args.studies.split(",") if args.studies else study_names()) if trains(n)]
    print(f"machine: {machine_description('cpu')}, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}", flush=True)
    with open(args.out, "a") as f:
        for name in names:
            for threads in map(int, args.threads.split(",")):
                rate_64 = None
                for E in map(int, args.models.split(",")):
                    r = cell(name, E, threads, args.target, args.repeats, not args.no_peer, rate_64, args.steps)
                    if E == 64 and "skipped" not in r:
                        rate_64 = r["ensemble_model_steps_per_s"]
                    r["date"] = str(datetime.date.today())
                    f.write(json.dumps(r) + "\n")
                    f.flush()
                    print(markdown([r]).splitlines()[-1], f"({r.get('wall_seconds', 0):.0f} s, steps {r.get('steps')}, "
                          f"load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
