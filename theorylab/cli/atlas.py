"""Command `atlas`: a static site of every study's stored claims (theorylab.core.atlas), registered on the main CLI
by theorylab.cli.app."""
# no `from __future__ import annotations`: typer reads the option types of the nested command at runtime

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    from theorylab.cli.app import StoreOpt, fail, out
    from theorylab.core.config import ConfigError
    from theorylab.core.store import DEFAULT_STORE, StoreError

    @app.command("atlas")
    def atlas_cmd(
        out_dir: Annotated[Path, typer.Option("--out", help="folder to write the site into (replaced if it holds an earlier atlas)")],
        store: StoreOpt = DEFAULT_STORE,
        size: Annotated[Optional[str], typer.Option("--size", help="only results of this size (default: the newest of any size)")] = None,
    ) -> None:
        """Write a static HTML site of every study and its stored claims (opens from disk; nothing trains)."""
        from theorylab.core.atlas import build_atlas, check_atlas_output, open_store
        from theorylab.core.study import get_study, study_names

        sizes = sorted({s for name in study_names() for s in get_study(name).sizes})
        try:  # every input is checked before anything is drawn
            if size is not None and size not in sizes:
                raise ConfigError(f"--size must be one of {', '.join(sizes)} (got {size!r})")
            check_atlas_output(out_dir)
            open_store(store)
        except (ConfigError, StoreError) as e:
            fail(str(e))
        views = build_atlas(store, out_dir, size)
        ran = sum(v.row is not None for sv in views for v in sv.claims)
        total = sum(len(sv.claims) for sv in views)
        out.print(f"atlas: {len(views)} studies, {ran}/{total} claims with a stored result -> "
                  f"[bold]{out_dir / 'index.html'}[/]")
