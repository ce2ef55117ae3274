"""The generic training loop over an ensemble: per-model losses, SGD, NaN guard, curves."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from theorylab.core.ensemble import sgd_step

# loss_fn(params, step) -> {"loss": [E], "error": [E], ...}: per-model means over the batch.
LossFn = Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]
# probe_fn(params, step) -> {name: [E]}: recorded at checkpoints (e.g. attention concentration).
ProbeFn = Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]


@dataclass
class TrainResult:
    params: dict[str, torch.Tensor]  # final weights, [E, ...]
    curve_steps: list[int]  # steps at which curves were recorded
    curves: dict[str, torch.Tensor]  # name -> [T, E] (CPU)
    diverged_at: torch.Tensor  # [E] int: first step with a non-finite loss or gradient, -1 if none
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)


def curve_steps(steps: int, points: int) -> list[int]:
    """Checkpoints 0, ..., steps (about `points` of them, always including both ends)."""
    stride = max(1, steps // max(1, points))
    marks = list(range(0, steps, stride))
    return marks + [steps] if marks[-1] != steps else marks


def train_ensemble(params: dict[str, torch.Tensor], trainable: list[str], loss_fn: LossFn,
                   lr: torch.Tensor, steps: int, *, probe_fn: ProbeFn | None = None,
                   curve_points: int = 50, on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Plain SGD on every model of the ensemble at once (the papers train with plain SGD).

    Losses are per-model means, summed over models for one backward pass: models share no
    parameters, so each model's gradient is exactly its own. A model whose loss or gradient
    becomes non-finite is frozen at its last finite weights and recorded in `diverged_at`;
    the others carry on.
    """
    import time

    t0 = time.perf_counter()
    E = lr.shape[0]
    device = lr.device
    params = {k: v.detach().clone() for k, v in params.items()}
    active = torch.ones(E, dtype=torch.bool, device=device)
    diverged_at = torch.full((E,), -1, dtype=torch.long, device=device)
    marks = curve_steps(steps, curve_points)
    mark_set = set(marks)
    rows: dict[str, list[torch.Tensor]] = {}

    def record(values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            rows.setdefault(k, []).append(v.detach().float())

    for step in range(steps + 1):
        for k in trainable:
            params[k].requires_grad_(step < steps)
        out = loss_fn(params, step)
        loss = out["loss"]
        if step in mark_set:
            with torch.no_grad():
                record({k: v for k, v in out.items()})
                if probe_fn is not None:
                    record(probe_fn(params, step))
        if step == steps:
            break
        finite = torch.isfinite(loss)
        grads = torch.autograd.grad(torch.where(finite, loss, 0.0).sum(), [params[k] for k in trainable])
        was_active = active
        active = sgd_step(params, dict(zip(trainable, grads)), lr, active & finite)
        newly_dead = was_active & ~active
        diverged_at = torch.where(newly_dead, torch.full_like(diverged_at, step), diverged_at)
        if on_step is not None:
            on_step(step + 1)
    params = {k: v.detach() for k, v in params.items()}
    curves = {k: torch.stack(v).cpu() for k, v in rows.items()}
    return TrainResult(params, marks, curves, diverged_at.cpu(), time.perf_counter() - t0)


def adamw(params: dict[str, torch.Tensor], trainable: list[str], loss_fn: Callable, steps: int, lr: float,
          weight_decay: float, curve_points: int, on_step: Callable[[int], None]):
    """AdamW (torch's) on every model at once, for studies whose paper fine-tunes with AdamW.

    The loss is a sum of per-model losses and AdamW acts elementwise, so this is exactly per-model AdamW
    with a shared lr; a model that diverges ruins only its own weights (callers record it).
    loss_fn(params, step) -> {"loss": [M], ...}. Returns (params, curve steps, curves {name: [T, M]})."""
    params = {k: v.detach().clone() for k, v in params.items()}
    for k in trainable:
        params[k].requires_grad_(True)
    opt = torch.optim.AdamW([params[k] for k in trainable], lr=lr, weight_decay=weight_decay)
    marks = set(curve_steps(steps, curve_points))
    rows: dict[str, list[torch.Tensor]] = {}
    for step in range(steps + 1):
        with torch.set_grad_enabled(step < steps):
            out = loss_fn(params, step)
        if step in marks:
            for k, v in out.items():
                rows.setdefault(k, []).append(v.detach().float().cpu())
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        out["loss"].sum().backward()
        opt.step()
        on_step(step + 1)
    return ({k: v.detach() for k, v in params.items()}, sorted(marks), {k: torch.stack(v) for k, v in rows.items()})
