"""The task-vector family computed the way mergekit 0.1.5 computes it in a low-precision dtype.

With ``dtype: bfloat16`` mergekit casts every input to bfloat16 and does the merge arithmetic there:
deltas, weights, trimming, sign election and the disjoint mean are bfloat16 operations, so the result
differs from a float32 merge rounded to bfloat16 by far more than one rounding step (a TIES merge by up
to 0.12 on a tiny Llama). These functions repeat that arithmetic step by step on whole tensors; the
streaming float32 path (theorylab.edit.merge.TensorMerge) remains the option ``compute_dtype: float32``.

Linear is the exception in mergekit itself: it rounds the inputs to the dtype but accumulates in float32.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .merge import MergeKnobs

RESCALE_EPS = 1e-7


def _rescaled(x: Tensor, mask: Tensor, norm: str | None, density: float) -> Tensor:
    kept = x * mask
    if norm is None:
        return kept
    if norm == "density":
        return kept / density if density > 0 else kept
    if norm == "l1":
        before, after = x.abs().sum(), kept.abs().sum()
    elif norm == "l2":
        before, after = x.norm(), kept.norm()
    else:
        before, after = x.abs().max(), kept.abs().max()
    if before < RESCALE_EPS or after < RESCALE_EPS:
        return kept
    return kept * (before / after)


def _magnitude(x: Tensor, density: float, norm: str | None) -> Tensor:
    if density >= 1:
        return x
    if density <= 0 or x.numel() == 0:
        return torch.zeros_like(x)
    k = max(1, int(density * x.numel()))
    mask = torch.zeros(x.numel(), dtype=x.dtype)
    # the same (unstable) argsort of the same float32 magnitudes as mergekit, so ties fall the same way
    mask[torch.argsort(x.abs().reshape(-1).float(), descending=True)[:k]] = 1
    return _rescaled(x, mask.reshape_as(x), norm, density)


def _outliers(x: Tensor, density: float, gamma: float, norm: str | None) -> Tensor:
    if density >= 1:
        return x
    n = x.numel()
    keep, top = int(density * n), int(gamma * n)
    bottom = max(0, n - keep - top)
    order = torch.sort(x.abs().reshape(-1).float(), descending=False).indices
    mask = torch.zeros(n, dtype=x.dtype)
    mask[order[bottom:bottom + keep]] = 1
    return _rescaled(x, mask.reshape_as(x), norm, density)


def _random(x: Tensor, density: float, norm: str | None, gen: torch.Generator) -> Tensor:
    if density >= 1:
        return x
    work = x.dtype if x.dtype == torch.bfloat16 else torch.float32  # no float16 bernoulli on CPU
    mask = torch.bernoulli(torch.full(x.shape, density, dtype=work), generator=gen)
    return _rescaled(x.to(work), mask, norm, density).to(x.dtype)


def _della(x: Tensor, density: float, epsilon: float, norm: str | None, gen: torch.Generator) -> Tensor:
    if density >= 1:
        return x
    if density <= 0:
        return torch.zeros_like(x)
    shape = x.shape
    work = x.dtype if x.dtype == torch.bfloat16 else torch.float32
    if x.dim() < 2:
        x = x.unsqueeze(0)
    ranks = torch.argsort(x.abs(), dim=1, descending=False).argsort(dim=1).to(work) + 1
    lo, hi = ranks.min(dim=1, keepdim=True).values, ranks.max(dim=1, keepdim=True).values
    probs = (density - epsilon) + ((ranks - lo) / (hi - lo)).clamp(0, 1) * 2 * epsilon
    mask = torch.bernoulli(probs, generator=gen).to(work)
    return _rescaled(x.to(work), mask, norm, density).to(x.dtype).reshape(shape)


def _elected(deltas: Tensor, method: str, mask_dtype: torch.dtype) -> Tensor:
    sign = deltas.sign().to(mask_dtype)
    total = deltas.sum(dim=0) if method == "sum" else sign.sum(dim=0)
    return sign == (total >= 0).to(mask_dtype) * 2 - 1


def task_arithmetic_in_dtype(base: Tensor, models: Sequence[Tensor], weights: Sequence[float],
                             densities: Sequence[float], knobs: MergeKnobs, *, lam: float = 1.0,
                             gammas: Sequence[float] = (), epsilons: Sequence[float] = (), int8_mask: bool = False,
                             seeds: Sequence[int] = ()) -> Tensor:
    """mergekit's generalized task arithmetic (task_arithmetic, ties, dare_*, breadcrumbs*, della*) with
    every input already in the compute dtype."""
    if not models:
        return base
    norm = knobs.rescale_norm if knobs.does_rescale else None
    deltas = base.new_empty((len(models), *base.shape))
    for t, m in enumerate(models):
        d = m - base
        method = knobs.sparsify_method
        if method == "magnitude":
            d = _magnitude(d, densities[t], norm)
        elif method == "magnitude_outliers":
            d = _outliers(d, densities[t], gammas[t], norm)
        elif method in ("random", "della_magprune"):
            gen = torch.Generator().manual_seed(int(seeds[t]) if seeds else t)
            d = _random(d, densities[t], norm, gen) if method == "random" else _della(d, densities[t], epsilons[t], norm, gen)
        deltas[t] = d
    w = torch.tensor(list(weights), dtype=deltas.dtype)
    while deltas.dim() > w.dim():
        w.unsqueeze_(-1)
    deltas.mul_(w)
    if knobs.sign_consensus:
        mask = _elected(deltas, knobs.sign_consensus, torch.int8 if int8_mask else base.dtype)
        mixed = (deltas * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = deltas.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if knobs.normalize:
        mixed /= divisor
    if lam != 1:
        mixed *= lam
    return (base + mixed).to(base.dtype)


def linear_in_dtype(inputs: Sequence[Tensor], weights: Sequence[float], normalize: bool) -> Tensor:
    """mergekit's linear: inputs rounded to the dtype, accumulated in float32 in config order."""
    dtype = torch.float64 if inputs[0].dtype == torch.float64 else torch.float32
    w = torch.tensor(list(weights), dtype=dtype)
    out = torch.zeros_like(inputs[0], dtype=dtype)
    for x, c in zip(inputs, w.unbind(0)):
        out.addcmul_(x, c)
    if normalize:
        out.div_(w.sum())
    return out.to(inputs[0].dtype)


def sce_in_dtype(base: Tensor, models: Sequence[Tensor], select_topk: float, int8_mask: bool = False) -> Tensor:
    if not models:
        return base
    mask_dtype = torch.int8 if int8_mask else base.dtype
    tvs = torch.stack([m - base for m in models], dim=0)
    if select_topk < 1:
        if select_topk <= 0:
            keep = torch.zeros_like(tvs[0], dtype=mask_dtype)
        else:
            var = torch.var(tvs, dim=0, unbiased=False)
            k = int(torch.count_nonzero(var) * select_topk)
            keep = torch.zeros_like(var, dtype=mask_dtype)
            if k > 0:
                keep.view(-1)[torch.topk(var.abs().view(-1), k=k, largest=True).indices] = 1
        tvs = tvs * keep.unsqueeze(0)
    agree = _elected(tvs, "sum", mask_dtype)
    sq = tvs.square().reshape(tvs.shape[0], -1).mean(dim=1)
    total = torch.sum(sq).item()
    c = torch.ones_like(sq) / sq.shape[0] if abs(total) < 1e-6 else sq / total
    while c.dim() < tvs.dim():
        c = c.unsqueeze(-1)
    c = c * agree
    return base + (tvs * c).sum(dim=0) / torch.sum(c, dim=0).clamp(min=1e-6)


def model_stock_in_dtype(base: Tensor, models: Sequence[Tensor], filter_wise: bool = False) -> Tensor:
    shape = base.shape
    if filter_wise:
        w0, ws = (base.unsqueeze(0), [m.unsqueeze(0) for m in models]) if base.dim() == 1 else (base, list(models))
    else:
        w0, ws = base.reshape(-1), [m.reshape(-1) for m in models]
    offsets = [w - w0 for w in ws]
    cosines = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            den = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cosines.append(((a * b).sum(dim=-1) / den.clamp(min=1e-6)).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    n = len(ws)
    den = 1 + (n - 1) * cos
    singular = den.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos), (n * cos) / torch.where(singular, torch.ones_like(den), den))
    return (t * (sum(ws) / n) + (1 - t) * w0).reshape(shape)
