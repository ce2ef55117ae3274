"""Evaluation and the measurements the claims share: test error and hinge risk on fresh samples, the
updates' singular spectra, principal angles to the label-relevant span, rank-r truncation (theorylab.edit's
low_rank) and W_O row pruning (theorylab.edit's prune_rows_count)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, shared_value
from theorylab.core.evaluate import mean_over_blocks
from theorylab.shared.task_arithmetic import guard_finite
from theorylab.core.losses import hinge, sign_error
from theorylab.edit import low_rank
from theorylab.studies.lowrank.config import LowRankConfig
from theorylab.studies.lowrank.data import sample
from theorylab.studies.lowrank.model import ATTENTION, forward_fast


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], cfgs: Sequence[LowRankConfig], stream: tuple = ("eval",),
             n: int | None = None) -> dict[str, torch.Tensor]:
    """Sign error and hinge risk [E] on n fresh test samples (blocks keyed per model: a cell's numbers do not
    depend on its ensemble). The test set is the same for every call: `stream` only names the caller."""
    E, n = len(cfgs), n or shared_value(cfgs, "n_test")
    rng = rng_for(cfgs, params["W_O"].device)
    L, d, m = (shared_value(cfgs, k) for k in ("L", "d", "m"))

    def block(models: slice, i: int, count: int) -> dict[str, torch.Tensor]:
        b = sample([cfgs[j] for j in range(E)[models]], rng.subset(models), count, "test", i)
        F = forward_fast({k: v[models] for k, v in params.items()}, b.X)  # model.forward's numbers (tested)
        return {"error": sign_error(F, b.y), "loss": hinge(F, b.y)}

    return mean_over_blocks(E, n, L * (L + d + m), block)


def updates(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{W_Q, W_K, W_V, W_O: W - W^(0)} [E, ...]."""
    return {w: params[w] - params[f"{w}0"] for w in (*ATTENTION, "W_O")}


def spectrum(dW: torch.Tensor) -> torch.Tensor:
    """[E, d, d] -> singular values [E, d], largest first."""
    return guard_finite(lambda x: torch.linalg.svdvals(x.double()).float(), dW)  # a diverged model's are NaN


def effective_rank(s: torch.Tensor, rel: float) -> torch.Tensor:
    """[E, r] singular values -> [E]: how many are >= rel x the largest."""
    return (s >= rel * s[:, :1]).sum(-1)


def energy_top(s: torch.Tensor, k: int) -> torch.Tensor:
    """[E]: share of ||dW||_F^2 in the top k singular values."""
    e = s.double() ** 2
    return (e[:, :k].sum(-1) / e.sum(-1).clamp_min(1e-300)).float()


def principal_angles(dW: torch.Tensor, span: torch.Tensor, k: int, side: str) -> torch.Tensor:
    """Principal angles [E, k] (radians, smallest first) between the top-k left ("left": column space) or right
    ("right": row space) singular subspace of dW [E, d, d] and span [d, k'] (orthonormal columns)."""
    def angles(x: torch.Tensor) -> torch.Tensor:
        u, _, vh = torch.linalg.svd(x.double())
        sub = u[..., :k] if side == "left" else vh[..., :k, :].transpose(-1, -2)  # [E, d, k]
        cos = torch.linalg.svdvals(sub.transpose(-1, -2) @ span.double())  # [E, min(k, k')]
        return torch.arccos(cos.clamp(-1, 1)).float()
    return guard_finite(angles, dW)


def truncated(params: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """W_Q, W_K, W_V replaced by W^(0) + the best rank-r approximation of their updates (W_O kept)."""
    up = updates(params)
    return {**params, **{w: params[f"{w}0"] + guard_finite(lambda x: low_rank(x, rank=rank, model_axis=True), up[w])
                       for w in ATTENTION}}
