"""Row (neuron) pruning: zero whole rows of a matrix chosen by their l2 norm, or at random.

Paper 1, Cor. 2: most rows of the task vector dV are near zero; pruning the smallest rows keeps the
edit, pruning the largest breaks it (the control). Rows are dim 0 ([E, rows, ...] with model_axis),
i.e. output neurons of a torch Linear weight [out, in].
"""
from __future__ import annotations

from typing import Literal, Mapping

import torch
from torch import Tensor

from .rng import derive_seed, uniform
from .state import check_fraction, count_of

Which = Literal["smallest", "largest", "random"]


def row_keep_mask(t: Tensor, fraction: float, which: Which = "smallest", seed: int | Tensor = 0,
                  model_axis: bool = False) -> Tensor:
    """Boolean [rows] ([E, rows]) mask of kept rows; floor(fraction * rows) rows are pruned per model.

    Ties in row norm are broken by row index (lower index pruned first), so results are reproducible.
    random: rows ranked by uniform(seed, row index); with model_axis pass [E] seeds for independent
    models (a scalar seed gives every model the same rows).
    """
    check_fraction(fraction, "fraction")
    if which not in ("smallest", "largest", "random"):
        raise ValueError(f"which must be 'smallest', 'largest' or 'random', got {which!r}")
    lead = 1 if model_axis else 0
    if t.dim() - lead < 1:
        raise ValueError("row pruning needs at least a vector (plus the model axis)")
    rows = t.shape[lead]
    flat = t.reshape(*t.shape[: lead + 1], -1).float()  # [E?, rows, rest]
    if which == "random":
        s = torch.as_tensor(seed, dtype=torch.int64)
        if model_axis and s.dim() == 0:
            s = s.expand(t.shape[0])
        score = uniform(derive_seed(s, "rows"), rows).float()
    else:
        score = flat.norm(dim=-1)
        if which == "largest":
            score = -score
    n_prune = count_of(fraction, rows)
    order = torch.sort(score, dim=-1, stable=True).indices  # lowest score pruned first
    keep = torch.ones_like(score, dtype=torch.bool)
    keep.scatter_(-1, order[..., :n_prune], False)
    return keep


def prune_rows(t: Tensor, fraction: float, which: Which = "smallest", seed: int | Tensor = 0,
               model_axis: bool = False) -> Tensor:
    """Copy of t with floor(fraction * rows) rows zeroed (per model with model_axis)."""
    keep = row_keep_mask(t, fraction, which, seed, model_axis)
    lead = 1 if model_axis else 0
    return t * keep.reshape(*keep.shape, *([1] * (t.dim() - lead - 1))).to(t.dtype)


def prune_rows_state(state: Mapping[str, Tensor], names: str | list[str], fraction: float, which: Which = "smallest",
                     seed: int | Tensor = 0, model_axis: bool = False) -> dict[str, Tensor]:
    """Prune rows of the chosen matrices of a state dict or task vector; names: a substring or a list of
    exact names. Unknown names are refused (a typo must not silently prune nothing)."""
    chosen = [k for k in state if (k in names if isinstance(names, list) else names in k)]
    if not chosen:
        raise ValueError(f"names {names!r} match no tensor; known tensors include {list(state)[:5]}")
    return {k: prune_rows(v, fraction, which, derive_seed(seed, k), model_axis) if k in chosen else v.clone()
            for k, v in state.items()}


def prune_rows_count(t: Tensor, count: int | Tensor, which: Literal["smallest", "largest"] = "smallest",
                     model_axis: bool = False) -> Tensor:
    """Copy of t with `count` rows of the smallest (or largest) l2 norm zeroed; with model_axis, count may be an
    [E] tensor (a different number of rows per model, e.g. each model's small-norm group). Ties as row_keep_mask."""
    if which not in ("smallest", "largest"):
        raise ValueError(f"which must be 'smallest' or 'largest', got {which!r}")
    lead = 1 if model_axis else 0
    if t.dim() - lead < 1:
        raise ValueError("row pruning needs at least a vector (plus the model axis)")
    rows = t.shape[lead]
    score = t.reshape(*t.shape[: lead + 1], -1).float().norm(dim=-1)  # [E?, rows]
    if which == "largest":
        score = -score
    n = torch.as_tensor(count, device=t.device)
    if bool((n < 0).any()) or bool((n > rows).any()):
        raise ValueError(f"count must be in [0, {rows}] (got {count})")
    rank = torch.sort(score, dim=-1, stable=True).indices.argsort(dim=-1)  # position of each row in pruning order
    keep = rank >= (n[..., None] if n.dim() else n)
    return t * keep.reshape(*keep.shape, *([1] * (t.dim() - lead - 1))).to(t.dtype)
