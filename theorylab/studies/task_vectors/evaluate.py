"""The task-arithmetic experiment (shared.task_arithmetic) on the eq. (7) model: Psi0 = (W0, V0), the task vectors
dPsi_T = (dW_T, dV_T) of T1 and T2, fresh test sequences of T1, T2 and T', and the model as a metric
(hinge loss, sign error and accuracy of every merge of a coefficient grid)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for
from theorylab.shared.task_arithmetic import Experiment, guard_finite
from theorylab.core.losses import hinge, sign_error
from theorylab.core.measures import rows_below
from theorylab.edit import low_rank
from theorylab.studies.task_vectors.config import TaskVectorConfig
from theorylab.studies.task_vectors.data import TASKS, sample, task_pattern
from theorylab.studies.task_vectors.model import forward, forward_merged

TESTS = (*TASKS, "OOD")


def scores(f: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs f [G, E, n] against labels y [E, n] -> {name: [G, E]}."""
    err = sign_error(f, y)
    return {"loss": hinge(f, y), "error": err, "acc": 1 - err}


def metric(w: dict[str, torch.Tensor], test: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights [G, E, ...] (a: [E, m]) on one test set X [E, n, P, d], y [E, n] -> {name: [G, E]}."""
    return scores(forward(w, test["X"]), test["y"])


def merged_metric(parts: list, coefs: torch.Tensor, fixed: dict[str, torch.Tensor],
                  test: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """metric of every merge Psi0 + sum_i coefs[:, i] dPsi_i (parts = [Psi0, dPsi_1, ...]) without building the
    merges: model.forward_merged combines the parts' attention scores (they are linear in W)."""
    return scores(forward_merged(parts, coefs, fixed["a"], test["X"]), test["y"])


def experiment(cfgs: Sequence[TaskVectorConfig], params: dict[str, torch.Tensor], device) -> Experiment:
    rng, (n, P, m) = rng_for(cfgs, device), (cfgs[0].n_test, cfgs[0].P, cfgs[0].m)
    tests = {t: sample(cfgs, task_pattern(cfgs, t, device), rng, n, "test", t) for t in TESTS}
    return Experiment.from_weights({"W": params["W0"], "V": params["V0"]},
                                   {t: {"W": params[f"W_{t}"], "V": params[f"V_{t}"]} for t in TASKS},
                                   {t: {"X": b.X, "y": b.y} for t, b in tests.items()}, metric, {"a": params["a"]},
                                   len(cfgs) * n * P * max(P, m), merged_metric)


def rank1(ex: Experiment) -> Experiment:
    """Cor. 1: the best rank-1 dW and dV per model (truncated SVD); a diverged model's stay NaN."""
    return ex.map_tvs(lambda _, tv: {k: guard_finite(lambda v: low_rank(v, rank=1, model_axis=True), v)
                                  for k, v in tv.items()})


def pruned(ex: Experiment, n_rows: dict[str, torch.Tensor], which: str) -> Experiment:
    """Cor. 2: dV with n_rows[task] [E] rows of the smallest (which="smallest") or largest norm zeroed per model;
    dW untouched."""
    def prune(v: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        norms = v.norm(dim=-1)
        drop = rows_below(norms if which == "smallest" else -norms, n.to(v.device))  # [E, m]
        return v * (~drop)[..., None].to(v.dtype)
    return ex.map_tvs(lambda t, tv: {**tv, "V": prune(tv["V"], n_rows[t])})
