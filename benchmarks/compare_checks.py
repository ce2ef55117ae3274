"""Compare two sets of `theorylab check STUDY --json` outputs (one JSON file per study in each folder): a
markdown table of every claim's kind, verdict, seeds passing and key number, before and after.

    python benchmarks/compare_checks.py BEFORE_DIR AFTER_DIR > table.md
    python benchmarks/compare_checks.py --only AFTER_DIR > table.md      # one set: kind, verdict, key, control
    python benchmarks/compare_checks.py --md-before docs/claims.md AFTER_DIR   # against a table printed by --only

Claims renamed between the two sets are paired by RENAMED (old id -> new id).
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


# claims whose id changed with their kind (issue 22): the same measurement, re-kinded as a figure
RENAMED = {("graph", "thm_labels"): "fig_labels", ("graph", "thm_iterations"): "fig_iterations",
           ("group_imbalance", "thm_covariance"): "fig_covariance", ("group_imbalance", "thm_means"): "fig_means",
           ("group_imbalance", "thm_minority"): "fig_minority", ("mamba", "thm_signal"): "fig_signal",
           ("mamba", "thm_locality"): "fig_locality", ("mamba", "thm_noise"): "fig_noise"}


def only(after: Path) -> None:
    print("| study | claim | kind | verdict | key number (mean [95% CI]) | control passes |")
    print("|---|---|---|---|---|---|")
    for (study, claim), r in sorted(load(after).items()):
        v = f"not applicable" if r.get("not_applicable") else verdict(r)
        print(f"| {study} | {claim} | {r['kind']} | {v} | {key(r)} | {control(r)} |")


def main(before: Path, after: Path) -> None:
    b = {(k[0], RENAMED.get(k, k[1])): v for k, v in load(before).items()}
    a = load(after)
    print("| study | claim | kind (before -> after) | verdict before | verdict after | key after | control passes (before / after) |")
    print("|---|---|---|---|---|---|---|")
    for k in sorted(set(b) | set(a)):
        rb, ra = b.get(k), a.get(k)
        kinds = " -> ".join(dict.fromkeys(x["kind"] for x in (rb, ra) if x))
        print(f"| {k[0]} | {k[1]} | {kinds} | {verdict(rb)} | {verdict(ra)} | {key(ra)} | {control(rb)} / {control(ra)} |")


def from_markdown(path: Path) -> dict[tuple[str, str], dict]:
    """Rows of the first table `--only` or `--md-before` printed into a Markdown file (of a `--md-before` table, the
    "now" side): {(study, claim): {kind, verdict, key, control}}."""
    rows, in_table, now_side = {}, False, False
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| study | claim | kind | verdict"):
            in_table, now_side = True, "before -> now" in line
        elif in_table and not line.startswith("|"):
            break
        elif in_table and len(cells) == 6 and cells[0] != "---":
            values = cells[2:]
            if now_side:
                values = [values[0]] + [v.split(" -> ")[-1].replace("**changed**", "").strip() for v in values[1:]]
            rows[(cells[0], cells[1])] = dict(zip(("kind", "verdict", "key", "control"), values))
    return rows


def against_markdown(md: Path, after: Path) -> None:
    b, a = from_markdown(md), load(after)
    print("| study | claim | kind | verdict (before -> now) | key number (before -> now) | control (before -> now) |")
    print("|---|---|---|---|---|---|")
    for k in sorted(set(b) | set(a)):
        rb, ra = b.get(k, {}), a.get(k)
        now_v = "not applicable" if ra and ra.get("not_applicable") else verdict(ra)
        same = "" if (rb.get("verdict"), rb.get("key")) == (now_v, key(ra)) else " **changed**"
        print(f"| {k[0]} | {k[1]} | {(ra or rb).get('kind', '-')} | {rb.get('verdict', '-')} -> {now_v}{same} | "
              f"{rb.get('key', '-')} -> {key(ra)} | {rb.get('control', '-')} -> {control(ra)} |")


if __name__ == "__main__":
    if sys.argv[1] == "--only":
        only(Path(sys.argv[2]))
    elif sys.argv[1] == "--md-before":
        against_markdown(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
