"""Low-rank task vectors: per-matrix truncated SVD (paper 1, Cor. 1: rank 1 suffices in theory).

Matrices are tensors with >= 2 dims (>= 3 with model_axis); conv kernels are flattened to
[out, in * k * k] for the SVD and reshaped back. Vectors (biases, norms) stay dense.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor

from .state import check_fraction


def low_rank(t: Tensor, rank: int | None = None, energy: float | None = None, model_axis: bool = False) -> Tensor:
    """Best rank-r approximation of a matrix (Eckart-Young), per model with model_axis.

    rank: keep r singular values. energy: keep the fewest leading values whose squared sum is at least
    this fraction of the total (so each model of an ensemble may keep a different rank).
    """
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank= (int >= 0) or energy= (fraction in (0, 1])")
    lead = 1 if model_axis else 0
    if t.dim() - lead < 2:
        return t.clone()
    shape = t.shape
    m = t.reshape(*shape[: lead + 1], -1).float()  # [E?, out, rest]
    u, s, vh = torch.linalg.svd(m, full_matrices=False)  # s: [E?, r_max]
    keep = _keep_mask(s, rank, energy)
    approx = (u * (s * keep).unsqueeze(-2)) @ vh
    return approx.reshape(shape).to(t.dtype)


def _keep_mask(s: Tensor, rank: int | None, energy: float | None) -> Tensor:
    idx = torch.arange(s.shape[-1])
    if rank is not None:
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        return (idx < rank).to(s.dtype).expand_as(s)
    check_fraction(energy, "energy")
    e = s.double().pow(2)
    frac_before = (e.cumsum(-1) - e) / e.sum(-1, keepdim=True).clamp_min(1e-300)
    # keep value i while the energy before it is still short of the target
    return (frac_before < energy - 1e-12).to(s.dtype)


def low_rank_state(delta: Mapping[str, Tensor], rank: int | None = None, energy: float | None = None,
                   model_axis: bool = False, include: Callable[[str], bool] | None = None) -> dict[str, Tensor]:
    """Low-rank every matrix of a task vector (or those whose name passes ``include``)."""
    return {k: low_rank(v, rank, energy, model_axis) if (include is None or include(k)) else v.clone()
            for k, v in delta.items()}


def kept_rank(t: Tensor, energy: float, model_axis: bool = False) -> Tensor:
    """How many singular values ``energy`` keeps ([E] with model_axis, else a 0-dim tensor)."""
    lead = 1 if model_axis else 0
    s = torch.linalg.svdvals(t.reshape(*t.shape[: lead + 1], -1).float())
    return _keep_mask(s, None, energy).sum(-1).long()
