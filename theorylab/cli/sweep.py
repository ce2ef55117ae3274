"""Commands `sweep`, `export` and `bench`, registered on the main CLI by theorylab.cli.app.

The option conventions (--size --device --set --store) and helpers come from theorylab.cli.app; they are
imported inside `register` because theorylab.cli.app imports this module while it is being built.
"""
# no `from __future__ import annotations`: typer reads the option types of the nested commands at runtime

import json
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from theorylab.core.config import ConfigError, parse_assignments


def to_file(df: pd.DataFrame, fmt: str, out: Path) -> None:
    """Writes a results frame as parquet or csv. List/dict/None-mixed config values (e.g. a tuple
    field) become JSON text so every column has one type, whichever studies share the file."""
    df = df.copy()
    for col in df.columns[df.dtypes == object]:
        if df[col].map(lambda v: isinstance(v, (list, tuple, dict))).any():
            df[col] = df[col].map(lambda v: None if v is None else json.dumps(v))
    from theorylab.core.outputs import write_atomically

    if fmt == "parquet":
        write_atomically(out, lambda tmp: df.to_parquet(tmp, index=False))
    else:
        write_atomically(out, lambda tmp: df.to_csv(tmp, index=False))


def register(app: typer.Typer) -> None:
    from theorylab import api
    from theorylab.cli.app import DeviceOpt, SetOpt, SizeOpt, StoreOpt, fail, message, out
    from theorylab.core.store import DEFAULT_STORE, Store
    from theorylab.core.study import get_study

    @app.command("sweep")
    def sweep_cmd(
        study: str,
        grid: Annotated[Optional[list[str]], typer.Option("--grid", help="key=v1,v2,... or key=lo..hi (inclusive integers); repeatable")] = None,
        seeds: Annotated[int, typer.Option("--seeds", help="seed offsets per grid cell (seed, seed+1, ...)")] = 1,
        size: SizeOpt = "quick", device: DeviceOpt = "auto", set: SetOpt = None, store: StoreOpt = DEFAULT_STORE,
        backend: Annotated[str, typer.Option("--backend", help="local (this machine) or ray (a Ray cluster)")] = "local",
        address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (ray.init(address=...)); 'local' starts one here")] = None,
        max_models: Annotated[Optional[int], typer.Option("--max-models", help="cap on models per ensemble chunk (default: what fits in memory)")] = None,
        weights: Annotated[bool, typer.Option("--weights/--no-weights", help="store each cell's final weights")] = True,
        quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
        yes: Annotated[bool, typer.Option("--yes", help="run even when the cost estimate is above the limits")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and print the cost estimate; train nothing")] = False,
    ) -> None:
        """Train every cell of a grid as grouped ensembles; resumable (finished cells are skipped)."""
        from theorylab.core.backends import make_backend
        from theorylab.core.cost import MAX_CELLS, estimate
        from theorylab.core.grid import expand_grid, grid_samples, grid_size, iter_grid, parse_grid
        from theorylab.core.sweep import SweepProgress, export_hint, sweep_blocks

        try:  # everything is validated (and costed) before anything trains
            s = get_study(study)
            overrides, g = parse_assignments(set), parse_grid(grid)
            n = grid_size(g, seeds)
            # a grid up to MAX_CELLS is expanded and validated cell by cell; a larger one value by value, lazily
            eager = n <= MAX_CELLS
            samples = expand_grid(s, size, overrides, g, seeds) if eager else grid_samples(s, size, overrides, g, seeds)
            if seeds > 10**12:  # beyond any cost limit; keeps the arithmetic below exact and quick
                raise ConfigError(f"--seeds must be in [1, 10**12] (got {seeds:,})")
            if max_models is not None and max_models < 1:
                raise ConfigError(f"--max-models must be >= 1 (got {max_models})")
            runner = make_backend(backend, device, address)
            history = Store(store, create=False) if Path(store).exists() else None
            cost = estimate(s, samples, n, runner.budget(), history, device=str(runner.device),
                            max_models=max_models, workers=runner.workers)
            if s.needs is not None:
                s.needs(next(iter(samples)) if eager else s.config(size, **overrides))
            cost.guard(yes or dry_run)
            st = None if dry_run else Store(store, source="sweep")
        except (ConfigError, KeyError, ValueError) as e:
            fail(message(e))
        out.print(cost.describe(), soft_wrap=True)
        if dry_run:
            why = cost.over_limits()
            out.print(f"dry run: would be refused without --yes ({'; '.join(why)})" if why else "dry run: within the limits")
            return
        cells = samples if eager else iter_grid(s, size, overrides, g, seeds)
        with SweepProgress(enabled=not quiet) as progress:
            summary = sweep_blocks(s, cells, st, runner, max_models=max_models, keep_params=weights, progress=progress)
        rate = summary.model_steps / summary.seconds if summary.seconds > 0 else 0.0
        out.print(f"{s.name}: {summary.cells:,} cells: {summary.trained:,} trained, {summary.skipped:,} already in the "
                  f"store, in {summary.seconds:,.1f} s ({summary.chunks} ensemble chunks, {rate:,.0f} model-steps/s, "
                  f"{runner.name} backend on {runner.device})")
        out.print(f"store: [bold]{st.path}[/]")
        out.print(f"export: {export_hint(st.path, s.name)}")

    @app.command("export")
    def export_cmd(
        out_file: Annotated[Path, typer.Option("--out", help="file to write")],
        fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
        study: Annotated[Optional[str], typer.Option("--study", help="only this study's rows")] = None,
        store: StoreOpt = DEFAULT_STORE,
        rows: Annotated[str, typer.Option("--rows", help="cells (one per trained model) or claims (one per claim result)")] = "cells",
    ) -> None:
        """Write the store as a table. cells: one row per cell (config_hash, run_id, source, created, config fields,
        final metrics); claims: one row per stored claim result (run_id, source, created, verdict, seeds, summary).
        source says what wrote the row (sweep, run, check, seeds, api); times are ISO-8601 in UTC."""
        from theorylab.core.outputs import check_output_file

        if fmt not in ("parquet", "csv"):
            fail(f"--format must be parquet or csv (got {fmt!r})")
        if rows not in ("cells", "claims"):
            fail(f"--rows must be cells or claims (got {rows!r})")
        try:  # before the store is read: the output may never be the store itself
            check_output_file(out_file, [store])
        except ConfigError as e:
            fail(str(e))
        df = api.results(store, study) if rows == "cells" else Store(store, create=False).claims_df(study)
        if df.empty:
            fail(f"no {rows}{' of study ' + repr(study) if study else ''} in {store}")
        to_file(df, fmt, out_file)
        out.print(f"wrote {len(df):,} rows x {len(df.columns)} columns to [bold]{out_file}[/]")

    @app.command("bench")
    def bench_cmd(
        study: Annotated[str, typer.Argument(help="the study whose training is timed")] = "icl",
        device: DeviceOpt = "auto",
        models: Annotated[int, typer.Option("--models", help="ensemble size E")] = 64,
        steps: Annotated[int, typer.Option("--steps", help="training steps timed")] = 200,
        naive_models: Annotated[Optional[int], typer.Option("--naive-models", help="models timed one at a time (default min(E, 8)); the rate is per model-step either way")] = None,
        compile: Annotated[bool, typer.Option("--compile", help="torch.compile the ensemble step (studies with a bare step)")] = False,
        peer: Annotated[bool, typer.Option("--peer", help="also time the study's peer (benchmarks/peers/STUDY.py, e.g. JAX vmap+jit; needs the bench extra)")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Model-steps per second of a study's training: ensemble path vs one model at a time."""
        from theorylab.core.bench import PeerUnavailable, load_peer, run_bench
        from theorylab.core.ensemble import resolve_device

        try:
            s = get_study(study)
            dev = resolve_device(device)
            from theorylab.core.backends import memory_budget
            from theorylab.core.cost import MAX_MODEL_STEPS

            if not 1 <= models <= 65536 or not 2 <= steps <= 10_000_000:
                raise ConfigError(f"--models must be in [1, 65536] and --steps in [2, 10,000,000] (got {models:,}, {steps:,})")
            if naive_models is not None and not 1 <= naive_models <= models:
                raise ConfigError(f"--naive-models must be in [1, --models = {models}] (got {naive_models})")
            cfg = s.config("quick", **s.bench_config)
            if models * steps > MAX_MODEL_STEPS:
                raise ConfigError(f"bench refused: {models:,} models x {steps:,} steps > {MAX_MODEL_STEPS:,} model-steps")
            from theorylab.core.memory import footprint
            need, budget = footprint(s, cfg).bytes_for(models), memory_budget(dev)
            if need > budget:
                raise ConfigError(f"bench refused: {models:,} models need about {need / 2**30:.1f} GiB, more than the "
                                  f"{budget / 2**30:.1f} GiB budget of {dev}; lower --models")
            if peer:
                load_peer(s.name)  # before any work: a missing peer or library is one line
        except (ConfigError, KeyError, ValueError) as e:
            fail(message(e))
        except PeerUnavailable as e:
            fail(str(e))
        res = run_bench(s, dev, models, steps, naive_models, compile=compile, peer=peer)
        if as_json:
            print(json.dumps(res))
            return
        out.print(f"{s.name} ({res['timed']}; config overrides {res['config']}), {steps} steps, device {res['device']}")
        out.print(f"  ensemble (E={models}):      {res['ensemble_model_steps_per_s']:>12,.0f} model-steps/s")
        out.print(f"  one model at a time ({res['naive_models_timed']}): {res['naive_model_steps_per_s']:>12,.0f} model-steps/s")
        out.print(f"  ratio: {res['ratio']:.1f}x")
        if peer:
            out.print(f"  peer, {res['peer']} (E={models}): {res['peer_model_steps_per_s']:>12,.0f} model-steps/s;"
                      f" ensemble / peer: {res['ratio_to_peer']:.2f}x (peer compile: {res['peer_warmup_seconds']:.1f} s)")
        if res["ratio"] != res["ratio"]:
            out.print(f"  not resolved: {steps} training steps took under 10% of the run (set-up and evaluation "
                      "dominate); raise --steps")
        out.print(f"  warm-up (2 steps, compilation included; not in the rates): {res['warmup_seconds']:.1f} s")
