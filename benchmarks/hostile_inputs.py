"""Hostile-user audit (issue 15): bad inputs across configs, the CLI, stores and merges, and kill -9 of sweeps
and merges. Prints the totals the hardening issue asks for:

    bad inputs tried / clean errors / tracebacks / silently accepted; kills / rows lost / rows duplicated /
    half-written merge outputs.

A clean error: exit code 2, one line starting `error:`, no traceback, nothing written. Run from the repository
root: `python benchmarks/hostile_inputs.py [--kills 26] [--merge-kills 8]` (about 10 minutes on 2 cores);
`PYTHONPATH=. python benchmarks/hostile_inputs.py --issue24` runs only issue 24's classes (clean / internal /
unclean / accepted / hang; a few minutes); `--faults N` runs issue 24's fault scenarios N times each (kill -9
during training of one of two concurrent sweeps, SIGSTOP of a lease owner, a disk that fills mid-sweep).
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


def classify5(args: list[str], cwd: Path, limit: int = 20) -> str:
    """Issue 24's classes: clean (exit 2, one `error:` line, nothing written or changed), internal (exit 1 or an
    "internal error" line), unclean (anything else refused), accepted (exit 0: a wrong or meaningless result),
    hang (no answer within `limit` seconds)."""
    def snap():
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in cwd.rglob("*") if p.is_file()}

    def alarm(*_):
        raise TimeoutError

    before = snap()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(limit)
    try:
        res = runner.invoke(app, args)
    except TimeoutError:
        return "hang"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if isinstance(res.exception, TimeoutError):
        return "hang"
    text = res.output.strip()
    if "internal error" in text or "Traceback" in text or res.exit_code == 1:
        return "internal"
    if res.exit_code == 0:
        return "accepted"
    one_line = text.startswith("error:") and "\n" not in text
    return "clean" if res.exit_code == 2 and one_line and snap() == before else "unclean"


def issue24_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    """Every class of issue 24, over every command and every study."""
    st = tmp / "i24.sqlite"
    runner.invoke(app, ["sweep", "icl", "--grid", "seed=0..1", "--set", "steps=5", "--set", "n_test=10", "--store",
                        str(st), "--quiet", "--device", "cpu"])
    foreign = tmp / "foreign.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE IF NOT EXISTS t (x)")
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    (tmp / "afile24").write_text("x")
    n = ["--store", str(tmp / "n24.sqlite")]
    cases = [
        ("export --out == --store", ["export", "--store", str(st), "--out", str(st), "--format", "csv"]),
        ("export foreign sqlite", ["export", "--store", str(foreign), "--out", str(tmp / "f.csv")]),
        ("report foreign sqlite", ["report", "icl", "--store", str(foreign)]),
        ("sweep adopts foreign sqlite", ["sweep", "icl", "--store", str(foreign), "--set", "steps=5", "--set", "n_test=10", "--quiet"]),
        ("report FIFO store", ["report", "icl", "--store", str(fifo)]),
        ("sweep FIFO store", ["sweep", "icl", "--dry-run", "--store", str(fifo)]),
        ("merge FIFO config", ["merge", str(fifo), str(tmp / "mo")]),
        ("run --out a file", ["run", "icl", "--out", str(tmp / "afile24"), "--set", "steps=5", "--seeds", "1", *n]),
        ("run --seeds abc", ["run", "icl", "--seeds", "abc"]), ("merge no args", ["merge"]),
        ("relate without --base", ["relate", "A", "B"]), ("--set a=1 b=2", ["run", "icl", "--set", "a=1", "b=2"]),
        ("--claim x y", ["check", "icl", "--claim", "x", "y"]),
        ("extract-lora --rank two", ["extract-lora", "a", "b", "--base", "c", "--rank", "two"]),
        ("bad --max-shard-size", ["merge", str(tmp / "afile24"), str(tmp / "mo"), "--max-shard-size", "2QB"]),
        ("run --seeds 1e9", ["run", "icl", "--seeds", "1000000000", *n]),
        ("check --seeds 2^63", ["check", "icl", "--seeds", str(2**63), *n]),
        ("seeds --candidates 1e8", ["seeds", "icl", "--candidates", "100000000", *n]),
        ("bench --models 1e8", ["bench", "icl", "--models", "100000000"]),
        ("bench --naive-models 0", ["bench", "icl", "--naive-models", "0"]),
        ("retrieval steps/B", ["check", "retrieval", "--set", "steps=10000000", "--set", "B=1048576", "--set", "encoder=hash", *n]),
        ("--set 100k items", ["sweep", "icl", "--dry-run", "--set", "train_task_offsets=[" + ",".join(["1"] * 100000) + "]", *n]),
        ("--set nested anchors", ["sweep", "icl", "--dry-run", "--set",
                                  "train_task_offsets=[&a [1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b], [*c,*c,*c,*c,*c,*c,*c,*c]]", *n]),
        ("repeated --set", ["sweep", "icl", "--dry-run", "--set", "seed=1", "--set", "seed=2", *n]),
        ("non-ASCII --grid", ["sweep", "icl", "--dry-run", "--grid", "seed=\u0661..\u0663", *n]),
        ("duplicate --grid values", ["sweep", "icl", "--dry-run", "--grid", "lr=1,1", *n]),
        ("relate --tolerance nan", ["relate", "a", "b", "--base", "c", "--tolerance", "nan"]),
        ("relate --tolerance -1", ["relate", "a", "b", "--base", "c", "--tolerance", "-1"]),
        ("extract-lora --include (", ["extract-lora", "a", str(tmp / "lo"), "--base", "c", "--include", "("]),
    ]
    rbase, rsame, ra = tiny_model(tmp / "r24base"), tiny_model(tmp / "r24same"), tiny_model(tmp / "r24a", 0.1, 1)
    rnan = tiny_model(tmp / "r24nan", 0.1, 2)
    save_file({"w": torch.full((64, 64), float("nan")), "b": torch.zeros(64)}, str(rnan / "model.safetensors"))
    cases += [
        ("relate zero task vector", ["relate", str(rsame), str(ra), "--base", str(rbase)]),
        ("relate NaN weights", ["relate", str(ra), str(rnan), "--base", str(rbase)]),
        ("relate NaN base", ["relate", str(ra), str(ra), "--base", str(rnan)]),
    ]
    for study in study_names():
        cls = get_study(study).config_cls
        for name, info in cls.model_fields.items():
            if info.annotation in (int, float):
                cases.append((f"{study} {name}=true", ["sweep", study, "--dry-run", "--set", f"{name}=true", *n]))
            elif "tuple" in str(info.annotation):
                for v in ("[.nan]", "[.inf]", "[-1]", "[]"):
                    cases.append((f"{study} {name}={v}", ["sweep", study, "--dry-run", "--set", f"{name}={v}", *n]))
    for label, body in [("dup yaml key", "merge_method: linear\nmerge_method: ties\nmodels: [{model: a}]\n"),
                        ("weight true", "merge_method: linear\nmodels: [{model: a, parameters: {weight: true}}]\n"),
                        ("normalize by 0", "merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}, {model: b, parameters: {weight: -1}}]\n"),
                        ("ties density 0", "merge_method: ties\nbase_model: a\nparameters: {density: 0}\nmodels: [{model: b}]\n"),
                        ("sce select_topk 0", "merge_method: sce\nbase_model: a\nparameters: {select_topk: 0}\nmodels: [{model: b}]\n"),
                        ("lwptv ratio+threshold", "merge_method: task_arithmetic\nbase_model: a\nparameters: {lwptv: {ratio: 0.2, threshold: 0.1}}\nmodels: [{model: b}]\n")]:
        y = _write(tmp / f"i24-{label.replace(' ', '_')}.yaml", body)
        cases.append((f"merge {label}", ["merge", str(y), str(tmp / "mo"), "--no-progress"]))
    return cases


def fault_runs(n: int, tmp: Path) -> dict:
    """Issue 24's fault scenarios (tests/core/fault_kit.py), each n times: kill -9 while one of two concurrent
    sweeps trains, SIGSTOP of a lease owner, a disk that fills mid-sweep (needs root for the tmpfs)."""
    from tests.core import fault_kit as kit

    def tally(runs: list[dict]) -> dict:
        keys = ("lost", "duplicated", "foreign", "without_weights", "leases_left")
        out = {k: sum(r[k] for r in runs) for k in keys}
        out["integrity_failures"] = sum(r["integrity"] != "ok" for r in runs)
        return out

    def fresh(name: str) -> Path:
        (tmp / name).mkdir()
        return tmp / name

    kills = [kit.kill_during_training(fresh(f"kill{i}"), seed=i) for i in range(n)]
    stops = [kit.sigstop_lease_owner(fresh(f"stop{i}")) for i in range(n)]
    report = {
        "kill_mid_training": {"kills": len(kills), "landed_in_training": sum(r["landed_in_training"] for r in kills),
                              "failed_exits": sum(c != 0 for r in kills for c in r["exit_codes"]), **tally(kills)},
        "sigstop_owner": {"stops": len(stops), "lease_seconds": stops[0]["lease_seconds"] if stops else None,
                          "took_over_after_s": [r["b_took_over_after_s"] for r in stops],
                          "failed_exits": sum(c != 0 for r in stops for c in r["exit_codes"]), **tally(stops)},
    }
    fulls = []
    for i in range(n):
        disk = tmp / f"disk{i}"
        if os.geteuid() != 0 or not kit.mount_tmpfs(disk, "512k"):
            break
        try:
            fulls.append(kit.disk_full(disk))
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    report["disk_full"] = {"runs": len(fulls), "clean_one_line_naming_store": sum(
        r["exit_code"] == 2 and not r["traceback"] and len(r["error_lines"]) == 1 and "full.sqlite" in r["error_lines"][0]
        for r in fulls), "intact_when_full": sum(r["intact_when_full"] for r in fulls),
        "cells_kept_when_full": [r["kept_when_full"] for r in fulls],
        "resumed_ok": sum(r["resume_exit_code"] == 0 for r in fulls), **tally(fulls)} if fulls else "skipped (needs root)"
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=26)
    ap.add_argument("--merge-kills", type=int, default=8)
    ap.add_argument("--no-inputs", action="store_true", help="only the kills")
    ap.add_argument("--issue24", action="store_true", help="only issue 24's classes (clean/internal/unclean/accepted/hang)")
    ap.add_argument("--faults", type=int, default=0, metavar="N",
                    help="only issue 24's fault scenarios, each N times (about 35 s per round on 2 cores)")
    a = ap.parse_args()
    if a.faults:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps({"faults": fault_runs(a.faults, Path(d))}, indent=1))
        return
    if a.issue24:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            totals = {"clean": 0, "internal": 0, "unclean": 0, "accepted": 0, "hang": 0}
            bad: dict[str, list[str]] = {k: [] for k in totals}
            cases = issue24_cases(tmp)
            for label, args in cases:
                kind = classify5(args, tmp)
                totals[kind] += 1
                if kind != "clean":
                    bad[kind].append(label)
            print(json.dumps({"issue24_inputs": len(cases), **totals, "not_clean": {k: v for k, v in bad.items() if v}}, indent=1))
        return
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
