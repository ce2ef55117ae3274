"""Pre-training Psi0 (optional) and fine-tuning it on T1 and T2 (section 1.3): hinge loss, plain SGD,
fresh sequences every step. Both tasks of a cell start from the same Psi0 with the same (lr, B, steps),
and are trained as one ensemble of 2E models (core.ensemble.tile: model t*E + e is task t of cell e).

A cell's stored weights: W0, V0 (Psi0), a, and W_T1, V_T1, W_T2, V_T2 (the fine-tuned Psi*_T).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value, tile, untile
from theorylab.core.losses import hinge, sign_error
from theorylab.core.protocol import Graded, Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import SGD, train_ensemble
from theorylab.studies.task_vectors.config import TaskVectorConfig
from theorylab.studies.task_vectors.data import TASKS, sample, task_pattern
from theorylab.studies.task_vectors.model import TRAINABLE, forward, init_params


def sgd_on_tasks(cfgs, rng: EnsembleRNG, params, patterns: list[torch.Tensor], steps: int, stream: str) -> Training:
    """SGD on len(patterns) tasks at once from `params` ([E, ...], tiled per task: model t*E + e is task t of e)."""
    T = len(patterns)
    B = shared_value(cfgs, "B")

    def loss_fn(p, step):
        batches = [sample(cfgs, mu, rng, B, stream, t, step) for t, mu in enumerate(patterns)]
        X, y = torch.cat([b.X for b in batches]), torch.cat([b.y for b in batches])  # [T*E, B, P, d], [T*E, B]
        f = forward(p, X)
        return {"loss": hinge(f, y), "error": sign_error(f, y)}

    return Training({k: tile(v, T) for k, v in params.items()}, TRAINABLE, loss_fn,
                    tile(scalar_tensor(cfgs, "lr", patterns[0].device), T), steps, grade=lambda res: {},
                    optimizer=SGD(), curve_points=shared_value(cfgs, "curve_points"))


def pretrained(cfgs: Sequence[TaskVectorConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    """Psi0: random init (option A), or that init pre-trained on the orthogonal task e_{d-1} (option B)."""
    params = init_params(cfgs, rng, device)
    n = shared_value(cfgs, "pretrain_steps")
    if n == 0:
        return params
    pre = sgd_on_tasks(cfgs, rng, params, [task_pattern(cfgs, "pre", device)], n, "pretrain")
    return train_ensemble(pre.params, list(pre.trainable), pre.loss, pre.lr, n, optimizer=pre.optimizer,
                          curve_points=pre.curve_points).params


def training(cfgs: Sequence[TaskVectorConfig], rng: EnsembleRNG, device: torch.device) -> Training:
    T = len(TASKS)
    psi0 = pretrained(cfgs, rng, device)
    tr = sgd_on_tasks(cfgs, rng, psi0, [task_pattern(cfgs, t, device) for t in TASKS], shared_value(cfgs, "steps"),
                      "finetune")

    def grade(res):
        out = {"W0": psi0["W"], "V0": psi0["V"], "a": psi0["a"]}
        out.update({f"{k}_{name}": untile(res.params[k], T)[t] for k in TRAINABLE for t, name in enumerate(TASKS)})
        final = {f"train_error_{name}": untile(res.curves["error"][-1], T)[t] for t, name in enumerate(TASKS)}
        return Graded(final, params=out)

    tr.grade, tr.copies, tr.what = grade, TASKS, "SGD steps (fine-tuning, one copy per task)"
    return tr
