"""Small shared helpers for editing plain state dicts (dict[str, Tensor]).

Ensemble convention: with ``model_axis=True`` dim 0 of every tensor is the ensemble axis E and every
statistic (top-k threshold, SVD, row norms, sign election, random masks, saliency) is computed per model.
"""
from __future__ import annotations

import math
import re
from typing import Mapping

import torch
from torch import Tensor

StateDict = Mapping[str, Tensor]

# Transformer block index in names like "model.layers.3.mlp", "transformer.h.3.attn", "encoder.layer.3.",
# "blocks.3." (ViT/timm) and "resblocks.3." (CLIP).
DEFAULT_LAYER_PATTERN = r"(?:^|\.)(?:layers|layer|h|blocks|resblocks|block)\.(\d+)\."


def is_editable(t: Tensor) -> bool:
    """Float tensors carry task vectors; integer/bool buffers (position ids, step counters) are skipped."""
    return t.is_floating_point()


def layer_index(name: str, pattern: str = DEFAULT_LAYER_PATTERN) -> int | None:
    """Block index of a tensor name (first capture group of ``pattern``), or None for embeddings/heads."""
    m = re.search(pattern, name)
    return int(m.group(1)) if m else None


def count_of(fraction: float, n: int) -> int:
    """floor(fraction * n), tolerant to float error (0.29 * 100 must give 29, not 28)."""
    return int(math.floor(fraction * n + 1e-6))


def check_fraction(value: float, field: str, *, low: float = 0.0, high: float = 1.0) -> float:
    if not (low <= float(value) <= high):
        raise ValueError(f"{field} must be in [{low}, {high}], got {value}")
    return float(value)


def check_same_layout(a: StateDict, b: StateDict, a_name: str = "base", b_name: str = "finetuned") -> None:
    """Refuse mismatched keys or shapes, naming the first offending tensor."""
    missing = [k for k in a if k not in b]
    if missing:
        raise ValueError(f"tensor {missing[0]!r} is in {a_name} but missing from {b_name} ({len(missing)} missing)")
    extra = [k for k in b if k not in a]
    if extra:
        raise ValueError(f"tensor {extra[0]!r} is in {b_name} but missing from {a_name} ({len(extra)} extra)")
    for k, t in a.items():
        if tuple(t.shape) != tuple(b[k].shape):
            raise ValueError(f"tensor {k!r} has shape {tuple(t.shape)} in {a_name} but {tuple(b[k].shape)} in {b_name}")


def per_model_flat(t: Tensor, model_axis: bool) -> Tensor:
    """[E, ...] -> [E, n] when model_axis, else [...] -> [1, n] (a view when possible)."""
    return t.reshape(t.shape[0], -1) if model_axis else t.reshape(1, -1)


def check_model_axis(t: Tensor, name: str, model_axis: bool) -> None:
    if model_axis and t.dim() < 1:
        raise ValueError(f"tensor {name!r} is a scalar but model_axis=True needs a leading ensemble axis")


def per_model_value(value: float | Tensor, ref: Tensor, model_axis: bool, field: str) -> Tensor:
    """A scalar or a per-model [E] tensor, shaped to broadcast against ``ref`` ([E, ...] or [...])."""
    v = torch.as_tensor(value, dtype=torch.float32)
    if v.dim() == 0:
        return v
    if not model_axis or v.dim() != 1 or v.shape[0] != ref.shape[0]:
        raise ValueError(f"{field} must be a scalar, or a tensor of shape [E]={ref.shape[0]} with model_axis=True; "
                         f"got shape {tuple(v.shape)}")
    return v.reshape(-1, *([1] * (ref.dim() - 1)))
