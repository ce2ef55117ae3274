"""Studies: one per paper. A study is data + model + claims + plots, registered by name."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from theorylab.core.config import StudyConfig, ensure_fields, make_config
from theorylab.core.progress import Bars


@dataclass
class GroupResult:
    """What training one ensemble group returns: weights [E, ...] and per-model results."""
    params: dict[str, torch.Tensor]
    metrics: list[dict[str, Any]]
    curves: list[dict[str, list[float]]]
    status: list[str]
    seconds: float


TrainGroup = Callable[[Sequence[StudyConfig], torch.device, Bars], GroupResult]


@dataclass
class Study:
    name: str
    title: str
    paper: str
    config_cls: type[StudyConfig]
    train_group: TrainGroup
    sizes: dict[str, dict[str, Any]]  # size name -> field overrides over the config defaults
    claims: list = field(default_factory=list)  # list[core.claims.Claim]
    plots: dict[str, Callable[[dict, Any], None]] = field(default_factory=dict)  # figure name -> fn(data, path)
    bytes_per_model: Callable[[StudyConfig], int] | None = None  # memory estimate for auto-chunking
    model_steps: Callable[[StudyConfig], int] | None = None  # optimizer steps one cell takes (default: cfg.steps)

    def config(self, size: str = "quick", **overrides: Any) -> StudyConfig:
        if size not in self.sizes:
            raise ValueError(f"--size must be one of {', '.join(self.sizes)} (got {size!r})")
        ensure_fields(self.config_cls, overrides.keys(), "--set")
        return make_config(self.config_cls, {**self.sizes[size], **overrides})

    def seed_configs(self, size: str, seeds: int, **overrides: Any) -> list[StudyConfig]:
        """`seeds` configs that differ only in `seed` (seed, seed+1, ...; base seed from overrides)."""
        if seeds < 1:
            raise ValueError(f"--seeds must be >= 1 (got {seeds})")
        base = self.config(size, **overrides)
        return [base.replace(seed=base.seed + i) for i in range(seeds)]


_REGISTRY: dict[str, Callable[[], Study]] = {}


def register_study(name: str):
    """Decorator for a zero-argument function returning the Study (imported lazily)."""
    def deco(fn: Callable[[], Study]) -> Callable[[], Study]:
        _REGISTRY[name] = fn
        return fn
    return deco


def get_study(name: str) -> Study:
    import theorylab.studies  # noqa: F401  (registers the built-in studies)

    if name not in _REGISTRY:
        raise KeyError(f"unknown study {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def study_names() -> list[str]:
    import theorylab.studies  # noqa: F401

    return sorted(_REGISTRY)
