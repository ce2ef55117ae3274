"""The one ensemble trainer: per-model losses, an optimizer acting per model, a NaN/inf guard, curves.

Losses are per-model means, summed over models for one backward pass: models share no parameters, so
each model's gradient is exactly its own, and both optimizers act elementwise with per-model ([E])
learning rates. A model whose loss or gradient becomes non-finite is frozen at its last finite weights
and recorded in `diverged_at`; the others carry on.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from theorylab.core.ensemble import expand_to

# loss_fn(params, step) -> {"loss": [E], ...}: per-model means over the batch (other entries are curves).
LossFn = Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]
# probe_fn(params, step) -> {name: [E]}: recorded at checkpoints (e.g. attention concentration).
ProbeFn = Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]
# grad_fn(params, step) -> (out, backward): what loss_fn returns, and backward(w [E]) -> the gradients of
# sum_e w_e loss_e with respect to the trainable weights (in their order), which the study computes itself. A study
# whose gradient is written out by hand gives one and skips autograd: the weights need no requires_grad and no graph
# is recorded (for a tiny network at E = 64, the engine's own cost per step is a good part of the step).
Backward = Callable[[torch.Tensor], Sequence[torch.Tensor]]
GradFn = Callable[[dict[str, torch.Tensor], int], tuple[dict[str, torch.Tensor], Backward]]


@dataclass(frozen=True)
class SGD:
    """p <- p - lr_e g (the papers' plain SGD)."""

    def init(self, params: dict[str, torch.Tensor]) -> dict:
        return {}

    @torch.no_grad()
    def update(self, params, grads, lr: torch.Tensor, state: dict, step: int) -> None:
        # p.sub_(lr g) for every parameter, as two foreach calls (the same per-tensor kernels on CPU, so the same
        # numbers bit for bit: tests/core/test_train.py; two Python-level ops a step instead of three per parameter)
        g = list(grads.values())
        if not g:
            return
        if state.get("lr") is not lr:  # lr [E] viewed against each gradient, kept while the trainer passes the same lr
            state["lr"], state["lr_views"] = lr, [expand_to(lr, x) for x in g]
        torch._foreach_sub_([params[name] for name in grads], torch._foreach_mul(g, state["lr_views"]))


@dataclass(frozen=True)
class AdamW:
    """torch.optim.AdamW's update (decoupled weight decay, bias correction), with per-model lr [E]."""
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def init(self, params: dict[str, torch.Tensor]) -> dict:
        # moments of every parameter, allocated once (not per step); "buf" is update()'s scratch per parameter
        return {"m": {}, "v": {}, "buf": {}}

    @torch.no_grad()
    def update(self, params, grads, lr: torch.Tensor, state: dict, step: int) -> None:
        b1, b2 = self.betas
        t = step + 1
        step_size = lr / (1 - b1**t)  # [E]
        bc2_sqrt = (1 - b2**t) ** 0.5
        decay = lr * self.weight_decay  # [E]
        for name, g in grads.items():
            p = params[name]
            if name not in state["m"]:
                state["m"][name], state["v"][name], state["buf"][name] = (torch.zeros_like(p) for _ in range(3))
            m, v, buf = state["m"][name], state["v"][name], state["buf"][name]
            p.mul_(1 - expand_to(decay, p))
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            torch.sqrt(v, out=buf).div_(bc2_sqrt).add_(self.eps)  # denominator sqrt(v_hat) + eps
            torch.div(m, buf, out=buf).mul_(expand_to(step_size, p))  # m / denom * step size, in that order
            p.sub_(buf)


OPTIMIZERS = {"sgd": SGD, "adamw": AdamW}


@dataclass
class TrainResult:
    params: dict[str, torch.Tensor]  # final weights, [E, ...]
    curve_steps: list[int]  # steps at which curves were recorded
    curves: dict[str, torch.Tensor]  # name -> [T, E] (CPU)
    diverged_at: torch.Tensor  # [E] int: first step with a non-finite loss or gradient, -1 if none
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    def model_curves(self, e: int, suffix: str = "", step_key: str = "step") -> dict[str, list]:
        """Model e's curves as plain lists, names suffixed (for a cell record)."""
        return {step_key: self.curve_steps, **{f"{k}{suffix}": v[:, e].tolist() for k, v in self.curves.items()}}


def curve_steps(steps: int, points: int) -> list[int]:
    """Checkpoints 0, ..., steps (about `points` of them, always including both ends)."""
    stride = max(1, steps // max(1, points))
    marks = list(range(0, steps, stride))
    return marks + [steps] if marks[-1] != steps else marks


def _finite_per_model(g: torch.Tensor) -> torch.Tensor:
    """[E, ...] -> [E] bool: every entry of the model's slice is finite. max |g| is NaN or inf exactly when
    some entry is (amax propagates NaN), and takes one pass instead of isfinite's four (10x faster on CPU)."""
    if g[0].numel() == 0:
        return torch.ones(g.shape[0], dtype=torch.bool, device=g.device)
    return torch.isfinite(g.flatten(1).abs().amax(1))


def _all_finite_per_model(grads: Sequence[torch.Tensor], E: int, device) -> torch.Tensor:
    """[E] bool: every entry of model e's slice of every gradient is finite (_finite_per_model of each, and-ed).
    max |g| per gradient, then one check over all of them: 2 k + 3 ops for k gradients instead of 7 k (isfinite
    is four), which is a good part of the trainer's own cost per step for a small model (the same booleans:
    tests/core/test_train.py). (torch.aminmax would save the |g| copy but is not vectorized on CPU: 10x slower.)
    Tiny gradients are concatenated first (ONE_COPY_BELOW): max |g| over the model's entries of all of them, the
    same booleans (amax propagates NaN either way)."""
    sized = [g for g in grads if math.prod(g.shape[1:])]
    if not sized:
        return torch.ones(E, dtype=torch.bool, device=device)
    if sum(g.numel() for g in sized) <= ONE_COPY_BELOW:  # tiny gradients: one copy of all, one |.|, one max
        return torch.cat([g.flatten(1) for g in sized], 1).abs_().amax(1) < math.inf
    return torch.stack([g.flatten(1).abs().amax(1) for g in sized]).amax(0) < math.inf


# Gradients with at most this many entries in all (all models) are checked as one copy: k + 4 ops instead of 2 k + 3,
# where each op's fixed cost outweighs one more pass over them (the dqn step: 22k entries at E = 64).
ONE_COPY_BELOW = 1 << 15


def train_ensemble(params: dict[str, torch.Tensor], trainable: list[str], loss_fn: LossFn,
                   lr: torch.Tensor, steps: int, *, optimizer: SGD | AdamW = SGD(), probe_fn: ProbeFn | None = None,
                   curve_points: int = 50, on_step: Callable[[int], None] | None = None,
                   grad_fn: GradFn | None = None) -> TrainResult:
    """Trains every model of the ensemble at once; lr is [E]. Returns the final weights and curves. grad_fn: called
    instead of loss_fn at every step, its backward instead of autograd (the same loss, written out by hand)."""
    t0 = time.perf_counter()
    E = lr.shape[0]
    device = lr.device
    params = {k: v.detach().clone() for k, v in params.items()}
    state = optimizer.init(params)
    active = torch.ones(E, dtype=torch.bool, device=device)
    diverged_at = torch.full((E,), -1, dtype=torch.long, device=device)
    marks = curve_steps(steps, curve_points)
    mark_set = set(marks)
    rows: dict[str, list[torch.Tensor]] = {}

    def record(values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            # a copy: a probe may return a view of a weight that later steps update in place
            rows.setdefault(k, []).append(v.detach().to(torch.float32, copy=True))

    for step in range(steps + 1):
        if grad_fn is None:
            for k in trainable:
                params[k].requires_grad_(step < steps)
            out = loss_fn(params, step)
        else:
            out, backward = grad_fn(params, step)
        loss = out["loss"]
        if step in mark_set:
            with torch.no_grad():
                record(out)
                if probe_fn is not None:
                    record(probe_fn(params, step))
        if step == steps:
            break
        finite = torch.isfinite(loss)
        # d/dp of sum_e [loss_e finite] loss_e: the mask as the loss's incoming gradient (what where(finite, loss,
        # 0).sum() hands back, bit for bit, without its two ops and their two backward nodes)
        if grad_fn is None:
            grads = torch.autograd.grad(loss, [params[k] for k in trainable], grad_outputs=finite.to(loss.dtype))
        else:
            grads = backward(finite.to(loss.dtype))
        ok = active & finite & _all_finite_per_model(grads, E, device)
        step_lr = lr
        if not bool(ok.all()):  # a model diverged now or before (while none has, this is skipped: same numbers)
            diverged_at = torch.where(active & ~ok, torch.full_like(diverged_at, step), diverged_at)
            active = ok
            # frozen models get a zero gradient and a zero learning rate: their weights stay where they were
            grads = [torch.where(expand_to(active, g), g, 0.0) for g in grads]
            step_lr = lr * active
        optimizer.update(params, dict(zip(trainable, grads)), step_lr, state, step)
        if on_step is not None:
            on_step(step + 1)
    params = {k: v.detach() for k, v in params.items()}
    curves = {k: torch.stack(v).cpu() for k, v in rows.items()}
    return TrainResult(params, marks, curves, diverged_at.cpu(), time.perf_counter() - t0)
