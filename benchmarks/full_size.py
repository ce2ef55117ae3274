"""Each study's whole claim run at full size (`theorylab check STUDY --size full`, each claim's default seeds), timed:
wall seconds, and the CPU seconds of the process (user + system: what one idle core would take, the figure to
quote on a shared machine), with the load average before and after and the verdicts.

    python benchmarks/full_size.py --studies group_imbalance,mamba --out full.jsonl     # one after another
    python benchmarks/full_size.py --reference full.jsonl    # merge the rows into theorylab/core/reference_checks.json

Every run gets its own store in a temporary folder (nothing is reused), OMP_NUM_THREADS=--threads. The reference
file is what `theorylab run` / `check` cost a claim run from (core.check_cost); --reference replaces the entries of
the studies in the jsonl and keeps the others (estimates among them) as they are.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from theorylab.core.check_cost import REFERENCE_CHECKS


def timed_check(study: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as folder:
        argv = [sys.executable, "-m", "theorylab", "check", study, "--size", "full", "--yes", "--json",
                "--store", str(Path(folder) / "store.sqlite")]
        load_before = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        rows = json.loads(done.stdout.strip().splitlines()[-1])
        verdicts = {r["claim"]: f"{r['verdict']} {r['seeds_passed']}/{r['seeds']}" for r in rows}
    except (ValueError, IndexError):
        verdicts = {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return {"study": study, "threads": threads, "exit_code": done.returncode, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "verdicts": verdicts, "measured": datetime.date.today().isoformat()}


def merge_reference(rows: list[dict], path: Path = REFERENCE_CHECKS) -> None:
    ref = json.loads(path.read_text())
    for r in rows:
        if r["exit_code"] not in (0, 1, 3):  # 2: refused or bad input; anything else: it crashed
            print(f"{r['study']}: exit code {r['exit_code']}, not merged")
            continue
        ref["studies"][r["study"]] = {"full": {
            "seconds": r["cpu_s"], "how": f"measured end to end ({r['measured']}: {r['cpu_s'] / 60:.1f} min of CPU, "
                                          f"{r['wall_s'] / 60:.1f} min wall at load {r['load'][0]}-{r['load'][1]})"}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ref, indent=2) + "\n")
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", default="", help="comma-separated (default: every study)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="full_size.jsonl")
    ap.add_argument("--reference", help="merge a finished run (a .jsonl) into reference_checks.json and exit")
    args = ap.parse_args()
    if args.reference:
        merge_reference([json.loads(line) for line in Path(args.reference).read_text().splitlines() if line.strip()])
        return
    from theorylab.core.study import study_names

    for study in [s for s in args.studies.split(",") if s] or study_names():
        row = timed_check(study, args.threads)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{study}: {row['cpu_s'] / 60:.1f} min CPU, {row['wall_s'] / 60:.1f} min wall, exit {row['exit_code']}",
              flush=True)


if __name__ == "__main__":
    main()
