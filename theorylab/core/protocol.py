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
from theorylab.core.ensemble import rng_for, untile
from theorylab.core.progress import Bars
from theorylab.core.rng import EnsembleRNG
from theorylab.core.study import GroupResult, TrainGroup, group_result
from theorylab.core.train import SGD, AdamW, GradFn, LossFn, ProbeFn, TrainResult, train_ensemble


@dataclass
class Graded:
    """What a study reports for the trained ensemble: metrics {name: [E]}, and the weights to store (default:
    the trained ones)."""
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
    # T names when each model trains T copies (one per task, tiled task-major by core.ensemble.tile: params and lr
    # are [T*E, ...]): each copy diverges and is frozen on its own, a model's record holds curve "{k}_{name}" and
    # metric "train_loss_{name}" per copy and diverged_at the latest of its copies; grade gets the [T*E] result
    copies: tuple[str, ...] = ()
    # phases trained inside training() before this one ({"pretrain": TrainResult}): their curves are recorded as
    # "{phase}_step", "{phase}_{k}", their divergence and seconds count for the model
    earlier: dict[str, TrainResult] = field(default_factory=dict)
    # the loss with its gradient written out by hand (core.train.GradFn): when given, the trainer calls it instead of
    # `loss` and autograd; `loss` stays the same loss through autograd (what grad is tested equal to)
    grad: GradFn | None = None

    def train(self, steps: int | None = None, *, probes: bool = True, curve_points: int | None = None,
              on_step: Callable[[int], None] | None = None) -> TrainResult:
        """Runs core's trainer on this training: its loss, optimizer, rate and (unless probes=False) probes, for
        `steps` steps (default: its own) with `curve_points` checkpoints (default: its own). Not graded."""
        return train_ensemble(self.params, list(self.trainable), self.loss, self.lr,
                              self.steps if steps is None else steps, optimizer=self.optimizer,
                              probe_fn=self.probes if probes else None,
                              curve_points=self.curve_points if curve_points is None else curve_points,
                              on_step=on_step, grad_fn=self.grad)


TrainingFn = Callable[[Sequence[StudyConfig], EnsembleRNG, torch.device], Training]


def run_training(name: str, cfgs: Sequence[StudyConfig], tr: Training, bars: Bars) -> GroupResult:
    """Trains `tr` and grades it: the part of every study's group training that is not its science."""
    E, T = len(cfgs), max(1, len(tr.copies))
    with bars.task(f"{name}: {E * T} model(s) x {tr.steps} {tr.what}", tr.steps, models=E * T) as advance:
        res = tr.train(on_step=advance)
    graded = tr.grade(res)
    if not isinstance(graded, Graded):
        graded = Graded(graded)
    if tr.copies:
        final_loss = untile(res.curves["loss"][-1], T)  # [T, E]
        metrics = {**{f"train_loss_{c}": final_loss[t] for t, c in enumerate(tr.copies)}, **graded.metrics}
        curves = [{"step": res.curve_steps, **{f"{k}_{c}": untile(v.T, T)[t, e].tolist() for k, v in res.curves.items()
                                              for t, c in enumerate(tr.copies)}} for e in range(E)]
        diverged = untile(res.diverged_at, T).max(0).values
    else:
        metrics = {"train_loss": res.curves["loss"][-1], **graded.metrics}
        curves = [res.model_curves(e) for e in range(E)]
        diverged = res.diverged_at
    seconds = res.seconds
    for phase, done in tr.earlier.items():
        for e in range(E):
            curves[e].update({f"{phase}_step": done.curve_steps,
                              **{f"{phase}_{k}": v[:, e].tolist() for k, v in done.curves.items()}})
        diverged = torch.maximum(done.diverged_at, diverged)
        seconds += done.seconds
    params = res.params if graded.params is None else graded.params
    return group_result(params, metrics, curves, diverged, seconds)


def trainer(name: str, training: TrainingFn) -> TrainGroup:
    """The TrainGroup of a study that follows the protocol."""
    def train_group(cfgs: Sequence[StudyConfig], device: torch.device, bars: Bars) -> GroupResult:
        return run_training(name, cfgs, training(cfgs, rng_for(cfgs, device), device), bars)

    train_group.training = training  # type: ignore[attr-defined]  # conformance tests read it
    return train_group
