"""The study protocol: a study says what one ensemble trains on and how the trained weights are graded;
core does the rest (random streams, progress, the training loop, divergence, per-model records).

A study's `training(cfgs, rng, device) -> Training` builds its data model and initial weights, and returns
the loss, the probes and a `grade` function. `trainer(name, training)` turns that into the `TrainGroup` the
sweep calls. Everything here is the same for every study, so a study's train.py holds only its science:
which data, which loss, which numbers it reports.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from theorylab.core.config import StudyConfig
from theorylab.core.ensemble import rng_for
from theorylab.core.progress import Bars
from theorylab.core.rng import EnsembleRNG
from theorylab.core.study import GroupResult, TrainGroup, group_result
from theorylab.core.train import SGD, AdamW, LossFn, ProbeFn, TrainResult, train_ensemble


@dataclass
class Graded:
    """What a study reports for the trained ensemble: metrics {name: [E]}, and the weights to store (default:
    the trained ones). `curves` adds per-model curves beside the training curves (same steps)."""
    metrics: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor] | None = None


GradeFn = Callable[[TrainResult], "Graded | dict[str, torch.Tensor]"]


@dataclass
class Training:
    """One ensemble's training as a study sets it up. Tensors carry the model axis first ([E, ...])."""
    params: dict[str, torch.Tensor]  # initial weights                                                [E, ...]
    trainable: Sequence[str]
    loss: LossFn  # (params, step) -> {"loss": [E], other per-model curves [E]}
    lr: torch.Tensor  # [E]
    steps: int
    grade: GradeFn  # trained result -> metrics (and the weights to store)
    what: str = "SGD steps"  # progress label: "{study}: E model(s) x {steps} {what}"
    optimizer: SGD | AdamW = field(default_factory=SGD)
    probes: ProbeFn | None = None  # recorded at the curve checkpoints
    curve_points: int = 50


TrainingFn = Callable[[Sequence[StudyConfig], EnsembleRNG, torch.device], Training]


def run_training(name: str, cfgs: Sequence[StudyConfig], tr: Training, bars: Bars) -> GroupResult:
    """Trains `tr` and grades it: the part of every study's group training that is not its science."""
    E = len(cfgs)
    with bars.task(f"{name}: {E} model(s) x {tr.steps} {tr.what}", tr.steps, models=E) as advance:
        res = train_ensemble(tr.params, list(tr.trainable), tr.loss, tr.lr, tr.steps, optimizer=tr.optimizer,
                             probe_fn=tr.probes, curve_points=tr.curve_points, on_step=advance)
    graded = tr.grade(res)
    if not isinstance(graded, Graded):
        graded = Graded(graded)
    metrics = {"train_loss": res.curves["loss"][-1], **graded.metrics}
    params = res.params if graded.params is None else graded.params
    return group_result(params, metrics, [res.model_curves(e) for e in range(E)], res.diverged_at, res.seconds)


def trainer(name: str, training: TrainingFn) -> TrainGroup:
    """The TrainGroup of a study that follows the protocol."""
    def train_group(cfgs: Sequence[StudyConfig], device: torch.device, bars: Bars) -> GroupResult:
        return run_training(name, cfgs, training(cfgs, rng_for(cfgs, device), device), bars)

    train_group.training = training  # type: ignore[attr-defined]  # conformance tests read it
    return train_group
