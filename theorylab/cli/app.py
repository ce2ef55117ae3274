"""The theorylab command line: list, run, check, report (and the commands cli.sweep and hf.cli register)."""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from theorylab.core.claims import ClaimContext, exit_code, run_claims, select_claims
from theorylab.core.config import ConfigError, parse_assignments
from theorylab.core.ensemble import resolve_device
from theorylab.core.progress import Bars
from theorylab.core.report import TABLE_WIDTH, machine_description, seed_counts, seed_note, verdict_table, write_report
from theorylab.core.store import DEFAULT_STORE, Store, StoreError
from theorylab.hf.config import ConfigError as HFConfigError
from theorylab.core.study import get_study, study_names

USER_ERRORS = (ConfigError, StoreError, HFConfigError, OSError, MemoryError)


def _typers_click():
    """The click that typer raises its exceptions from: typer >= 0.2x bundles a private copy (typer._click) that
    the click package's classes never match; older typer uses the click package itself. Resolved from typer's
    own core module so the handler below matches whichever this typer is, without importing click."""
    import importlib

    for name in ("_click", "click"):
        mod = getattr(typer.core, name, None)
        if mod is not None and hasattr(mod, "exceptions"):
            return mod
    return importlib.import_module("click")


_click = _typers_click()
USAGE_ERRORS = (_click.exceptions.ClickException,)  # UsageError, BadParameter, MissingParameter, NoSuchOption ...
# exits typer/click handle themselves; no_args_is_help's "error" is the help text, shown as such
PASS_THROUGH = tuple({getattr(_click.exceptions, name, typer.Exit) for name in ("Exit", "Abort", "NoArgsIsHelpError")}
                     | {typer.Exit, typer.Abort})
# what a Ctrl-C leaves behind, per command (every write of theorylab is one transaction or one atomic rename)
KEPT_ON_INTERRUPT = {
    "sweep": "cells finished before it are in the store; the same command resumes from there",
    "map": "cells finished before it are in the store; the same command resumes from there",
    "run": "claims and cells finished before it are in the store; no report was written",
    "check": "claims and cells finished before it are in the store",
    "seeds": "cells finished before it are in the store",
    "merge": "no output folder was written (outputs appear only when complete)",
    "extract-lora": "no adapter folder was written (outputs appear only when complete)",
    "export": "no output file was written (outputs appear only when complete)",
    "report": "no report folder was written",
    "atlas": "no atlas folder was written (it appears only when complete)",
}


def _usage_exit(e: BaseException) -> None:
    """A click/typer usage error (bad option value, missing argument, unknown option): one line, exit 2."""
    msg = e.format_message() if hasattr(e, "format_message") else str(e)
    ctx = getattr(e, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and isinstance(e, _click.exceptions.UsageError) else ""
    err.print(Text.assemble(("error:", "bold red"), " ", " ".join(f"{msg}{hint}".split())), soft_wrap=True)
    raise typer.Exit(2)


class OneLineErrors(TyperGroup):
    """The one error path of every command: a user-facing failure (usage errors included) is one line
    `error: ...` and exit code 2, with no traceback (`theorylab --debug ...` or THEORYLAB_DEBUG=1 shows it);
    Ctrl-C says what was kept and exits 130; any other exception is an internal error, one line, exit code 1."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except PASS_THROUGH:
            raise
        except USAGE_ERRORS as e:  # the group's own options: `theorylab --bogus`
            _usage_exit(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PASS_THROUGH:
            raise
        except USAGE_ERRORS as e:
            _usage_exit(e)
        except KeyboardInterrupt:
            kept = KEPT_ON_INTERRUPT.get(ctx.invoked_subcommand or "", "nothing was written")
            err.print(Text.assemble(("interrupted:", "bold yellow"), " ", kept), soft_wrap=True)
            raise typer.Exit(130) from None
        except Exception as e:
            if ctx.params.get("debug") or os.environ.get("THEORYLAB_DEBUG"):
                raise
            user = isinstance(e, USER_ERRORS)
            err.print(Text.assemble(("error:", "bold red"), " ", one_line(e, internal=not user)), soft_wrap=True)
            raise typer.Exit(2 if user else 1) from None


def one_line(e: BaseException, internal: bool = False) -> str:
    if isinstance(e, MemoryError):
        return "out of memory: the run asks for more than this machine has; lower the sizes (see the cost estimate)"
    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
        msg = f"{e.filename}: {e.strerror or msg}"
    if internal:
        msg = f"internal error ({type(e).__name__}: {msg}); rerun with --debug for the traceback, and please report it"
    return msg


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Runnable theory of efficient learning in shallow Transformers.")


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="show the Python traceback of an error")] = False) -> None:
    """Runnable theory of efficient learning in shallow Transformers."""
    from theorylab.core.fast import compile_mode

    try:
        compile_mode()  # checked before any work starts
    except ValueError as e:
        fail(str(e))
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

SizeOpt = Annotated[str, typer.Option("--size", help="quick (seconds-minutes on CPU) or full (paper scale)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto")]
SeedsOpt = Annotated[Optional[int], typer.Option("--seeds", help="independent seeds (default: 5 quick, 10 full)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a config field: key=value (repeatable)")]
StoreOpt = Annotated[Path, typer.Option("--store", help="results store (SQLite file)")]
YesOpt = Annotated[bool, typer.Option("--yes", help="run even when the cost estimate is above the limits")]


def message(e: BaseException) -> str:
    """An exception's text for `error:` lines; a KeyError's str() is its quoted repr, the others are left as they are."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def fail(message: str, code: int = 2) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", " ".join(message.split())), soft_wrap=True)
    raise typer.Exit(code)


def _prepare(study_name: str, size: str, seeds: int | None, device: str, sets: list[str] | None, store: Path,
             claim_ids: list[str] | None = None, yes: bool = False, source: str = "run", say: bool = True):
    """Validates (and costs) every input before anything trains. source: the command, stored with each row;
    say: print the claim run's time estimate (when it is long enough to mention)."""
    from theorylab.core.backends import memory_budget
    from theorylab.core.check_cost import SAY_ABOVE_SECONDS, claim_run_cost
    from theorylab.core.cost import MAX_CELLS, estimate

    try:
        study = get_study(study_name)
        overrides = parse_assignments(sets)
        n = study.default_seeds.get(size, 5) if seeds is None else seeds
        if not 1 <= n <= MAX_CELLS:  # before any config is built: each seed is one config, one model
            raise ConfigError(f"--seeds must be in [1, {MAX_CELLS:,}] (got {n:,})")
        cfgs = study.seed_configs(size, n, **overrides)
        select_claims(study, claim_ids)
        dev = resolve_device(device)
        history = Store(store, create=False) if Path(store).exists() else None
        whole = claim_run_cost(study, size, seeds, claim_ids, overrides, str(dev), history)  # instant: first
        if whole is not None:
            whole.guard(yes)
        cost = estimate(study, cfgs, len(cfgs), memory_budget(dev), history, f"{study.name} claims, per trained group",
                        str(dev))
        if study.needs is not None:
            study.needs(cfgs[0])
        cost.guard(yes)
    except (ConfigError, KeyError, ValueError) as e:
        fail(message(e))
    if say and whole is not None and whole.seconds >= SAY_ABOVE_SECONDS:
        err.print(whole.describe(), soft_wrap=True, highlight=False)
    return study, overrides, n, dev, Store(store, source=source)


def _run_study(study_name, size, seeds, device, sets, store, claim_ids=None, progress=True, yes=False, source="run"):
    study, overrides, n, dev, st = _prepare(study_name, size, seeds, device, sets, store, claim_ids, yes, source)
    with Bars(enabled=progress) as bars:
        ctx = ClaimContext(study, size, n, dev, st, overrides, bars)
        results = run_claims(ctx, claim_ids, seeds_given=seeds is not None)
    return study, n, dev, [r.row(study.name) for r in results], main_arm_curves(ctx)


def main_arm_curves(ctx: ClaimContext) -> list[dict]:
    """The training curves of the main arm's cells, where a claim trained them (nothing is trained for a figure)."""
    if ctx.store is None:
        return []
    cells = ctx.store.get_cells([c.hash for c in ctx.configs()])
    return [cells[c.hash].curves for c in ctx.configs() if c.hash in cells and cells[c.hash].status == "done"]


def _print_verdicts(rows: list[dict], title: str) -> None:
    """The verdict table (100 columns at most), and which claims ran which seed count when they differ."""
    out.print(verdict_table(rows, title))
    note = seed_note(rows)
    if note:
        out.print(note, width=TABLE_WIDTH)


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
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="results folder")] = None, yes: YesOpt = False) -> None:
    """Train the study's models, check every claim, write figures and a report."""
    from theorylab.core.outputs import check_output_folder

    if out_dir is not None:
        try:  # before anything trains
            check_output_folder(out_dir)
        except ConfigError as e:
            fail(str(e))
    s, n, dev, rows, curves = _run_study(study, size, seeds, device, set, store, yes=yes)
    _print_verdicts(rows, f"{s.name} ({size}, {seed_counts(rows)}, {dev})")
    folder = out_dir or Path(store).parent / s.name / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = write_report(s, rows, folder, {"size": size, "machine": machine_description(str(dev))}, curves)
    out.print(f"report: [bold]{path}[/]  (figures beside it)")


@app.command()
def check(study: Annotated[Optional[str], typer.Argument(help="a study; all studies if omitted")] = None,
          size: SizeOpt = "quick", device: DeviceOpt = "auto", seeds: SeedsOpt = None, set: SetOpt = None,
          store: StoreOpt = DEFAULT_STORE,
          claim: Annotated[Optional[list[str]], typer.Option("--claim", help="only these claim ids")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print a JSON array of claim results instead of a table")] = False,
          yes: YesOpt = False) -> None:
    """Run claims only and print the verdict table.

    Exit code 0: every claim holds or agrees; 1: some claim fails or differs; 2: bad input;
    3: none fails, but some are inconclusive or ERROR."""
    names = [study] if study else study_names()
    if claim and not study:
        fail("--claim needs a study: theorylab check STUDY --claim ID")
    for name in names:  # every study's input is checked before any trains
        _prepare(name, size, seeds, device, set, store, claim, yes, source="check", say=False)
    rows = []
    for name in names:
        rows += _run_study(name, size, seeds, device, set, store, claim, progress=not as_json, yes=yes,
                           source="check")[3]
    if as_json:
        print(json.dumps(rows, default=str))
    else:
        _print_verdicts(rows, f"claims ({size}, {seed_counts(rows)})")
    raise typer.Exit(exit_code([r["verdict"] for r in rows]))


@app.command()
def report(study: str, store: StoreOpt = DEFAULT_STORE, size: SizeOpt = "quick",
           out_dir: Annotated[Optional[Path], typer.Option("--out", help="results folder")] = None) -> None:
    """Redraw figures and the report from the claims stored by the latest run (no training)."""
    try:
        s = get_study(study)
    except KeyError as e:
        fail(message(e))
    stored = Store(store, create=False).latest_claims(s.name, size)
    if not stored:
        fail(f"no stored {size} claims for '{study}' in {store}; run `theorylab run {study} --size {size}` first")
    if out_dir is not None:
        from theorylab.core.outputs import check_output_folder

        try:
            check_output_folder(out_dir)
        except ConfigError as e:
            fail(str(e))
    by_id = {c.id: c for c in s.claims}
    rows = []
    for r in stored:
        contract = r["numbers"].pop("_contract", {})
        c = by_id.get(r["claim"])
        rows.append({**contract, "study": s.name, "claim": r["claim"], "theorem": c.theorem if c else "",
                     "kind": c.kind if c else contract.get("kind", ""), "statement": c.statement if c else "",
                     "verdict": r["verdict"], "summary": r["summary"], "seconds": r["seconds"], "seeds": r["seeds"],
                     "numbers": r["numbers"], "figures": r["figures"]})
    folder = out_dir or Path(store).parent / s.name / ("report-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    path = write_report(s, rows, folder, {"size": size, "machine": "as stored"})
    _print_verdicts(rows, f"{s.name} ({size}, {seed_counts(rows)}, stored)")
    out.print(f"report: [bold]{path}[/]")


@app.command()
def seeds(study: str, size: SizeOpt = "quick", device: DeviceOpt = "auto", set: SetOpt = None,
          store: StoreOpt = DEFAULT_STORE,
          candidates: Annotated[str, typer.Option("--candidates", help="seed counts to try, e.g. 3,5,8")] = "3,5,8",
          claim: Annotated[Optional[list[str]], typer.Option("--claim", help="only these claim ids")] = None) -> None:
    """The smallest seed count at which three disjoint seed sets give every claim the same verdict."""
    from theorylab.core.seeds import seed_agreement

    from theorylab.core.cost import MAX_CELLS

    bad = f"--candidates must be up to 20 distinct positive integers like 3,5,8 (got {candidates[:60]!r})"
    if len(candidates) > 400:
        fail(bad)
    try:
        counts = [int(x) for x in candidates.split(",") if x.strip()]
    except ValueError:
        fail(bad)
    if not counts or min(counts) < 1 or len(counts) > 20 or len(dict.fromkeys(counts)) != len(counts):
        fail(bad)
    if 3 * max(counts) > MAX_CELLS:  # three disjoint seed sets of the largest count
        fail(f"--candidates: three disjoint sets of {max(counts):,} seeds exceed {MAX_CELLS:,} models")
    # costed as the three disjoint seed sets of the largest candidate
    s, overrides, _, dev, st = _prepare(study, size, 3 * max(counts), device, set, store, claim, source="seeds")
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

    for module in ("theorylab.cli.sweep", "theorylab.cli.atlas", "theorylab.cli.describe", "theorylab.cli.maps",
                   "theorylab.hf.cli", "theorylab.studies.retrieval.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(app)


_register_extensions()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
