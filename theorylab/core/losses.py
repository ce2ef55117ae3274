"""Losses and metrics written once. Predictions carry the model axis: f [*, E, B], labels [E, B] or [*, E, B].

Every metric treats a non-finite prediction as wrong: a diverged model must never count as perfect
(with NaN, `z * f <= 0` is False, which would score it as error-free).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[*, E, B] -> [*, E]: mean of max(0, 1 - y f). NaN stays NaN (the trainer's guard sees it)."""
    return torch.clamp(1 - y * f, min=0).mean(-1)


def logistic(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[*, E, B] -> [*, E]: mean of log(1 + exp(-y f))."""
    return F.softplus(-y * f).mean(-1)


def mse(pred: torch.Tensor, target: torch.Tensor, event_dims: int = 0) -> torch.Tensor:
    """[*, E, B, *event] -> [*, E]: squared error averaged over the batch and the `event_dims` trailing dims."""
    return ((pred - target) ** 2).flatten(start_dim=pred.dim() - 1 - event_dims).mean(-1)


def sign_error(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[*, E, B] -> [*, E]: P[sign(f) != y]; a non-finite f counts as an error."""
    return (~(y * f > 0)).float().mean(-1)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits [*, E, B, K], target [*, E, B] (class indices) -> [*, E]: mean cross-entropy per model."""
    ce = F.cross_entropy(logits.flatten(0, -2), target.expand(logits.shape[:-1]).flatten(), reduction="none")
    return ce.reshape(logits.shape[:-1]).mean(-1)


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits [*, E, B, K], target [*, E, B] -> [*, E]; a row with a non-finite logit counts as wrong."""
    finite = torch.isfinite(logits).all(-1)
    return ((logits.argmax(-1) == target) & finite).float().mean(-1)
