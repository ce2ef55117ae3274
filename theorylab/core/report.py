"""Verdict tables (terminal) and study reports (Markdown + PNG figures)."""
from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from theorylab.core.outputs import write_atomically  # noqa: E402
from theorylab.core.plots import curve_panels, training_curves  # noqa: E402
from theorylab.core.study import Study  # noqa: E402


def machine_description(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import os

    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def verdict_table(rows: list[dict], title: str = "claims") -> Table:
    """rows: dicts with study, claim, theorem, verdict, summary, seconds."""
    t = Table(title=title, show_lines=False)
    for col in ("study", "claim", "kind", "theorem", "verdict", "measured", "s"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["study"], r["claim"], r.get("kind", ""), r["theorem"], f"[{VERDICT_STYLE.get(r['verdict'], 'bold red')}]"
                  f"{r['verdict']}[/]", Text(str(r["summary"])), f"{r['seconds']:.1f}")  # summaries are not markup
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
    lines = [f"# {study.title}", "", f"Paper: {study.paper}", "",
             f"Generated {dt.datetime.now().isoformat(timespec='seconds')} by theorylab "
             f"(size `{meta.get('size')}`, {meta.get('seeds')} seeds, {meta.get('machine')}).", "",
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
