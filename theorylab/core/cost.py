"""What a sweep or a claim run will cost, estimated before anything trains, and the guard that refuses work
above a limit unless the user says yes.

cells and model-steps are exact counts; memory is measured by a dry run of each group (core.memory: what one
more model adds, plus what the group shares) at the largest ensemble chunk the planner will form; wall time is estimated from the rate of this study's cells
already in the store (none stored: unknown, and the model-step limit guards alone).
"""
from __future__ import annotations

from dataclasses import dataclass

from theorylab.core.config import ConfigError, StudyConfig
from theorylab.core.study import Study

MAX_CELLS = 100_000
MAX_MODEL_STEPS = 200_000_000  # about 18 h at the ICL reference rate of ~3,000 model-steps/s on 2 cores
MAX_SECONDS = 6 * 3600.0
MAX_EVAL_TOKENS = 2 * 10**9  # test tokens of one evaluation of every model (the default ICL run reads 2e5)
HISTORY_CELLS = 200  # stored cells sampled for the rate


class CostRefused(ConfigError):
    """The estimated cost is above a limit and the user did not pass --yes."""


@dataclass
class Cost:
    cells: int
    model_steps: int
    model_bytes: int  # one model
    chunk_bytes: int  # the largest ensemble chunk at once
    budget_bytes: int  # what the backend lets one chunk use
    seconds: float | None  # None: no stored cell of this study to take a rate from
    eval_tokens: int = 0  # test tokens one evaluation of every cell reads
    what: str = "sweep"
    memory_measured: bool = True  # False: the counts already refuse it, so no dry run measured its memory

    def describe(self) -> str:
        wall = "unknown (no cell of this study in the store to take a rate from)" if self.seconds is None else _duration(self.seconds)
        memory = (f"{_gib(self.model_bytes)} per model, {_gib(self.chunk_bytes)} per ensemble chunk (budget "
                  f"{_gib(self.budget_bytes)})" if self.memory_measured else "memory not measured (refused on the counts)")
        return (f"{self.what}: {self.cells:,} cells, {self.model_steps:,} model-steps, {memory}, "
                f"{self.eval_tokens:,} test tokens per evaluation, training time {wall}")

    def over_limits(self) -> list[str]:
        why = []
        if self.cells > MAX_CELLS:
            why.append(f"{self.cells:,} cells > {MAX_CELLS:,}")
        if self.model_steps > MAX_MODEL_STEPS:
            why.append(f"{self.model_steps:,} model-steps > {MAX_MODEL_STEPS:,}")
        if self.eval_tokens > MAX_EVAL_TOKENS:
            why.append(f"{self.eval_tokens:,} test tokens per evaluation > {MAX_EVAL_TOKENS:,}")
        if self.seconds is not None and self.seconds > MAX_SECONDS:
            why.append(f"estimated {_duration(self.seconds)} > {_duration(MAX_SECONDS)}")
        if self.model_bytes > self.budget_bytes:
            why.append(f"one model needs {_gib(self.model_bytes)}, more than the {_gib(self.budget_bytes)} a chunk may use")
        return why

    def guard(self, yes: bool) -> None:
        why = self.over_limits()
        if why and not yes:
            raise CostRefused(f"{self.what} refused: {'; '.join(why)}. Lower the sizes, or pass --yes to run it anyway")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def estimate(study: Study, samples: list[StudyConfig], cells: int, budget: int, store=None, what: str = "sweep",
             device: str | None = None) -> Cost:
    """Cost of `cells` cells like `samples` (all of them, or a sample of a lazily expanded grid: counts are
    scaled by cells / len(samples)). The counts come first: work they already refuse is never dry-run for its
    memory (Cost.memory_measured is then False)."""
    from theorylab.core.memory import footprint
    from theorylab.core.sweep import chunk_size, model_steps

    scale = cells / max(1, len(samples))
    steps = int(sum(model_steps(study, c) for c in samples) * scale)
    tokens = int(sum(study.eval_tokens(c) for c in samples) * scale) if study.eval_tokens else 0
    rate = stored_rate(study, store, device) if store is not None else None
    cost = Cost(cells, steps, 0, 0, budget, steps / rate if rate else None, tokens, what, memory_measured=False)
    if cost.over_limits():
        return cost
    groups = list({c.group_key(): c for c in samples}.values())  # one dry run per group, not per cell
    alone = [footprint(study, c, fits=(1, budget)) for c in groups]
    cost.model_bytes = max(fp.per_model + fp.shared for fp in alone)
    for c in groups:
        size = min(chunk_size(study, c, budget, cells=cells), cells)
        cost.chunk_bytes = max(cost.chunk_bytes, footprint(study, c, fits=(size, budget)).bytes_for(size))
    cost.memory_measured = True
    return cost


def stored_rate(study: Study, store, device: str | None) -> float | None:
    """Model-steps per second of this study's newest stored cells (on the same device type)."""
    kind = (device or "cpu").split(":")[0]
    steps = seconds = 0.0
    for cfg, sec, dev in store.recent_cells(study.name, HISTORY_CELLS):
        if (dev or "cpu").split(":")[0] == kind and sec:
            steps += cfg.get("steps", 1)
            seconds += sec
    return steps / seconds if seconds > 0 else None
