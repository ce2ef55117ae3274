"""Task vectors and merged models, evaluated on fresh test sequences.

Task vectors come from the shared editing module: dPsi_T = TaskVector(Psi0, Psi*_T) on the state dict
{"W": [E, d, d], "V": [E, m, d]} (model axis first). A merge Psi0 + sum_i lambda_i dPsi_Ti (eq. 6) is
built for a whole lambda grid at once: weights [G, E, ...], evaluated against one test batch [E, n, P, d].
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.ensemble import over_grid
from theorylab.edit import TaskVector, low_rank_state, prune_rows_state
from theorylab.studies.task_vectors.config import TaskVectorConfig
from theorylab.studies.task_vectors.data import TASKS, Batch, rng_for, sample, task_pattern
from theorylab.studies.task_vectors.model import error, forward, hinge


@dataclass
class Experiment:
    """One group of cells: Psi0, the task vectors of T1 and T2, and test sets (T1, T2, OOD)."""
    cfgs: list[TaskVectorConfig]
    base: dict[str, torch.Tensor]  # {"W": [E, d, d], "V": [E, m, d]}
    a: torch.Tensor  # [E, m]
    tvs: dict[str, TaskVector]  # "T1", "T2" -> TaskVector with [E, ...] tensors
    tests: dict[str, Batch]  # "T1", "T2", "OOD" -> [E, n, P, d]

    def with_tvs(self, tvs: dict[str, TaskVector]) -> "Experiment":
        return Experiment(self.cfgs, self.base, self.a, tvs, self.tests)

    def subset(self, idx: list[int]) -> "Experiment":
        pick = lambda t: t[idx]
        return Experiment([self.cfgs[i] for i in idx], {k: pick(v) for k, v in self.base.items()}, pick(self.a),
                          {k: TaskVector(vector={n: pick(v) for n, v in tv.items()}) for k, tv in self.tvs.items()},
                          {k: Batch(pick(b.X), pick(b.y), pick(b.kind)) for k, b in self.tests.items()})


def experiment(cfgs: Sequence[TaskVectorConfig], params: dict[str, torch.Tensor], device) -> Experiment:
    base = {"W": params["W0"], "V": params["V0"]}
    tvs = {t: TaskVector(base, {"W": params[f"W_{t}"], "V": params[f"V_{t}"]}) for t in TASKS}
    rng = rng_for(cfgs, device)
    n = cfgs[0].n_test
    tests = {t: sample(cfgs, task_pattern(cfgs, t, device), rng, n, "test", t) for t in (*TASKS, "OOD")}
    return Experiment(list(cfgs), base, params["a"], tvs, tests)


def low_rank_tvs(tvs: dict[str, TaskVector], rank: int = 1) -> dict[str, TaskVector]:
    """Cor. 1: rank-r dW and dV per model (truncated SVD, theorylab.edit.low_rank_state)."""
    return {k: TaskVector(vector=low_rank_state(tv, rank=rank, model_axis=True)) for k, tv in tvs.items()}


def pruned_tvs(tvs: dict[str, TaskVector], fraction: float, which: str) -> dict[str, TaskVector]:
    """Cor. 2: zero the `fraction` of dV rows with the smallest (or largest) norm; dW untouched."""
    return {k: TaskVector(vector=prune_rows_state(tv, ["V"], fraction, which, model_axis=True))
            for k, tv in tvs.items()}


def merged(ex: Experiment, lambdas: torch.Tensor) -> dict[str, torch.Tensor]:
    """lambdas [G, 2] (coefficients of dPsi_T1, dPsi_T2) -> weights [G, E, ...]:
    Psi = Psi0 + lambda_1 dPsi_T1 + lambda_2 dPsi_T2 (eq. 6)."""
    G = lambdas.shape[0]
    coef = lambdas.to(ex.a.device)[:, :, None, None, None]  # [G, 2, 1, 1, 1] broadcasts over [E, rows, cols]
    delta = sum((ex.tvs[t] * coef[:, i] for i, t in enumerate(TASKS)))  # TaskVector with [G, E, ...] tensors
    base = {k: v.expand(G, *v.shape) for k, v in ex.base.items()}
    out = delta.apply_to(base)
    out["a"] = ex.a.expand(G, *ex.a.shape)
    return out


@torch.no_grad()
def evaluate_grid(ex: Experiment, lambdas: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
    """Hinge loss and sign error [G, E] of every merge of the grid on `task`'s test set."""
    b = ex.tests[task]
    E, n, P, _ = b.X.shape

    def chunk(part: slice) -> dict[str, torch.Tensor]:
        f = forward(merged(ex, lambdas[part]), b.X)  # [g, E, n]
        return {"loss": hinge(f, b.y), "error": error(f, b.y)}

    return over_grid(lambdas.shape[0], E * n * P * max(P, ex.a.shape[-1]), chunk)
