"""The theorylab command line: list, run, check, report (and the commands cli.sweep and hf.cli register)."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from theorylab.core.claims import ClaimContext, exit_code, run_claims, select_claims
from theorylab.core.config import ConfigError, parse_assignments
from theorylab.core.ensemble import resolve_device
from theorylab.core.progress import Bars
from theorylab.core.report import machine_description, verdict_table, write_report
from theorylab.core.store import DEFAULT_STORE, Store
from theorylab.core.study import get_study, study_names

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Runnable theory of efficient learning in shallow Transformers.")
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

SizeOpt = Annotated[str, typer.Option("--size", help="quick (seconds-minutes on CPU) or full (paper scale)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto")]
SeedsOpt = Annotated[Optional[int], typer.Option("--seeds", help="independent seeds (default: 5 quick, 10 full)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a config field: key=value (repeatable)")]
StoreOpt = Annotated[Path, typer.Option("--store", help="results store (SQLite file)")]


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _prepare(study_name: str, size: str, seeds: int | None, device: str, sets: list[str] | None, store: Path,
             claim_ids: list[str] | None = None):
    """Validates every input before anything trains."""
    try:
        study = get_study(study_name)
        overrides = parse_assignments(sets)
        study.config(size, **overrides)
        n = study.default_seeds.get(size, 5) if seeds is None else seeds
        if n < 1:
            raise ConfigError(f"--seeds must be >= 1 (got {n})")
        select_claims(study, claim_ids)
        dev = resolve_device(device)
    except (ConfigError, KeyError, ValueError) as e:
        fail(str(e).strip("'\""))
    return study, overrides, n, dev, Store(store)


def _run_study(study_name, size, seeds, device, sets, store, claim_ids=None, progress=True):
    study, overrides, n, dev, st = _prepare(study_name, size, seeds, device, sets, store, claim_ids)
    with Bars(enabled=progress) as bars:
        ctx = ClaimContext(study, size, n, dev, st, overrides, bars)
        results = run_claims(ctx, claim_ids, seeds_given=seeds is not None)
    return study, n, dev, [r.row(study.name) for r in results]


@app.command("list")
def list_studies() -> None:
    """Studies and their claims."""
    for name in study_names():
        s = get_study(name)
        out.print(f"[bold]{name}[/]: {s.title} ({s.paper})")
        for c in s.claims:
            out.print(f"  {c.id:<24} {c.kind:<10} {c.theorem:<18} {c.statement}")


@app.command()
def run(study: str, size: SizeOpt = "quick", device: DeviceOpt = "auto", seeds: SeedsOpt = None,
        set: SetOpt = None, store: StoreOpt = DEFAULT_STORE,
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="results folder")] = None) -> None:
    """Train the study's models, check every claim, write figures and a report."""
    s, n, dev, rows = _run_study(study, size, seeds, device, set, store)
    out.print(verdict_table(rows, f"{s.name} ({size}, {n} seeds, {dev})"))
    folder = out_dir or Path(store).parent / s.name / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = write_report(s, rows, folder, {"size": size, "seeds": n, "machine": machine_description(str(dev))})
    out.print(f"report: [bold]{path}[/]  (figures beside it)")


@app.command()
def check(study: Annotated[Optional[str], typer.Argument(help="a study; all studies if omitted")] = None,
          size: SizeOpt = "quick", device: DeviceOpt = "auto", seeds: SeedsOpt = None, set: SetOpt = None,
          store: StoreOpt = DEFAULT_STORE,
          claim: Annotated[Optional[list[str]], typer.Option("--claim", help="only these claim ids")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print a JSON array of claim results instead of a table")] = False) -> None:
    """Run claims only and print the verdict table.

    Exit code 0: every claim holds or agrees; 1: some claim fails or differs; 2: bad input;
    3: none fails, but some are inconclusive or ERROR."""
    names = [study] if study else study_names()
    if claim and not study:
        fail("--claim needs a study: theorylab check STUDY --claim ID")
    for name in names:  # every study's input is checked before any trains
        _prepare(name, size, seeds, device, set, store, claim)
    rows = []
    for name in names:
        rows += _run_study(name, size, seeds, device, set, store, claim, progress=not as_json)[3]
    if as_json:
        print(json.dumps(rows, default=str))
    else:
        out.print(verdict_table(rows, f"claims ({size})"))
    raise typer.Exit(exit_code([r["verdict"] for r in rows]))


@app.command()
def report(study: str, store: StoreOpt = DEFAULT_STORE, size: SizeOpt = "quick",
           out_dir: Annotated[Optional[Path], typer.Option("--out", help="results folder")] = None) -> None:
    """Redraw figures and the report from the claims stored by the latest run (no training)."""
    try:
        s = get_study(study)
    except KeyError as e:
        fail(str(e).strip("'\""))
    stored = Store(store).latest_claims(s.name, size)
    if not stored:
        fail(f"no stored {size} claims for '{study}' in {store}; run `theorylab run {study} --size {size}` first")
    by_id = {c.id: c for c in s.claims}
    rows = []
    for r in stored:
        contract = r["numbers"].pop("_contract", {})
        c = by_id.get(r["claim"])
        rows.append({**contract, "study": s.name, "claim": r["claim"], "theorem": c.theorem if c else "",
                     "kind": c.kind if c else contract.get("kind", ""), "statement": c.statement if c else "",
                     "verdict": r["verdict"], "summary": r["summary"], "seconds": r["seconds"],
                     "numbers": r["numbers"], "figures": r["figures"]})
    folder = out_dir or Path(store).parent / s.name / ("report-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    path = write_report(s, rows, folder, {"size": size, "seeds": stored[0]["seeds"], "machine": "as stored"})
    out.print(verdict_table(rows, f"{s.name} ({size}, stored)"))
    out.print(f"report: [bold]{path}[/]")


@app.command()
def seeds(study: str, size: SizeOpt = "quick", device: DeviceOpt = "auto", set: SetOpt = None,
          store: StoreOpt = DEFAULT_STORE,
          candidates: Annotated[str, typer.Option("--candidates", help="seed counts to try, e.g. 3,5,8")] = "3,5,8",
          claim: Annotated[Optional[list[str]], typer.Option("--claim", help="only these claim ids")] = None) -> None:
    """The smallest seed count at which three disjoint seed sets give every claim the same verdict."""
    from theorylab.core.seeds import seed_agreement

    try:
        counts = [int(x) for x in candidates.split(",") if x.strip()]
        if not counts or min(counts) < 1:
            raise ConfigError(f"--candidates must be positive integers like 3,5,8 (got {candidates!r})")
    except ValueError:
        fail(f"--candidates must be positive integers like 3,5,8 (got {candidates!r})")
    s, overrides, _, dev, st = _prepare(study, size, None, device, set, store, claim)
    with Bars(enabled=True) as bars:
        res = seed_agreement(s, ClaimContext(s, size, 1, dev, st, overrides, bars), counts, claim)
    t = Table(title=f"{s.name}: verdicts of three disjoint seed sets ({size})")
    for col in ("claim", *[f"n={n}" for n in counts], "default seeds"):
        t.add_column(col)
    for cid, rec in res.items():
        t.add_row(cid, *[" / ".join(rec["verdicts"].get(n, [])) for n in counts],
                  str(rec["seeds"]) if rec["seeds"] else f"unsettled at {max(counts)}")
    out.print(t)


def _register_extensions() -> None:
    """Commands owned by other modules (sweeps, checkpoint merging) plug in here."""
    import importlib

    for module in ("theorylab.cli.sweep", "theorylab.hf.cli", "theorylab.studies.retrieval.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(app)


_register_extensions()


def main() -> None:
    try:
        app()
    except ConfigError as e:
        err.print(f"[bold red]error:[/] {e}")
        sys.exit(2)


if __name__ == "__main__":
    main()
