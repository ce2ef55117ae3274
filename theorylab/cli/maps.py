"""Command `map`: a theorem map (core.maps) of a study, registered on the main CLI by theorylab.cli.app.

The grid's cells train through the normal sweep path (core.sweep), so they land in the store and a second run
only draws; everything is validated and costed before anything trains.
"""
# no `from __future__ import annotations`: typer reads the option types of the nested commands at runtime

from pathlib import Path
from typing import Annotated, Optional

import typer

from theorylab.core.config import ConfigError, parse_assignments


def register(app: typer.Typer) -> None:
    from theorylab.cli.app import DeviceOpt, SetOpt, SizeOpt, StoreOpt, YesOpt, fail, message, out
    from theorylab.core.store import DEFAULT_STORE

    @app.command("map")
    def map_cmd(
        study: str,
        map_name: Annotated[Optional[str], typer.Option("--map", help="which of the study's maps (default: its only one)")] = None,
        grid: Annotated[Optional[list[str]], typer.Option("--grid", help="AXIS=v1,v2,... for one of the map's two axes (default: the map's grid); repeatable")] = None,
        seeds: Annotated[int, typer.Option("--seeds", help="seeds per grid point (seed, seed+1, ...)")] = 2,
        size: SizeOpt = "quick", device: DeviceOpt = "auto", set: SetOpt = None, store: StoreOpt = DEFAULT_STORE,
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="folder for <study>-<map>.png/.json (default: <store dir>/maps/<study>/)")] = None,
        metric: Annotated[Optional[str], typer.Option("--metric", help="draw this measured quantity instead of the map's")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
        yes: YesOpt = False,
    ) -> None:
        """Sweep two of a theorem's quantities and draw the measured quantity with the theorem's boundary over it."""
        from theorylab.core.backends import LocalBackend, memory_budget
        from theorylab.core.cost import MAX_CELLS, estimate
        from theorylab.core.ensemble import resolve_device
        from theorylab.core.grid import expand_grid, grid_size, parse_grid
        from theorylab.core.maps import get_map, map_grid, measure_cells, measure_evaluated, write_map
        from theorylab.core.outputs import check_output_folder
        from theorylab.core.store import Store
        from theorylab.core.study import get_study
        from theorylab.core.sweep import SweepProgress, stack_params, sweep

        try:  # everything is validated (and costed) before anything trains
            s = get_study(study)
            name, tmap = get_map(s, map_name)
            overrides, g = parse_assignments(set), parse_grid(grid)
            if not 1 <= seeds <= MAX_CELLS:
                raise ConfigError(f"--seeds must be in [1, {MAX_CELLS:,}] (got {seeds:,})")
            xs, ys = map_grid(s, tmap, g)
            axes = {tmap.x.name: xs, tmap.y.name: ys}
            if grid_size(axes, seeds) > MAX_CELLS:  # trained cells, or merges evaluated: bounded alike
                raise ConfigError(f"map refused: {grid_size(axes, seeds):,} grid points x seeds > {MAX_CELLS:,}")
            if tmap.evaluate is None:
                cfgs = expand_grid(s, size, overrides, axes, seeds)  # every cell validated: field, range, cell
            else:  # the axes are evaluation parameters: the seeds train once, the grid is evaluated on them
                cfgs = s.seed_configs(size, seeds, **overrides)
            dev = resolve_device(device)
            history = Store(store, create=False) if Path(store).exists() else None
            cost = estimate(s, cfgs, len(cfgs), memory_budget(dev), history, f"{s.name} map {name}", str(dev))
            if s.needs is not None:
                s.needs(cfgs[0])
            folder = Path(out_dir) if out_dir is not None else Path(store).parent / "maps" / s.name
            check_output_folder(folder)
            cost.guard(yes)
            st = Store(store)
        except (ConfigError, KeyError, ValueError) as e:
            fail(message(e))
        out.print(cost.describe(), soft_wrap=True)
        with SweepProgress(enabled=not quiet) as progress:
            summary = sweep(s, cfgs, st, LocalBackend(dev), progress=progress, with_params=tmap.evaluate is not None)
        out.print(f"{s.name} map {name}: {summary.cells:,} cells: {summary.trained:,} trained, {summary.skipped:,} "
                  f"already in the store, in {summary.seconds:,.1f} s")
        try:
            if tmap.evaluate is None:
                res = measure_cells(tmap, xs, ys, cfgs, st, metric)
            else:
                cells = st.get_cells([c.hash for c in cfgs], with_params=True)
                res = measure_evaluated(tmap, xs, ys, cfgs, stack_params(cells, cfgs, dev), dev, metric)
        except ConfigError as e:  # --metric names nothing measured: the cells are stored, a rerun only draws
            fail(str(e))
        png, js = write_map(s, name, tmap, res, cfgs[0], size, overrides, folder)
        out.print(f"map: [bold]{png}[/]  (numbers: {js.name})")
