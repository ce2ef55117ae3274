"""Compare two sets of `theorylab check STUDY --json` outputs (one JSON file per study in each folder): a
markdown table of every claim's kind, verdict, seeds passing and key number, before and after.

    python benchmarks/compare_checks.py BEFORE_DIR AFTER_DIR > table.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def load(folder: Path) -> dict[tuple[str, str], dict]:
    rows = {}
    for f in sorted(folder.glob("*.json")):
        try:
            data = json.loads(f.read_text() or "[]")
        except json.JSONDecodeError:
            continue
        for r in data:
            rows[(r["study"], r["claim"])] = r
    return rows


def key(r: dict | None) -> str:
    if r is None:
        return "-"
    iv = r.get("interval") or {}
    if iv.get("mean") is None:
        return (r.get("not_applicable") and "n/a") or "-"
    ci = f" [{iv['lo']:.3g}, {iv['hi']:.3g}]" if iv.get("lo") is not None else ""
    return f"{iv['mean']:.3g}{ci}"


def verdict(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{r['verdict']} {r['seeds_passed']}/{r['seeds']}"


def control(r: dict | None) -> str:
    c = (r or {}).get("control")
    return f"{c['passes']}/{c['seeds']}" if c else "-"


def main(before: Path, after: Path) -> None:
    b, a = load(before), load(after)
    print("| study | claim | kind (before -> after) | verdict before | verdict after | key after | control passes (before / after) |")
    print("|---|---|---|---|---|---|---|")
    for k in sorted(set(b) | set(a)):
        rb, ra = b.get(k), a.get(k)
        kinds = " -> ".join(dict.fromkeys(x["kind"] for x in (rb, ra) if x))
        print(f"| {k[0]} | {k[1]} | {kinds} | {verdict(rb)} | {verdict(ra)} | {key(ra)} | {control(rb)} / {control(ra)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
