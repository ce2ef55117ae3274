"""Verdict tables (terminal) and study reports (Markdown + PNG figures)."""
from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from rich import box  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from theorylab.core.outputs import write_atomically  # noqa: E402
from theorylab.core.plots import curve_panels, training_curves  # noqa: E402
from theorylab.core.study import Study  # noqa: E402
from theorylab.core.verdict import fmt  # noqa: E402


def machine_description(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import os

    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


TABLE_WIDTH = 100  # the verdict table fits a 100-column terminal; the long measured text goes to report.md


def _compact(x: float) -> str:
    """3 decimals, or 3 significant digits with a short exponent (4.65e-5) when very small or large."""
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        mantissa, exp = f"{x:.2e}".split("e")
        return f"{mantissa}e{int(exp)}"
    return fmt(x, 3)


def key_number(row: dict) -> str:
    """The claim's key number over seeds, short: mean [95% CI lo, hi] (the report names what it is)."""
    iv = row.get("interval") or {}
    if not iv.get("n"):
        return "-"
    mean = _compact(iv["mean"])
    return mean if iv.get("lo") is None else f"{mean} [{_compact(iv['lo'])}, {_compact(iv['hi'])}]"


def seeds_passing(row: dict) -> str:
    """'passed/run' seeds of a claim ('-' for rows stored before the counts were kept)."""
    run = row.get("seeds")
    if row.get("seeds_passed") is None or not isinstance(run, int):
        return "-"
    return f"{row['seeds_passed']}/{run}"


def seed_counts(rows: list[dict], unknown: str = "seeds as stored") -> str:
    """What ran, for a table title: 'N seeds' when every claim ran N, else the range and 'per claim' (a claim
    with its own default seed count runs it when --seeds is not given)."""
    counts = sorted({r["seeds"] for r in rows if isinstance(r.get("seeds"), int)})
    if not counts:
        return unknown
    if len(counts) == 1:
        return f"{counts[0]} seed{'s' * (counts[0] != 1)}"
    return f"{counts[0]}-{counts[-1]} seeds per claim"


def seed_note(rows: list[dict]) -> str:
    """'' when every claim ran the same seed count; otherwise which claims ran which count, e.g.
    'seeds run: 3 by 8 claims; 5 by prop2_neurons (a claim's own default)'."""
    by_count: dict[int, list[str]] = {}
    for r in rows:
        if isinstance(r.get("seeds"), int):
            by_count.setdefault(r["seeds"], []).append(r["claim"])
    if len(by_count) < 2:
        return ""
    common = max(by_count, key=lambda n: len(by_count[n]))
    parts = [f"{common} by {len(by_count[common])} claims"]
    parts += [f"{n} by {', '.join(ids)}" for n, ids in sorted(by_count.items()) if n != common]
    return "seeds run: " + "; ".join(parts) + " (a claim with its own default seed count runs it unless --seeds is given)"


def verdict_table(rows: list[dict], title: str = "claims") -> Table:
    """rows: claim rows (ClaimResult.row or stored). One short line per claim, at most TABLE_WIDTH columns:
    claim, kind, verdict, seeds passing, the key number with its interval, seconds. Rows of several studies
    are grouped under a line naming each study."""
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_lines=False,
              caption="what each key number is, and the measured text: report.md (or check --json)")
    longest = max((len(r["claim"]) for r in rows), default=5)
    t.add_column("claim", no_wrap=True, min_width=longest)  # ids are never folded
    t.add_column("kind", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    t.add_column("seeds ok", justify="right", no_wrap=True)
    t.add_column("key number [95% CI]", overflow="fold", max_width=28)
    t.add_column("s", justify="right", no_wrap=True)
    several = len({r["study"] for r in rows}) > 1
    study = None
    for r in rows:
        if several and r["study"] != study:
            study = r["study"]
            t.add_row(Text(study, style="bold"))
        t.add_row(r["claim"], r.get("kind", ""), Text(r["verdict"], style=VERDICT_STYLE.get(r["verdict"], "bold red")),
                  seeds_passing(r), key_number(r), f"{r['seconds']:.1f}")
    return t


VERDICT_STYLE = {"holds": "green", "agrees": "green", "fails": "bold red", "differs": "bold magenta",
                 "inconclusive": "yellow", "ERROR": "bold red"}
CONTRACT = ("Verdicts: each claim's test runs on every seed; `holds` (figure claims: `agrees`) when at least 80% of "
            "the seeds pass, `fails` (`differs`) when at most 20% pass, `inconclusive` otherwise or when a theorem "
            "check's control passes the same test. Diverged seeds count as failing. `theorem` claims test a theorem "
            "in its own direction; `mechanism` claims what training does; `figure` claims a paper figure's shape "
            "(differs = our experiment differs from the figure, not that a theorem fails).")


def write_report(study: Study, claim_rows: list[dict], out_dir: Path, meta: dict,
                 curves: list[dict] | None = None) -> Path:
    """Draws every figure the claims returned and writes report.md; returns the report's path.
    claim_rows: dicts with claim, theorem, statement, verdict, summary, numbers, figures, seconds. curves: the
    main arm's per-seed training curves (cell records), drawn as training_curves.png for every study.
    Every file is written atomically; a failed write (a full disk) names the file, and a folder this call
    created is removed again, so nothing half-written is left."""
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _write_report(study, claim_rows, out_dir, meta, curves or [])
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _write_report(study: Study, claim_rows: list[dict], out_dir: Path, meta: dict, curves: list[dict]) -> Path:
    figure_files: list[tuple[str, str]] = []
    if curves and curve_panels(curves)[1]:
        path = out_dir / "training_curves.png"
        title = f"{study.name}: training curves of the main arm ({len(curves)} seeds)"
        write_atomically(path, lambda tmp: training_curves(curves, tmp, title))
        figure_files.append(("training_curves", path.name))
    for r in claim_rows:
        for name, data in (r.get("figures") or {}).items():
            plot = study.plots.get(name)
            if plot is None:
                continue
            path = out_dir / f"{name}.png"
            write_atomically(path, lambda tmp, plot=plot, data=data: plot(data, tmp))
            figure_files.append((name, path.name))
    ran = seed_counts(claim_rows, unknown=f"{meta.get('seeds')} seeds")
    lines = [f"# {study.title}", "", f"Paper: {study.paper}", "",
             f"Generated {dt.datetime.now().isoformat(timespec='seconds')} by theorylab "
             f"(size `{meta.get('size')}`, {ran}, {meta.get('machine')}).", "",
             *([seed_note(claim_rows) + ".", ""] if seed_note(claim_rows) else []),
             CONTRACT, "", "| claim | kind | theorem | verdict | measured | seconds |", "|---|---|---|---|---|---|"]
    for r in claim_rows:
        lines.append(f"| {r['claim']} | {r.get('kind', '')} | {r['theorem']} | **{r['verdict']}** | {r['summary']} | "
                     f"{r['seconds']:.1f} |")
    tables = [(name, md) for r in claim_rows for name, md in ((r.get("numbers") or {}).get("tables") or {}).items()]
    if tables:  # a claim may return Markdown tables as numbers["tables"] = {title: markdown}
        lines += ["", "## Tables", ""]
        for name, md in tables:
            lines += [f"### {name}", "", md, ""]
    lines += ["", "## Claims", ""]
    for r in claim_rows:
        lines += [f"### {r['claim']} ({r['theorem']}): {r['verdict']}", "", r.get("statement", ""), "",
                  f"Measured: {r['summary']}", "", "```json",
                  json.dumps(r.get("numbers", {}), indent=1, default=str)[:6000], "```", ""]
    if figure_files:
        lines += ["## Figures", ""]
        lines += [f"![{name}]({fname})" for name, fname in figure_files]
    path = out_dir / "report.md"
    write_atomically(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return path
