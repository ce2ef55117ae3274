"""Pre-training Psi0 (optional) and fine-tuning it on T1 and T2 (section 1.3): hinge loss, plain SGD,
fresh sequences every step. Both tasks of a cell start from the same Psi0 with the same (lr, B, steps),
and are trained as one ensemble of 2E models (core.ensemble.tile: model t*E + e is task t of cell e).

A cell's stored weights: W0, V0 (Psi0), a, and W_T1, V_T1, W_T2, V_T2 (the fine-tuned Psi*_T).

Why `train_group=` and not the protocol (core.protocol.Training): the fine-tuning ensemble has T models per cell
(one per task), and each diverges and is frozen on its own; a Training has one model per cell, so its loop would
freeze both tasks of a cell when one diverges (different weights and diverged_at for that cell), and it records
neither the per-task curves under one cell nor the pre-training phase's divergence.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value, tile, untile
from theorylab.core.losses import hinge, sign_error
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.core.train import SGD, train_ensemble
from theorylab.studies.task_vectors.config import TaskVectorConfig
from theorylab.studies.task_vectors.data import TASKS, sample, task_pattern
from theorylab.studies.task_vectors.model import TRAINABLE, forward, init_params



def run_sgd(cfgs, params, patterns: list[torch.Tensor], steps: int, stream: str, bars: Bars):
    """SGD on len(patterns) tasks at once from `params` ([E, ...], tiled per task); returns TrainResult."""
    T, E = len(patterns), len(cfgs)
    rng = rng_for(cfgs, patterns[0].device)
    B = shared_value(cfgs, "B")

    def loss_fn(p, step):
        batches = [sample(cfgs, mu, rng, B, stream, t, step) for t, mu in enumerate(patterns)]
        X, y = torch.cat([b.X for b in batches]), torch.cat([b.y for b in batches])  # [T*E, B, P, d], [T*E, B]
        f = forward(p, X)
        return {"loss": hinge(f, y), "error": sign_error(f, y)}

    with bars.task(f"task_vectors: {stream} {T * E} model(s) x {steps} SGD steps", steps, models=T * E) as advance:
        return train_ensemble({k: tile(v, T) for k, v in params.items()}, TRAINABLE, loss_fn,
                              tile(scalar_tensor(cfgs, "lr", patterns[0].device), T), steps, optimizer=SGD(),
                              curve_points=shared_value(cfgs, "curve_points"), on_step=advance)


def pretrained(cfgs: Sequence[TaskVectorConfig], device, bars: Bars) -> dict[str, torch.Tensor]:
    """Psi0: random init (option A), or that init pre-trained on the orthogonal task e_{d-1} (option B)."""
    params = init_params(cfgs, rng_for(cfgs, device), device)
    n = shared_value(cfgs, "pretrain_steps")
    if n == 0:
        return params
    return run_sgd(cfgs, params, [task_pattern(cfgs, "pre", device)], n, "pretrain", bars).params


def train_group(cfgs: Sequence[TaskVectorConfig], device: torch.device, bars: Bars) -> GroupResult:
    T = len(TASKS)
    psi0 = pretrained(cfgs, device, bars)
    res = run_sgd(cfgs, psi0, [task_pattern(cfgs, t, device) for t in TASKS], shared_value(cfgs, "steps"),
                  "finetune", bars)
    out = {"W0": psi0["W"], "V0": psi0["V"], "a": psi0["a"]}
    out.update({f"{k}_{name}": untile(res.params[k], T)[t] for k in TRAINABLE for t, name in enumerate(TASKS)})
    final = {f"train_{k}_{name}": untile(res.curves[k][-1], T)[t] for k in ("loss", "error") for t, name in enumerate(TASKS)}
    curves = [{"step": res.curve_steps, **{f"{k}_{name}": untile(v.T, T)[t, e].tolist() for k, v in res.curves.items()
                                          for t, name in enumerate(TASKS)}} for e in range(len(cfgs))]
    return group_result(out, final, curves, untile(res.diverged_at, T).max(0).values, res.seconds)
