"""`theorylab bench STUDY`: model-steps per second of a study's training, ensemble vs one model at a time.

Both paths run the same code; only the number of models per call differs: E at once, or 1 at a time in a
Python loop (the way paper code trains). A study may time its bare training step (Study.bench: no
evaluation, no probes); otherwise its whole train_group is timed at `steps` and at 1 step and the
difference is the training time of steps - 1 steps (evaluation and set-up cancel out).
The two paths are timed alternately and the best of `repeats` is kept, so a burst of load from other
processes on a shared machine penalises neither side more than the other.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch

from theorylab.core.config import StudyConfig
from theorylab.core.progress import QUIET
from theorylab.core.report import machine_description
from theorylab.core.study import Study


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_steps(study: Study, cfg: StudyConfig) -> int:
    return int(study.model_steps(cfg)) if study.model_steps else int(cfg.steps)


def train_seconds(study: Study, cfgs: Sequence[StudyConfig], device: torch.device, steps: int,
                  compile: bool = False) -> tuple[float, int]:
    """(seconds, model-steps) of `steps` training steps of `cfgs` as one ensemble."""
    if study.bench is not None:
        return study.bench(cfgs, device, steps, compile), len(cfgs) * steps
    if steps < 2:
        raise ValueError("--steps must be >= 2 for a study timed through its train_group")

    def timed(n: int) -> tuple[float, int]:
        group = [c.replace(steps=n) for c in cfgs]
        sync(device)
        t0 = time.perf_counter()
        study.train_group(group, device, QUIET)
        sync(device)
        return time.perf_counter() - t0, sum(_model_steps(study, c) for c in group)

    t_long, n_long = timed(steps)
    t_short, n_short = timed(1)
    if t_long - t_short < UNRESOLVED * t_long:  # the training is lost in the noise of set-up and evaluation
        return float("nan"), n_long - n_short
    return t_long - t_short, n_long - n_short


UNRESOLVED = 0.1  # a difference under 10% of the long run's time is not read as a training time


def _best_rate(runs: list[tuple[float, int]]) -> float:
    """The best model-steps/s over repeats; NaN when no repeat resolved a training time."""
    rates = [n / t for t, n in runs if t == t]
    return max(rates) if rates else float("nan")


def run_bench(study: Study, device: torch.device, models: int = 64, steps: int = 200, naive_models: int | None = None,
              repeats: int = 3, compile: bool = False) -> dict:
    """Model-steps/s of both paths (best of `repeats` alternating runs) and their ratio."""
    base = study.config("quick", **study.bench_config)
    cfgs = [base.replace(seed=i) for i in range(models)]
    k = min(models, naive_models or 8)
    t0 = time.perf_counter()
    train_seconds(study, cfgs, device, 2, compile)  # warm-up: allocator, kernels, compilation
    warmup = time.perf_counter() - t0
    train_seconds(study, cfgs[:1], device, 2)
    ens, naive = [], []
    for _ in range(repeats):
        ens.append(train_seconds(study, cfgs, device, steps, compile))
        alone = [train_seconds(study, [c], device, steps) for c in cfgs[:k]]
        naive.append((sum(t for t, _ in alone), sum(n for _, n in alone)))
    ens_rate, naive_rate = _best_rate(ens), _best_rate(naive)
    return {
        "study": study.name,
        "ensemble_model_steps_per_s": ens_rate,
        "naive_model_steps_per_s": naive_rate,
        "ratio": ens_rate / naive_rate,
        "device": f"{device} ({machine_description(str(device))})",
        "models": models,
        "steps": steps,
        "timed": "training step only" if study.bench is not None else "train_group at steps minus at 1 step",
        "config": study.bench_config,
        "naive_models_timed": k,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "compile": compile,
        "warmup_seconds": warmup,  # the first 2 steps, compilation included (not in the rates)
        "torch": torch.__version__,
    }
