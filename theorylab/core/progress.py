"""Progress bars (rich) that report model-steps per second; silent when disabled."""
from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)


class _RateColumn(ProgressColumn):
    """model-steps/s = steps/s x models trained together."""

    def render(self, task) -> Text:
        models = task.fields.get("models", 1)
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("", style="progress.data.speed")
        return Text(f"{speed * models:,.0f} model-steps/s", style="progress.data.speed")


class Bars:
    """A set of progress bars; `Bars(enabled=False)` keeps the same calls but prints nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  _RateColumn(), TimeRemainingColumn(), console=console, transient=False,
                                  disable=not enabled)

    def __enter__(self) -> "Bars":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    @contextmanager
    def task(self, description: str, total: int, models: int = 1):
        tid = self._progress.add_task(description, total=total, models=models)
        last = [time.perf_counter()]

        def advance_to(done: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 0.1 or done >= total:  # rich redraws are costly inside a hot loop
                self._progress.update(tid, completed=done)
                last[0] = now

        try:
            yield advance_to
        finally:
            self._progress.update(tid, completed=total)


QUIET = Bars(enabled=False)
