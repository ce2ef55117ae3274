"""Memory of one model, measured by a dry run rather than written by hand.

A dry run trains a group of one model for a step (the study's `dry_run` overrides, e.g. steps = 1) and
evaluates it, on the CPU, while a dispatch mode counts the bytes of every tensor storage alive
at once. The peak is a property of the program, not of the machine: the same on any host, noise-free, and it
includes what autograd saves for the backward pass and the evaluation's blocks. That one peak, counted per
model, bounds what a chunk needs; where the bound says a chunk would not fit, groups of two and four models
are measured too: per-model bytes are half the difference of their peaks (what one more model adds) and the
rest is what the group shares (a data set, an MDP). Results are cached per group key: cells that train as one ensemble have the same memory.
"""
from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from theorylab.core.config import StudyConfig
from theorylab.core.progress import QUIET

FLOOR = 1 << 16  # a model is never estimated below 64 KiB (curves, records, Python objects)


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages alive at once (the peak) while active. Views share their storage's
    count; a storage is freed when its last tensor is."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # data_ptr -> [bytes, tensors holding it]
        self.now = self.peak = 0

    def _drop(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.now -= entry[0]
                del self.live[key]

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key == 0:  # an empty tensor
            return
        if key in self.live:
            self.live[key][1] += 1
        else:
            self.live[key] = [storage.nbytes(), 1]
            self.now += storage.nbytes()
            self.peak = max(self.peak, self.now)
        weakref.finalize(t, self._drop, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t)
        return out


@dataclass(frozen=True)
class Footprint:
    per_model: int  # bytes one more model adds
    shared: int  # bytes the group needs whatever its size
    exact: bool = True  # False: an upper bound (one model's whole peak, counted as per model)

    def bytes_for(self, models: int) -> int:
        return self.shared + models * self.per_model


_CACHE: dict[str, Footprint] = {}
_BOUND: dict[str, Footprint] = {}


def dry_run_config(study, cfg: StudyConfig) -> StudyConfig:
    """The config a dry run trains: each field in the study's `dry_run` lowered to at most its value there (steps
    to 1; a test set evaluated in blocks to one block). Fields the config does not have are skipped."""
    changes = {k: min(getattr(cfg, k), v) for k, v in study.dry_run.items() if k in type(cfg).model_fields}
    return cfg.replace(**changes)


def peak_bytes(study, cfgs: list[StudyConfig]) -> int:
    """Peak live tensor bytes of training and grading `cfgs` as one ensemble on the CPU."""
    meter = LiveBytes()
    gc.collect()
    gc.disable()  # tensors held in reference cycles are freed when the collector happens to run: keep it still,
    try:          # so the count is the same on every run (an upper bound: cyclic garbage stays counted)
        with meter:
            study.train_group(cfgs, torch.device("cpu"), QUIET)
    finally:
        gc.enable()
    return meter.peak


def footprint(study, cfg: StudyConfig, fits: tuple[int, int] | None = None) -> Footprint:
    """Measured memory of `cfg`'s group (cached by group key). fits = (models, budget bytes): when one metered
    single-model run already shows that `models` models fit the budget with that run's whole peak counted per
    model (an upper bound: it includes the group's shared bytes and the tables a study caches on first use), that
    bound is returned and the exact two-group measurement is skipped (it costs two more runs)."""
    key = f"{study.name}:{cfg.group_key()}"
    if key in _CACHE:
        return _CACHE[key]
    base = dry_run_config(study, cfg)
    group = [base.replace(seed=base.seed + i) for i in range(4)]
    if key not in _BOUND:
        _BOUND[key] = Footprint(max(FLOOR, peak_bytes(study, group[:1])), 0, exact=False)
    bound = _BOUND[key]
    if fits is not None and fits[0] * bound.per_model <= fits[1]:
        return bound
    p2, p4 = peak_bytes(study, group[:2]), peak_bytes(study, group)  # after the single run: caches are warm
    per = max(FLOOR, (p4 - p2) // 2)
    _CACHE[key] = Footprint(per, max(0, p2 - 2 * per))
    return _CACHE[key]


def bytes_per_model(study, cfg: StudyConfig) -> int:
    """What one model of `cfg`'s group needs when trained alone (its share plus the group's shared bytes): the
    number the cost guard compares with the budget."""
    fp = footprint(study, cfg)
    return fp.per_model + fp.shared
