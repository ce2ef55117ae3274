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
    seconds: float  # the training loop's (what each cell stores its share of)
    wall_seconds: float | None = None  # the whole train_group call (set-up, training, grading), set by the backend


TrainGroup = Callable[[Sequence[StudyConfig], torch.device, Bars], GroupResult]


def group_result(params: dict[str, torch.Tensor], metrics: dict[str, torch.Tensor], curves: list[dict],
                 diverged_at: torch.Tensor, seconds: float) -> GroupResult:
    """Per-model records from ensemble tensors: metrics {name: [E]}, diverged_at [E] (-1: did not diverge).
    A model whose final weights are not finite is recorded as diverged whatever diverged_at says."""
    E = diverged_at.shape[0]
    finite = torch.stack([torch.isfinite(v).flatten(1).all(1).cpu() for v in params.values()]).all(0)
    rows = [{**{k: float(v[e]) for k, v in metrics.items()}, "diverged_at": int(diverged_at[e])} for e in range(E)]
    status = ["diverged" if int(diverged_at[e]) >= 0 or not bool(finite[e]) else "done" for e in range(E)]
    return GroupResult(params, rows, curves, status, seconds)


@dataclass
class Study:
    name: str
    title: str
    paper: str
    config_cls: type[StudyConfig]
    sizes: dict[str, dict[str, Any]]  # size name -> field overrides over the config defaults
    # the protocol (core.protocol): training(cfgs, rng, device) -> Training; core builds train_group from it
    training: Callable | None = None
    # a study whose training is not one loss minimised by one loop (dqn's outer iterations) gives its own
    train_group: TrainGroup | None = None
    claims: list = field(default_factory=list)  # list[core.claims.Claim]
    plots: dict[str, Callable[[dict, Any], None]] = field(default_factory=dict)  # figure name -> fn(data, path)
    # caps that make a run short for the dry run that measures memory (core.memory): each field is lowered to at
    # most this value (steps to 1; a test set evaluated in blocks to one block, which is all its memory sees)
    dry_run: dict[str, Any] = field(default_factory=lambda: {"steps": 1})
    eval_tokens: Callable[[StudyConfig], int] | None = None  # test tokens one evaluation reads (cost guard)
    model_steps: Callable[[StudyConfig], int] | None = None  # optimizer steps one cell takes (default: cfg.steps)
    tiny: dict[str, Any] = field(default_factory=dict)  # overrides that train in about a second (conformance tests)
    # max |ensemble forward - per-example reference| on trained weights (conformance tests)
    forward_check: Callable[[Sequence[StudyConfig], dict[str, torch.Tensor], torch.device], float] | None = None
    default_seeds: dict[str, int] = field(default_factory=lambda: {"quick": 5, "full": 10})
    # seconds of `steps` bare training steps of an ensemble (no evaluation), for `theorylab bench STUDY`;
    # None: bench times train_group (see core.bench)
    bench: Callable[[Sequence[StudyConfig], torch.device, int, bool], float] | None = None
    bench_config: dict[str, Any] = field(default_factory=dict)  # overrides of the quick config for bench
    # valid alternatives for some fields (over `tiny`): the conformance test draws configs from them and asks every
    # claim to run without ERROR (combinations the config rejects are skipped)
    variations: dict[str, tuple] = field(default_factory=dict)
    # raises core.extras.MissingExtra when the config needs an optional dependency that is not installed; the CLI
    # calls it before anything trains
    needs: Callable[[StudyConfig], None] | None = None
    # theorem maps (`theorylab map`): name -> core.maps.TheoremMap, a measured quantity over two of a theorem's
    # quantities with the theorem's predicted boundary drawn over it
    maps: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.training is None and self.train_group is None:
            raise TypeError(f"study {self.name!r}: give training= (the protocol) or train_group=")
        if self.train_group is None:  # one given explicitly wins (dataclasses.replace in tests swaps it)
            from theorylab.core.protocol import trainer
            self.train_group = trainer(self.name, self.training)

    def bytes_per_model(self, cfg: StudyConfig) -> int:
        """Memory one model of cfg's group needs, measured by a dry run (core.memory)."""
        from theorylab.core.memory import bytes_per_model
        return bytes_per_model(self, cfg)

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
    """The registered study (the built-in ones register when the theorylab package is imported)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown study {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def study_names() -> list[str]:
    return sorted(_REGISTRY)
