"""The theorylab command line (typer). Core never imports this package; it imports core, studies and hf."""
from theorylab.cli.app import app, main

__all__ = ["app", "main"]
