"""Hostile-user audit (issue 15): bad inputs across configs, the CLI, stores and merges, and kill -9 of sweeps
and merges. Prints the totals the hardening issue asks for:

    bad inputs tried / clean errors / tracebacks / silently accepted; kills / rows lost / rows duplicated /
    half-written merge outputs.

A clean error: exit code 2, one line starting `error:`, no traceback, nothing written. Run from the repository
root: `python benchmarks/hostile_inputs.py [--kills 26] [--merge-kills 8]` (about 10 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.store import Store
from theorylab.core.study import get_study, study_names

runner = CliRunner()
ALWAYS_BAD = ["nan", "inf", "-inf", "abc", str(2**63), "[]", "{a: 1}", "1e999"]


def classify(args: list[str], cwd: Path) -> str:
    before = set(cwd.rglob("*"))
    res = runner.invoke(app, args)
    written = set(cwd.rglob("*")) - before
    text = res.output.strip()
    crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
    if crashed or "Traceback" in text:
        return "traceback"
    if res.exit_code == 0:
        return "accepted"
    one_line = text.startswith("error:") and "\n" not in text
    return "clean" if res.exit_code == 2 and one_line and not written else "unclean"


def config_cases(study: str, tmp: Path) -> list[list[str]]:
    """Every numeric/bool field of the study given values no field may take."""
    cls = get_study(study).config_cls
    cases = []
    for name, info in cls.model_fields.items():
        if info.annotation in (int, float, bool):
            for v in ALWAYS_BAD:
                cases.append(["sweep", study, "--dry-run", "--store", str(tmp / "s.sqlite"), "--set", f"{name}={v}"])
    cases.append(["sweep", study, "--dry-run", "--set", "nosuchfield=1"])
    cases.append(["sweep", study, "--dry-run", "--set", "seed=-1"])
    return cases


def tiny_model(folder: Path, scale: float = 0.0, seed: int = 0, n: int = 64) -> Path:
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.ones(n, n) + scale * torch.randn(n, n, generator=g), "b": torch.zeros(n)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "toy"}')
    return folder


def merge_yaml(tmp: Path, base: Path, models: list[Path], weights: list, name: str = "m.yaml", extra: dict | None = None) -> Path:
    cfg = {"merge_method": "task_arithmetic", "base_model": str(base),
           "models": [{"model": str(m), "parameters": {"weight": w}} for m, w in zip(models, weights)], **(extra or {})}
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def store_and_merge_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    (tmp / "adir").mkdir()
    (tmp / "afile").write_text("x")
    (tmp / "text.sqlite").write_text("not a database")
    (tmp / "trunc.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(200))
    (tmp / "empty.sqlite").write_bytes(b"")
    base = tiny_model(tmp / "base")
    ft = tiny_model(tmp / "ft", 0.1, 1)
    bad = {}
    for name, content in {"empty": b"", "five": b"12345", "hugehdr": (2**60).to_bytes(8, "little") + b"{}",
                          "listhdr": (2).to_bytes(8, "little") + b"[]", "garbage": os.urandom(300)}.items():
        d = tmp / f"bad-{name}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(content)
        (d / "config.json").write_text('{"model_type": "toy"}')
        bad[name] = d
    cases = []
    for s in ("adir", "afile/x.sqlite", "text.sqlite", "trunc.sqlite", "typo/store.sqlite"):
        cases += [(f"report --store {s}", ["report", "icl", "--store", str(tmp / s)]),
                  (f"export --store {s}", ["export", "--out", str(tmp / "o.csv"), "--store", str(tmp / s)]),
                  (f"sweep --store {s}", ["sweep", "icl", "--grid", "seed=0..1", "--set", "steps=5", "--set", "n_test=10",
                                          "--store", str(tmp / s), "--quiet"])][: 3 if "typo" not in s else 2]
    cases += [("sweep seed=0..1e9", ["sweep", "icl", "--grid", "seed=0..1000000000", "--store", str(tmp / "n.sqlite")]),
              ("check n_test 4M, l_ts 4096", ["check", "icl", "--set", "n_test=4194304", "--set", "l_ts=4096",
                                              "--store", str(tmp / "n.sqlite")]),
              ("check --claim misspelt", ["check", "icl", "--claim", "thm1_indomain", "--store", str(tmp / "n.sqlite")]),
              ("check --seeds 0", ["check", "icl", "--seeds", "0", "--store", str(tmp / "n.sqlite")]),
              ("run unknown study", ["run", "nope", "--store", str(tmp / "n.sqlite")]),
              ("sweep --grid junk", ["sweep", "icl", "--grid", "seed=3..1", "--dry-run"]),
              ("sweep --grid twice", ["sweep", "icl", "--grid", "seed=1", "--grid", "seed=2", "--dry-run"]),
              ("train_task_offsets=[]", ["sweep", "icl", "--set", "train_task_offsets=[]", "--dry-run"]),
              ("no unseen tasks", ["sweep", "icl", "--set", "train_task_offsets=[1,2,3,4,5]", "--dry-run"]),
              ("lambda grid missing -1, 0, 1", ["sweep", "task_vectors", "--set", "lam_step=0.3", "--dry-run"]),
              ("export to unwritable", ["export", "--out", "/proc/nope/x.csv", "--store", str(tmp / "n.sqlite")])]
    for w in (".nan", ".inf", "1.0e308"):
        y = merge_yaml(tmp, base, [ft], [w], f"w{w}.yaml")
        y.write_text(y.read_text().replace(f"'{w}'", w))
        cases.append((f"merge weight {w}", ["merge", str(y), str(tmp / f"out{w}"), "--no-progress"]))
    for name, d in bad.items():
        cases.append((f"merge model {name}", ["merge", str(merge_yaml(tmp, base, [d], [1.0], f"{name}.yaml")),
                                               str(tmp / f"out-{name}"), "--no-progress"]))
    cases.append(("merge onto base", ["merge", str(merge_yaml(tmp, base, [ft], [1.0], "ob.yaml")), str(base),
                                      "--overwrite", "--no-progress"]))
    cases.append(("merge yaml list", ["merge", str(_write(tmp / "list.yaml", "- 1\n- 2\n")), str(tmp / "ol"), "--no-progress"]))
    cases.append(("merge yaml laughs", ["merge", str(_write(tmp / "laugh.yaml", "a: &a [x,x]\nb: &b [*a,*a]\nc: [*b,*b]\n")),
                                        str(tmp / "olaugh"), "--no-progress"]))
    return cases


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def kill_sweeps(n: int, tmp: Path) -> dict:
    """kill -9 sweeps at random moments (two at a time on one store), resume, count rows."""
    store = tmp / "kill.sqlite"
    cells = 16
    cmd = [sys.executable, "-m", "theorylab", "sweep", "icl", "--grid", f"seed=0..{cells - 1}", "--set", "steps=300",
           "--set", "n_test=200", "--max-models", "2", "--store", str(store), "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    Store(store)  # so the row counts below read a store even when the first kills land during start-up
    rng = random.Random(0)
    killed = 0
    while killed < n:
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) for _ in range(2)]
        time.sleep(rng.uniform(3.0, 9.0))  # start-up takes ~3 s on a loaded 2-core machine
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                killed += 1
            p.wait()
        with sqlite3.connect(store) as con:
            if con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] >= cells:
                con.execute("DELETE FROM cells")
                con.execute("DELETE FROM params")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with sqlite3.connect(store) as con:
        rows = con.execute("SELECT COUNT(*), COUNT(DISTINCT config_hash) FROM cells").fetchone()
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    return {"kills": killed, "cells": cells, "rows": rows[0], "lost": cells - rows[1], "duplicated": rows[0] - rows[1],
            "integrity": ok}


def kill_merges(n: int, tmp: Path) -> dict:
    base = tiny_model(tmp / "kbase", n=2048)
    fts = [tiny_model(tmp / f"kft{i}", 0.1, i, n=2048) for i in range(2)]
    y = merge_yaml(tmp, base, fts, [0.5, 0.5], "k.yaml", {"parameters": {}})
    rng = random.Random(1)
    half = 0
    for i in range(n):
        out = tmp / f"kout{i}"
        p = subprocess.Popen([sys.executable, "-m", "theorylab", "merge", str(y), str(out), "--no-progress"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 4.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if out.exists() and not (out / "model.safetensors").exists() and not list(out.glob("*.index.json")):
            half += 1
    return {"kills": n, "half_written_outputs": half}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=26)
    ap.add_argument("--merge-kills", type=int, default=8)
    ap.add_argument("--no-inputs", action="store_true", help="only the kills")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        totals = {"clean": 0, "traceback": 0, "accepted": 0, "unclean": 0}
        examples: dict[str, list[str]] = {k: [] for k in totals}
        cases = [(" ".join(c[:2] + c[-2:]), c) for s in study_names() for c in config_cases(s, tmp)]
        cases += store_and_merge_cases(tmp)
        cases = [] if a.no_inputs else cases
        for label, args in cases:
            kind = classify(args, tmp)
            totals[kind] += 1
            if kind != "clean":
                examples[kind].append(label)
        print(json.dumps({"bad_inputs": len(cases), **totals, "not_clean": {k: v for k, v in examples.items() if v}},
                         indent=1))
        if a.kills:
            print(json.dumps({"sweep_kills": kill_sweeps(a.kills, tmp)}))
        if a.merge_kills:
            print(json.dumps({"merge_kills": kill_merges(a.merge_kills, tmp)}))


if __name__ == "__main__":
    main()
