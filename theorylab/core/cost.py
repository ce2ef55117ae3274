"""What a sweep or a claim run will cost, estimated before anything trains, and the guard that refuses work
above a limit unless the user says yes.

cells and model-steps are exact counts; memory is measured by a dry run of each group (core.memory: what one
more model adds, plus what the group shares) at the largest ensemble chunk the planner will form. Wall time is
predicted chunk by chunk, for the chunks the planner will form, from a rate model fitted on the chunks of this
study already in the store (RateModel): an ensemble of E models runs its steps much faster than E single models,
so a rate taken per model from small chunks (claims) says little about a big sweep chunk. None stored: unknown,
and the model-step limit guards alone.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from theorylab.core.config import ConfigError, StudyConfig
from theorylab.core.store import ChunkTiming
from theorylab.core.study import Study

MAX_CELLS = 100_000
MAX_MODEL_STEPS = 200_000_000  # about 18 h at the ICL reference rate of ~3,000 model-steps/s on 2 cores
MAX_SECONDS = 6 * 3600.0
MAX_EVAL_TOKENS = 2 * 10**9  # test tokens of one evaluation of every model (the default ICL run reads 2e5)
HISTORY_CHUNKS = 200  # the newest stored chunks of a study the rate model is fitted on


class CostRefused(ConfigError):
    """The estimated cost is above a limit and the user did not pass --yes."""


@dataclass
class Cost:
    cells: int
    model_steps: int
    model_bytes: int  # one model
    chunk_bytes: int  # the largest ensemble chunk at once
    budget_bytes: int  # what the backend lets one chunk use
    seconds: float | None  # None: no stored chunk of this study to fit a rate on (or refused on the counts)
    eval_tokens: int = 0  # test tokens one evaluation of every cell reads
    what: str = "sweep"
    memory_measured: bool = True  # False: the counts already refuse it, so no dry run measured its memory
    chunks: int = 0  # ensemble chunks the planner will form
    basis: str = "no chunk of this study in the store to fit a rate on"  # what `seconds` was predicted from

    def describe(self) -> str:
        wall = f"unknown ({self.basis})" if self.seconds is None else f"{_duration(self.seconds)} ({self.basis})"
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
             device: str | None = None, max_models: int | None = None, workers: int = 1) -> Cost:
    """Cost of `cells` cells like `samples` (all of them, or a sample of a lazily expanded grid: counts are
    scaled by cells / len(samples)), chunked as the sweep's planner will chunk them (`max_models`, `workers`:
    as given to the sweep). The counts come first: work they already refuse is never dry-run for its memory
    (Cost.memory_measured is then False) and gets no time estimate."""
    from theorylab.core.memory import footprint
    from theorylab.core.sweep import chunk_size, model_steps, split_group

    scale = cells / max(1, len(samples))
    steps = int(sum(model_steps(study, c) for c in samples) * scale)
    tokens = int(sum(study.eval_tokens(c) for c in samples) * scale) if study.eval_tokens else 0
    cost = Cost(cells, steps, 0, 0, budget, None, tokens, what, memory_measured=False)
    if cost.over_limits():
        cost.basis = "not estimated: refused on the counts"
        return cost
    groups: dict[str, list[StudyConfig]] = defaultdict(list)  # one dry run per group, not per cell
    for c in samples:
        groups[c.group_key()].append(c)
    alone = [footprint(study, g[0], fits=(1, budget)) for g in groups.values()]
    cost.model_bytes = max(fp.per_model + fp.shared for fp in alone)
    planned: list[tuple[int, float, int]] = []  # (models in a chunk, steps of each model, chunks of that kind)
    for group in groups.values():
        n = max(1, round(len(group) * scale))
        split = split_group(n, chunk_size(study, group[0], budget, max_models, cells=n), workers)
        largest = split[0][0]
        cost.chunk_bytes = max(cost.chunk_bytes, footprint(study, group[0], fits=(largest, budget)).bytes_for(largest))
        per_model = sum(model_steps(study, c) for c in group) / len(group)
        planned += [(size, per_model, count) for size, count in split]
    cost.memory_measured = True
    cost.chunks = sum(count for _, _, count in planned)
    model = rate_model(study, store, device)
    if model is not None:
        at_once = max(1, min(workers, cost.chunks))  # chunks run `workers` at a time (Ray); one after another locally
        least, most = (sum(count * model.bounds(size, per_model)[i] for size, per_model, count in planned) / at_once
                       for i in (0, 1))
        cost.seconds = math.sqrt(least * most)  # beyond the sizes seen: the middle of the two ends on a log scale
        sizes = [size for size, _, _ in planned]
        cost.basis = model.describe((min(sizes), max(sizes)))
        if least < 0.99 * most:
            cost.basis += f": between {_duration(least)} and {_duration(most)}"
    return cost


@dataclass
class RateModel:
    """A chunk's wall seconds as fitted on stored chunks:

        seconds = overhead + per_step * S + per_model_step * E * S     (E models in the chunk, S steps each)

    overhead is the chunk's set-up and grading, per_step what a step costs however many models it carries (Python,
    kernel launches: what an ensemble amortises), per_model_step what each model adds to a step. Fitted by
    non-negative least squares on relative errors (a 2 s chunk counts as much as a 2,000 s one). A term enters the
    fit only when the stored chunks can tell it apart from the others: per_step needs chunks of two sizes E or
    more, overhead chunks of two step counts S or more. With one chunk size only, the per-model rate of that size
    is all there is. A prediction beyond the sizes fitted is an extrapolation, given as a range (bounds) and said so
    (describe)."""
    overhead: float
    per_step: float
    per_model_step: float
    chunks: int  # stored chunks fitted
    sizes: tuple[int, int]  # smallest and largest chunk fitted (models)
    where: str = "cpu"  # device and threads of the chunks fitted
    from_cells: bool = False  # fitted on chunks rebuilt from an older store's cells (training loop only)
    bench: str | None = None  # fitted on the shipped bench rates (REFERENCE_RATES), not on stored chunks: their label

    def seconds(self, models: int, steps: float) -> float:
        return self.overhead + self.per_step * steps + self.per_model_step * models * steps

    def bounds(self, models: int, steps: float) -> tuple[float, float]:
        """(least, most) seconds a chunk of `models` models may take. Within the sizes fitted: the fit, both ways.
        Beyond them the fit is an extrapolation, and the other end is the nearest size fitted at its own per-model
        rate (no more amortisation above the largest size seen, none lost below the smallest); with one size fitted,
        the fit is that rate, and the other end is that size's chunk time (a chunk takes no less time for holding
        more models)."""
        lo, hi = self.sizes
        nearest = min(max(models, lo), hi)
        near = self.seconds(nearest, steps)
        held = near * models / nearest
        return tuple(sorted((held, self.seconds(models, steps) if lo < hi else near)))

    def describe(self, planned: tuple[int, int] | None = None) -> str:
        """What the prediction stands on; `planned`: the smallest and largest chunk predicted (models)."""
        lo, hi = self.sizes
        chunks = f"{self.chunks} stored chunk{'s' * (self.chunks > 1)} of {lo if lo == hi else f'{lo}-{hi}'} models"
        if self.bench is not None:
            chunks = self.bench
        text = f"from {chunks}, {self.where}" + (", rebuilt from the cells: training loop only" if self.from_cells else "")
        if planned is not None and not lo <= planned[0] <= planned[1] <= hi:
            outside = planned[1] if planned[1] > hi else planned[0]
            text += f"; extrapolated to {outside} models" + (" from one chunk size" if lo == hi else "")
        return text


def fit_rate(timings) -> RateModel | None:
    """The RateModel of stored chunk timings (core.store.ChunkTiming), or None when there are none to fit."""
    timings = [t for t in timings if t.seconds > 0 and t.models > 0 and t.model_steps > 0]
    if not timings:
        return None
    E = np.array([t.models for t in timings], dtype=float)
    S = np.array([t.model_steps / t.models for t in timings])
    y = np.array([t.seconds for t in timings])
    terms = {"per_model_step": E * S}
    if len(np.unique(E)) > 1:
        terms["per_step"] = S
    if len(np.unique(S)) > 1:
        terms["overhead"] = np.ones_like(S)
    A = np.stack(list(terms.values()), axis=1) / y[:, None]  # rows divided by the seconds: relative errors
    coef, _ = nnls(A, np.ones(len(y)))
    fitted = {"overhead": 0.0, "per_step": 0.0, **dict(zip(terms, coef.tolist()))}
    threads = {t.threads for t in timings}
    where = (timings[0].device or "cpu").split(":")[0]
    if len(threads) == 1 and None not in threads:
        n = threads.pop()
        where += f", {n} thread{'s' * (n > 1)}"
    return RateModel(fitted["overhead"], fitted["per_step"], fitted["per_model_step"], len(timings),
                     (int(E.min()), int(E.max())), where, all(t.from_cells for t in timings))


def rate_model(study: Study, store, device: str | None) -> RateModel | None:
    """The RateModel of this study's newest stored chunks on this kind of device, and, where any were timed at this
    process's torch thread count, of those only (1 and 2 threads differ by up to 2x on CPU)."""
    import torch

    kind = (device or "cpu").split(":")[0]
    timings = [] if store is None else [t for t in store.chunk_timings(study.name, HISTORY_CHUNKS)
                                        if (t.device or "cpu").split(":")[0] == kind]
    here = [t for t in timings if t.threads == torch.get_num_threads()]
    return fit_rate(here or timings) or bench_rate_model(study, kind, torch.get_num_threads())


REFERENCE_RATES = Path(__file__).with_name("reference_rates.json")  # written by benchmarks/speed_table.py


def bench_rate_model(study: Study, kind: str, threads: int, path: Path | None = None) -> RateModel | None:
    """A RateModel from the bench rates shipped with theorylab (`theorylab bench` of every study on the reference
    machine, BENCHMARKS.md), for a store that holds no chunk of the study yet: the per-step and per-model-step
    costs of the training step at the study's bench config, at the thread count nearest this process's. Set-up
    and grading are not in it, and this machine and config may differ: the estimate says so."""
    path = path or REFERENCE_RATES
    if kind != "cpu" or not path.is_file():
        return None
    ref = json.loads(path.read_text())
    rates = ref.get("studies", {}).get(study.name, {})
    if not rates:
        return None
    nearest = min(rates, key=lambda n: abs(int(n) - threads))
    steps = 100  # any S: bench rates are per model-step, no overhead term
    timings = [ChunkTiming(study.name, "bench", int(E), int(E) * steps, int(E) * steps / rate, "cpu", int(nearest))
               for E, rate in rates[nearest].items() if rate and rate == rate]
    model = fit_rate(timings)
    if model is not None:
        model.bench = (f"the bench rates of {study.name}'s training step at its bench config on {ref['machine']} "
                       f"({ref['measured']}; no set-up or grading: a lower bound)")
    return model
