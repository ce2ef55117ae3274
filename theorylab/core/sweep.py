"""Grid cells -> shape groups -> ensemble chunks -> backend (local | ray) -> trained cells in the store.

`sweep` is the one path by which anything gets trained: a single run (E = 1), the seeds of a claim
(`train_cells`), or a sweep of 100,000 cells. Cells already in the store are skipped, so every entry
point resumes for free. Only one chunk's tensors exist at a time (per worker): configs are cheap,
ensembles are sized to the device's free memory.
"""
from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from theorylab.core.backends import LocalBackend
from theorylab.core.config import StudyConfig
from theorylab.core.progress import QUIET, Bars, console
from theorylab.core.store import Cell, ChunkTiming, Store, StoreError
from theorylab.core.study import GroupResult, Study


def group_cells(cfgs: Sequence[StudyConfig]) -> list[list[StudyConfig]]:
    """Cells sharing tensor shapes and program (equal group keys), in first-seen order."""
    groups: dict[str, list[StudyConfig]] = defaultdict(list)
    for c in cfgs:
        groups[c.group_key()].append(c)
    return list(groups.values())


def chunk_size(study: Study, cfg: StudyConfig, budget: int, max_models: int | None = None,
               cells: int | None = None) -> int:
    """Models of `cfg`'s group that fit in `budget` bytes at once (at least 1); `cells`: the group's size (when
    the dry run's upper bound shows they all fit, the exact measurement is skipped)."""
    from theorylab.core.memory import footprint

    at_once = min(n for n in (cells, max_models) if n) if (cells or max_models) else None  # models a chunk may hold
    fp = footprint(study, cfg, fits=(at_once, budget) if at_once else None)
    fit = max(1, (budget - fp.shared) // fp.per_model)
    return int(min(fit, max_models or fit))


def plan_chunks(study: Study, cfgs: Sequence[StudyConfig], budget: int, max_models: int | None = None,
                workers: int = 1) -> list[list[StudyConfig]]:
    """Groups split into chunks that fit the budget, and into at least `workers` chunks when the group
    has that many cells (so every Ray worker gets work). Sizes differ by at most one (no small remainder)."""
    chunks = []
    for group in group_cells(cfgs):
        cap = chunk_size(study, group[0], budget, max_models, cells=len(group))
        start = 0
        for size, count in split_group(len(group), cap, workers):
            for _ in range(count):
                chunks.append(group[start:start + size])
                start += size
    return chunks


def split_group(cells: int, cap: int, workers: int = 1) -> list[tuple[int, int]]:
    """How plan_chunks splits a group of `cells` cells: (chunk size, number of chunks of that size), larger first.
    As few chunks as `cap` allows but at least `workers` (when there are that many cells); sizes differ by at most
    one. Pairs, not a list of sizes: the cost estimate splits groups of millions of cells the same way."""
    n = max(math.ceil(cells / cap), min(workers, cells))
    size, extra = divmod(cells, n)
    return [(k, count) for k, count in ((size + 1, extra), (size, n - extra)) if count > 0]


def model_steps(study: Study, cfg: StudyConfig) -> int:
    """Optimizer steps of one cell (what the sweep's rate and ETA count): the study's own count when it
    trains in several phases, else cfg.steps."""
    return int(study.model_steps(cfg)) if study.model_steps else int(getattr(cfg, "steps", 1))


def result_cells(study: Study, chunk: Sequence[StudyConfig], res: GroupResult, device: torch.device | str,
                 keep_params: bool = True) -> list[Cell]:
    cells = []
    for i, cfg in enumerate(chunk):
        params = {k: v[i] for k, v in res.params.items()} if keep_params else None
        cells.append(Cell(cfg.hash, study.name, cfg.group_key(), cfg.model_dump(mode="json"), res.metrics[i],
                          res.curves[i], res.status[i], res.seconds / len(chunk), str(device), params))
    return cells


def chunk_timing(study: Study, chunk: Sequence[StudyConfig], n_steps: int, res: GroupResult, backend) -> ChunkTiming:
    """What the store keeps of a trained chunk for the time estimate. The torch thread count is this process's,
    known only when the chunk trained here (local backend); a backend that did not time the whole call leaves the
    training loop's seconds."""
    threads = torch.get_num_threads() if isinstance(backend, LocalBackend) else None
    seconds = res.wall_seconds if res.wall_seconds is not None else res.seconds
    return ChunkTiming(study.name, chunk[0].group_key(), len(chunk), n_steps, seconds, str(backend.device), threads)


def _leased(chunks: Iterable[list[StudyConfig]], store: Store, with_params: bool) -> Iterator[list[StudyConfig]]:
    """Leases each chunk's cells just before it is handed out: cells another sweep on the same store has
    finished or is training meanwhile are left out (that sweep writes them)."""
    for chunk in chunks:
        mine = store.lease([c.hash for c in chunk], with_params)
        rest = [c for c in chunk if c.hash in mine]
        if rest:
            yield rest


POLL_SECONDS = 1.0  # how often a sweep whose remaining cells are all leased by others looks again


@dataclass
class SweepSummary:
    cells: int  # unique cells asked for
    skipped: int  # already in the store at the start
    trained: int  # trained by this sweep
    written: int  # new rows this sweep wrote (less than trained if a concurrent sweep got there first)
    chunks: int
    model_steps: int
    seconds: float


def sweep(study: Study, cfgs: Sequence[StudyConfig], store: Store, backend=None, *, max_models: int | None = None,
          bars: Bars = QUIET, keep_params: bool = True, with_params: bool = False,
          progress: "SweepProgress | None" = None) -> SweepSummary:
    """Trains the cells of `cfgs` that the store lacks, writing each chunk in one transaction as it
    finishes. `with_params`: a stored cell without weights counts as missing (claims need weights).
    `progress` (a SweepProgress) replaces `bars` with one bar for the whole sweep."""
    t0 = time.perf_counter()
    backend = backend or LocalBackend(torch.device("cpu"))
    unique = list({c.hash: c for c in cfgs}.values())
    done = store.done([c.hash for c in unique], with_params)
    todo = [c for c in unique if c.hash not in done]
    chunks = plan_chunks(study, todo, backend.budget(), max_models, backend.workers) if todo else []
    chunks_planned = chunks
    if progress is not None:
        progress.start(len(unique), len(done), sum(model_steps(study, c) for c in todo))
        bars = progress
    trained = written = steps = 0
    try:
        with store.leasing():
            while chunks:
                for chunk, res in backend.map(study, _leased(chunks, store, with_params), bars):
                    n_steps = sum(model_steps(study, c) for c in chunk)
                    timing = chunk_timing(study, chunk, n_steps, res, backend)
                    written += store.put_cells(result_cells(study, chunk, res, backend.device, keep_params), timing)
                    trained += len(chunk)
                    steps += n_steps
                    if progress is not None:
                        progress.chunk_done(len(chunk), n_steps)
                # cells left to a concurrent sweep: wait for its rows, or take them over when its lease expires
                stored = store.done([c.hash for c in todo], with_params)
                rest = [c for c in todo if c.hash not in stored]
                if rest and not store.lease([c.hash for c in rest], with_params):
                    time.sleep(POLL_SECONDS)
                chunks = plan_chunks(study, rest, backend.budget(), max_models, backend.workers) if rest else []
    except StoreError as e:  # a full disk, a store deleted or corrupted mid-sweep (writing or leasing): say what is kept
        raise StoreError(f"{e}; the sweep stopped, the {written:,} cells it wrote before are kept") from None
    return SweepSummary(len(unique), len(done), trained, written, len(chunks_planned), steps, time.perf_counter() - t0)


BLOCK_CELLS = 50_000  # a lazily expanded grid is swept this many cells at a time


def sweep_blocks(study: Study, cfgs: Iterable[StudyConfig], store: Store, backend=None, **kw) -> SweepSummary:
    """`sweep` over an iterable of any length, BLOCK_CELLS cells at a time (memory stays flat)."""
    total = SweepSummary(0, 0, 0, 0, 0, 0, 0.0)
    it = iter(cfgs)
    while block := list(itertools.islice(it, BLOCK_CELLS)):
        part = sweep(study, block, store, backend, **kw)
        total = SweepSummary(*(a + b for a, b in zip(astuple(total), astuple(part))))
    return total


def train_cells(study: Study, cfgs: Sequence[StudyConfig], store: Store, device: torch.device,
                bars: Bars = QUIET, max_models: int | None = None, with_params: bool = True) -> dict[str, Cell]:
    """Trains whatever of `cfgs` the store lacks (locally) and returns every requested cell (with
    weights when asked)."""
    sweep(study, cfgs, store, LocalBackend(device), max_models=max_models, bars=bars, with_params=with_params)
    return store.get_cells([c.hash for c in cfgs], with_params=with_params)


def stack_params(cells: dict[str, Cell], cfgs: Sequence[StudyConfig], device: torch.device) -> dict[str, torch.Tensor]:
    """Weights of `cfgs` (from trained cells) stacked on a leading model axis: [E, ...]."""
    first = cells[cfgs[0].hash].params
    return {k: torch.stack([cells[c.hash].params[k] for c in cfgs]).to(device) for k in first}


# ------------------------------------------------------------------------------------------ progress
class _ModelStepRate(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed  # the task counts model-steps
        return Text(f"{speed:,.0f} model-steps/s" if speed else "", style="progress.data.speed")


class SweepProgress(Bars):
    """One bar for a whole sweep: cells done / total, model-steps per second, ETA.

    The bar counts model-steps (what the ETA is made of); a chunk's own step callbacks move it while
    the chunk trains, so the rate is live even when a chunk takes minutes. It stands in for `Bars`
    where a study's train_group expects one (`task(...)` yields a step callback)."""

    def __init__(self, enabled: bool = True):  # Bars' entry/exit, its own columns
        self.enabled = enabled
        self.cells = self.total_cells = self.base = 0
        self._phase = 0  # model-steps of the running chunk's finished phases (e.g. pre-training, then fine-tuning)
        self._progress = Progress(TextColumn("sweep"), BarColumn(), TextColumn("{task.fields[cells]}"),
                                  _ModelStepRate(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=console, disable=not enabled)
        self._task = None

    def start(self, total_cells: int, done_cells: int, total_steps: int) -> None:
        self.cells, self.total_cells = done_cells, total_cells
        self._task = self._progress.add_task("sweep", total=max(1, total_steps), cells=self._cells_text())

    def _cells_text(self) -> str:
        return f"{self.cells:,}/{self.total_cells:,} cells"

    @contextmanager
    def task(self, description: str, total: int, models: int = 1):
        last = [0.0]
        start = self.base + self._phase

        def advance_to(step: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 0.2:  # rich redraws are costly inside a hot loop
                self._progress.update(self._task, completed=start + step * models)
                last[0] = now

        yield advance_to
        self._phase += total * models

    def chunk_done(self, cells: int, steps: int) -> None:
        self.cells += cells
        self.base += steps
        self._phase = 0
        self._progress.update(self._task, completed=self.base, cells=self._cells_text())


def export_hint(store: Path | str, study: str) -> str:
    return f"theorylab export --format parquet --study {study} --store {store} --out {study}.parquet"
