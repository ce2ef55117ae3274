"""Sparsifying task vectors: magnitude top-k and random drop-and-rescale (DARE).

Conventions (mergekit's, so configs carry over):
- ``density`` is the fraction of entries KEPT: exactly floor(density * n) entries per tensor (per model
  with ``model_axis``) survive magnitude trimming. Ties at the threshold are broken by flat position
  (first kept), so the count is exact and the result does not depend on chunking.
- Random (DARE, Yu et al. 2024): each entry is kept with probability ``density`` (drop rate p = 1 - density)
  and, with ``rescale=True`` (DARE's default), kept entries are divided by ``density`` so the expected
  task vector is unchanged. Magnitude trimming does not rescale by default (TIES does not).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import torch
from torch import Tensor

from .rng import derive_seed, uniform
from .state import check_fraction, count_of, per_model_flat

SparsifyMethod = Literal["magnitude", "random"]


@dataclass(frozen=True)
class MagnitudeRule:
    """Per-model keep rule for one whole tensor: keep |x| > threshold, plus the first ``tie_quota``
    entries with |x| == threshold in flat order. threshold, tie_quota: [E] (E = 1 without model axis)."""

    threshold: Tensor
    tie_quota: Tensor


def mergekit_count(density: float, n: int) -> int:
    """Entries mergekit's magnitude trimming keeps: int(density * n), at least one for any density > 0."""
    if density <= 0 or n == 0:
        return 0
    return n if density >= 1 else max(1, int(density * n))


def magnitude_rule(delta: Tensor, density: float, model_axis: bool = False, *,
                   count: Callable[[float, int], int] = count_of) -> MagnitudeRule:
    """Compute the keep rule from the whole tensor (the statistic must see every entry).
    count(density, n): how many entries to keep (floor by default; mergekit_count for merges)."""
    check_fraction(density, "density")
    a = per_model_flat(delta, model_axis).abs().float()  # [E, n]
    n = a.shape[1]
    k = count(density, n)
    if k == 0:
        inf = torch.full((a.shape[0],), float("inf"))
        return MagnitudeRule(inf, torch.zeros(a.shape[0], dtype=torch.int64))
    thr = a.kthvalue(n - k + 1, dim=1).values  # k-th largest, [E]
    greater = (a > thr[:, None]).sum(dim=1)
    return MagnitudeRule(thr, k - greater)


def magnitude_rule_chunked(chunks: Callable[[], Iterable[Tensor]], density: float, *,
                           count: Callable[[float, int], int] = count_of) -> MagnitudeRule:
    """The same rule as magnitude_rule (one model), from a re-iterable source of chunks, in O(chunk) memory.

    Why: the k-th largest |x| of a 65M-entry embedding via kthvalue needs several full float32 copies.
    Non-negative float32 values order like their int32 bit patterns, so two histogram passes (high 16
    bits, then the low 15 bits inside the bucket holding the k-th value) give the exact threshold.
    """
    check_fraction(density, "density")
    hist = torch.zeros(1 << 16, dtype=torch.int64)
    n = 0
    for c in chunks():
        bits = _abs_bits(c)
        hist += torch.bincount(bits >> 15, minlength=1 << 16)
        n += bits.numel()
    k = count(density, n)
    if k == 0:
        return MagnitudeRule(torch.full((1,), float("inf")), torch.zeros(1, dtype=torch.int64))
    bucket, above = _bucket_of_kth(hist, k)
    low = torch.zeros(1 << 15, dtype=torch.int64)
    for c in chunks():
        bits = _abs_bits(c)
        low += torch.bincount(bits[(bits >> 15) == bucket] & 0x7FFF, minlength=1 << 15)
    sub, above_in_bucket = _bucket_of_kth(low, k - above)
    thr = torch.tensor([(bucket << 15) | sub], dtype=torch.int32).view(torch.float32)
    return MagnitudeRule(thr, torch.tensor([k - above - above_in_bucket]))


def _abs_bits(c: Tensor) -> Tensor:
    return c.detach().reshape(-1).float().abs().view(torch.int32).long()


def _bucket_of_kth(hist: Tensor, k: int) -> tuple[int, int]:
    """Bucket holding the k-th largest value, and how many values lie in higher buckets."""
    from_top = hist.flip(0).cumsum(0)
    i = int(torch.searchsorted(from_top, torch.tensor(k)))
    bucket = hist.numel() - 1 - i
    return bucket, int(from_top[i] - hist[bucket])


def magnitude_mask(delta: Tensor, rule: MagnitudeRule, model_axis: bool = False,
                   ties_seen: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Boolean keep mask for ``delta`` (the whole tensor or a row chunk of it, in flat order).

    ties_seen: [E] count of threshold ties met in earlier chunks; returned updated.
    """
    a = per_model_flat(delta, model_axis).abs().float()  # [E, n]
    thr = rule.threshold[:, None]
    seen = torch.zeros_like(rule.tie_quota) if ties_seen is None else ties_seen
    tie = a == thr
    tie_rank = tie.cumsum(dim=1) + seen[:, None]  # 1-based rank of each tie across chunks
    keep = (a > thr) | (tie & (tie_rank <= rule.tie_quota[:, None]))
    return keep.reshape(delta.shape), seen + tie.sum(dim=1)


def topk_mask(delta: Tensor, density: float, model_axis: bool = False) -> Tensor:
    """Keep exactly floor(density * n) largest-|x| entries (per model with model_axis)."""
    return magnitude_mask(delta, magnitude_rule(delta, density, model_axis), model_axis)[0]


def random_mask(delta: Tensor, density: float, seed: int | Tensor, model_axis: bool = False,
                offset: int = 0) -> Tensor:
    """Keep each entry with probability ``density``, drawn from uniform(seed, flat index + offset).

    seed: int, or an [E] tensor of per-model seeds with model_axis (model e then gets exactly the mask it
    would get alone with seed[e]). offset: flat index of the chunk's first entry within the tensor.
    """
    check_fraction(density, "density")
    flat = per_model_flat(delta, model_axis)
    s = torch.as_tensor(seed, dtype=torch.int64)
    if model_axis and s.dim() == 0:
        s = s.expand(flat.shape[0])
    u = uniform(s, flat.shape[1], offset)
    return (u < density).reshape(delta.shape)


def sparsify(delta: Tensor, density: float, method: SparsifyMethod = "magnitude", *, rescale: bool | None = None,
             seed: int | Tensor = 0, model_axis: bool = False) -> Tensor:
    """Sparsified copy of one task-vector tensor. rescale=None means: True for random (DARE), False for
    magnitude. With rescale, kept entries are divided by density."""
    if method == "magnitude":
        keep = topk_mask(delta, density, model_axis)
    elif method == "random":
        keep = random_mask(delta, density, seed, model_axis)
    else:
        raise ValueError(f"sparsify method must be 'magnitude' or 'random', got {method!r}")
    out = delta * keep
    if (method == "random" if rescale is None else rescale) and density > 0:
        out = out / density
    return out


def dare(delta: Tensor, drop_rate: float, seed: int | Tensor = 0, model_axis: bool = False) -> Tensor:
    """DARE in the paper's terms: drop with probability p, rescale survivors by 1 / (1 - p)."""
    check_fraction(drop_rate, "drop_rate", high=0.999999)
    return sparsify(delta, 1.0 - drop_rate, "random", rescale=True, seed=seed, model_axis=model_axis)


def della_keep_probability(delta: Tensor, density: float, epsilon: float) -> Tensor:
    """DELLA's MAGPRUNE (Deep et al. 2024, as mergekit 0.1.5 defines it): within each row (dim 1 of the
    tensor; a vector is one row) entries are ranked by magnitude, and rank r of n gets keep probability
    density - epsilon + 2 epsilon (r - 1) / (n - 1), so larger entries survive more often while the mean
    keep rate stays ``density``. Whole rows must be present (row chunks of dim 0 are fine)."""
    x = delta.unsqueeze(0) if delta.dim() < 2 else delta
    n = x.shape[1]
    order = torch.argsort(x.abs().float(), dim=1, stable=True)  # stable: ties rank by position
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n).reshape(1, n, *([1] * (x.dim() - 2))).expand_as(order))
    # a one-entry row has no spread of ranks; it keeps the mean probability
    rank_norm = rank.double() / (n - 1) if n > 1 else torch.full(x.shape, 0.5, dtype=torch.float64)
    return ((density - epsilon) + rank_norm * 2 * epsilon).reshape(delta.shape)


def task_seed(seed: int | Tensor, task: int, tensor_name: str) -> Tensor:
    """Independent streams per task and per tensor from one user seed (scalar or [E])."""
    return derive_seed(seed, task, tensor_name)
