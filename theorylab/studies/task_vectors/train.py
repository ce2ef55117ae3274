"""Pre-training Psi0 (optional) and fine-tuning it on T1 and T2 (section 1.3): hinge loss, plain SGD,
fresh sequences every step. Both tasks of a cell start from the same Psi0 with the same (lr, B, steps),
and are trained as one ensemble of 2E models (task-major: model t*E + e is task t of cell e).

A cell's stored weights: W0, V0 (Psi0), a, and W_T1, V_T1, W_T2, V_T2 (the fine-tuned Psi*_T).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult
from theorylab.core.train import train_ensemble
from theorylab.studies.task_vectors.config import TaskVectorConfig
from theorylab.studies.task_vectors.data import TASKS, rng_for, sample, task_pattern
from theorylab.studies.task_vectors.model import TRAINABLE, error, forward, hinge, init_params


def bytes_per_model(cfg: TaskVectorConfig) -> int:
    """Rough peak memory of one cell in training (2 tasks: batch, activations, grads), for auto-chunking."""
    act = cfg.B * cfg.P * (cfg.P + cfg.m + 3 * cfg.d) * 4
    return 2 * (10 * act + 6 * (cfg.d * cfg.d + cfg.m * cfg.d) * 4)


def _tile(x: torch.Tensor, T: int) -> torch.Tensor:
    return x.repeat(T, *([1] * (x.dim() - 1)))  # [E, ...] -> [T*E, ...], task-major


def run_sgd(cfgs, params, patterns: list[torch.Tensor], steps: int, stream: str, bars: Bars):
    """SGD on len(patterns) tasks at once from `params` ([E, ...], tiled per task); returns TrainResult."""
    T, E, dev = len(patterns), len(cfgs), patterns[0].device
    rng = rng_for(cfgs, dev)
    B = shared_value(cfgs, "B")
    start = {k: _tile(v, T) for k, v in params.items()}

    def loss_fn(p, step):
        batches = [sample(cfgs, mu, rng, B, stream, t, step) for t, mu in enumerate(patterns)]
        X = torch.cat([b.X for b in batches])  # [T*E, B, P, d]
        y = torch.cat([b.y for b in batches])  # [T*E, B]
        f = forward(p, X)
        return {"loss": hinge(f, y), "error": error(f, y)}

    lr = _tile(scalar_tensor(cfgs, "lr", dev), T)
    with bars.task(f"task_vectors: {stream} {T * E} model(s) x {steps} SGD steps", steps, models=T * E) as advance:
        return train_ensemble(start, TRAINABLE, loss_fn, lr, steps,
                              curve_points=shared_value(cfgs, "curve_points"), on_step=advance)


def pretrained(cfgs: Sequence[TaskVectorConfig], device, bars: Bars) -> dict[str, torch.Tensor]:
    """Psi0: random init (option A), or that init pre-trained on the orthogonal task e_{d-1} (option B)."""
    params = init_params(cfgs, rng_for(cfgs, device), device)
    n = shared_value(cfgs, "pretrain_steps")
    if n == 0:
        return params
    return run_sgd(cfgs, params, [task_pattern(cfgs, "pre", device)], n, "pretrain", bars).params


def train_group(cfgs: Sequence[TaskVectorConfig], device: torch.device, bars: Bars) -> GroupResult:
    E = len(cfgs)
    psi0 = pretrained(cfgs, device, bars)
    res = run_sgd(cfgs, psi0, [task_pattern(cfgs, t, device) for t in TASKS], shared_value(cfgs, "steps"),
                  "finetune", bars)
    out = {"W0": psi0["W"], "V0": psi0["V"], "a": psi0["a"]}
    for t, name in enumerate(TASKS):
        out[f"W_{name}"] = res.params["W"][t * E : (t + 1) * E]
        out[f"V_{name}"] = res.params["V"][t * E : (t + 1) * E]
    metrics, curves, status = [], [], []
    for e in range(E):
        div = [int(res.diverged_at[t * E + e]) for t in range(len(TASKS))]
        metrics.append({**{f"train_loss_{n}": float(res.curves["loss"][-1, t * E + e]) for t, n in enumerate(TASKS)},
                        **{f"train_error_{n}": float(res.curves["error"][-1, t * E + e]) for t, n in enumerate(TASKS)},
                        "diverged_at": max(div)})
        curves.append({"step": res.curve_steps,
                       **{f"{k}_{n}": res.curves[k][:, t * E + e].tolist() for k in ("loss", "error")
                          for t, n in enumerate(TASKS)}})
        status.append("diverged" if max(div) >= 0 else "done")
    return GroupResult(out, metrics, curves, status, res.seconds)
