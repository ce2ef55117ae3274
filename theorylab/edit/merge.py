"""One general task-arithmetic merge with independent knobs, and named presets on top of it.

    theta = base + lam * MIX_t( w_t * SPARSIFY(tau_t) )

Knobs (each independent):
- weights w_t: per task, any sign; scalar, filter rules, gradient, or [E] tensor (see params.py).
- sparsify_method: None | "magnitude" (top-k, TIES' trim) | "random" (DARE's drop); density = kept fraction.
- rescale: divide kept entries by density (None: True for random, False for magnitude; as mergekit).
- sign_consensus: None | "sum" (TIES: elected sign = sign of the summed weighted deltas, ties -> +) |
  "count" (sign of the majority of entries); entries disagreeing with the elected sign, and zeros, are dropped.
- normalize: divide by the sum of the weights (with consensus: of the weights of the agreeing entries,
  i.e. TIES' disjoint mean; a zero divisor becomes 1). mergekit's convention.
- lam: a final scale on the mixed delta (mergekit's ``lambda``; TIES' lambda; scalar or [E]).

Weighting happens before sign election, as in mergekit (Yadav et al. elect on unweighted trimmed
vectors; with equal weights the two agree).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from .params import ParamValue, count_layers, resolve
from .sparsify import (MagnitudeRule, SparsifyMethod, magnitude_mask, magnitude_rule, magnitude_rule_chunked, random_mask,
                       task_seed)
from .state import DEFAULT_LAYER_PATTERN, StateDict, check_fraction, is_editable, per_model_value

SignConsensus = Literal["sum", "count"]


@dataclass(frozen=True)
class MergeKnobs:
    sparsify_method: SparsifyMethod | None = None
    sign_consensus: SignConsensus | None = None
    normalize: bool = False
    rescale: bool | None = None

    def __post_init__(self):
        if self.sparsify_method not in (None, "magnitude", "random"):
            raise ValueError(f"sparsify_method must be None, 'magnitude' or 'random', got {self.sparsify_method!r}")
        if self.sign_consensus not in (None, "sum", "count"):
            raise ValueError(f"sign_consensus must be None, 'sum' or 'count', got {self.sign_consensus!r}")

    @property
    def does_rescale(self) -> bool:
        return (self.sparsify_method == "random") if self.rescale is None else bool(self.rescale)


def _is_zero(v: float | Tensor) -> bool:
    return bool((torch.as_tensor(v) == 0).all())


class TensorMerge:
    """Merges one tensor, optionally in row chunks (streaming checkpoints).

    Use: if ``needs_full_deltas``: call ``prepare(t, full_delta_t)`` for every task; then ``chunk(...)``
    over consecutive row chunks in order. Magnitude thresholds see the whole tensor; random masks and tie
    breaking use flat positions, so chunking does not change the result.
    """

    def __init__(self, name: str, weights: Sequence[float | Tensor], densities: Sequence[float],
                 knobs: MergeKnobs, *, lam: float | Tensor = 1.0, seed: int | Tensor = 0, model_axis: bool = False):
        if len(weights) != len(densities):
            raise ValueError(f"{len(weights)} weights but {len(densities)} densities for tensor {name!r}")
        for d in densities:
            check_fraction(d, f"density of tensor {name!r}")
        self.name, self.weights, self.densities, self.knobs = name, list(weights), list(densities), knobs
        self.lam, self.model_axis = lam, model_axis
        self.is_identity = _is_zero(lam) or all(_is_zero(w) for w in self.weights)
        sparse = knobs.sparsify_method is not None
        self.sparse_tasks = [sparse and d < 1.0 for d in self.densities]
        self.rules: list[MagnitudeRule | None] = [None] * len(self.weights)
        self.ties_seen: list[Tensor | None] = [None] * len(self.weights)
        self.seeds = [task_seed(seed, t, name) for t in range(len(self.weights))]

    @property
    def needs_full_deltas(self) -> bool:
        return not self.is_identity and self.knobs.sparsify_method == "magnitude" and any(self.sparse_tasks)

    def prepare(self, task: int, delta: Tensor | Callable[[], Iterable[Tensor]]) -> None:
        """delta: the task's whole delta tensor, or (one model only) a function returning its chunks
        afresh on each call (streaming: the threshold is then found in O(chunk) memory)."""
        if not (self.sparse_tasks[task] and self.knobs.sparsify_method == "magnitude"):
            return
        if callable(delta):
            if self.model_axis:
                raise ValueError("chunked deltas are for single models; pass the whole tensor with model_axis")
            self.rules[task] = magnitude_rule_chunked(delta, self.densities[task])
        else:
            self.rules[task] = magnitude_rule(delta, self.densities[task], self.model_axis)

    def _sparsify(self, t: int, delta: Tensor, offset: int) -> Tensor:
        if not self.sparse_tasks[t]:
            return delta
        density = self.densities[t]
        if self.knobs.sparsify_method == "magnitude":
            if self.rules[t] is None:
                raise RuntimeError(f"prepare() was not called for task {t} of tensor {self.name!r}")
            keep, self.ties_seen[t] = magnitude_mask(delta, self.rules[t], self.model_axis, self.ties_seen[t])
        else:
            keep = random_mask(delta, density, self.seeds[t], self.model_axis, offset)
        out = delta * keep
        return out / density if self.knobs.does_rescale and density > 0 else out

    def mixed_delta(self, deltas: Sequence[Tensor], offset: int = 0) -> Tensor:
        """The lam-scaled mixed delta for a chunk; deltas: T tensors of the chunk's shape, float."""
        ref = deltas[0]
        w = [per_model_value(x, ref, self.model_axis, f"weight of tensor {self.name!r}").to(ref.dtype)
             for x in self.weights]
        weighted = [self._sparsify(t, d, offset) * w[t] for t, d in enumerate(deltas)]
        consensus = self.knobs.sign_consensus
        if consensus is None:
            mixed = torch.stack(weighted).sum(0) if len(weighted) > 1 else weighted[0].clone()
            divisor = sum(w)
            divisor = torch.where(torch.as_tensor(divisor).abs() < 1e-8, 1.0, divisor)
        else:
            if consensus == "sum":
                total = torch.stack(weighted).sum(0)
            else:
                total = torch.stack([x.sign() for x in weighted]).sum(0)
            elected = torch.where(total >= 0, 1.0, -1.0).to(ref.dtype)  # ties elect +, as mergekit
            mixed = torch.zeros_like(ref)
            divisor = torch.zeros_like(ref)
            for t, x in enumerate(weighted):
                agree = x.sign() == elected  # zeros never agree: the disjoint mean skips them
                mixed += x * agree
                divisor += w[t] * agree
            divisor = torch.where(divisor == 0, 1.0, divisor)
        if self.knobs.normalize:
            mixed = mixed / divisor
        lam = per_model_value(self.lam, ref, self.model_axis, "lambda").to(ref.dtype)
        return mixed * lam

    def chunk(self, base: Tensor, deltas: Sequence[Tensor], offset: int = 0) -> Tensor:
        """Merged chunk in base's dtype. base: [rows, ...] chunk; deltas: matching float chunks."""
        if self.is_identity:
            return base.clone()
        work = torch.promote_types(base.dtype, torch.float32)
        mixed = self.mixed_delta([d.to(work) for d in deltas], offset)
        return (base.to(work) + mixed).to(base.dtype)


def merge_tensor(name: str, base: Tensor, deltas: Sequence[Tensor], weights: Sequence[float | Tensor],
                 densities: Sequence[float] | None = None, knobs: MergeKnobs = MergeKnobs(), *,
                 lam: float | Tensor = 1.0, seed: int | Tensor = 0, model_axis: bool = False) -> Tensor:
    """Merge one in-memory tensor. deltas: one task-vector tensor per task, same shape as base."""
    densities = list(densities) if densities is not None else [1.0] * len(deltas)
    tm = TensorMerge(name, weights, densities, knobs, lam=lam, seed=seed, model_axis=model_axis)
    for t, d in enumerate(deltas):
        if tuple(d.shape) != tuple(base.shape):
            raise ValueError(f"tensor {name!r} has shape {tuple(base.shape)} in base but {tuple(d.shape)} in task vector {t}")
        if tm.needs_full_deltas:
            tm.prepare(t, d)
    return tm.chunk(base, deltas)


def _per_task(value, n: int, field: str) -> list:
    """A value for every task: a list/tuple of length n, or one value shared by all tasks."""
    if isinstance(value, (list, tuple)) and len(value) == n and n > 0 and not _looks_like_param(value):
        return list(value)
    if isinstance(value, (list, tuple)) and n > 1 and len(value) != n and not _looks_like_param(value):
        raise ValueError(f"{field}: got {len(value)} values for {n} task vectors")
    return [value] * n


def _looks_like_param(value) -> bool:
    # A list of filter rules is one parameter value, not a list of per-task values.
    return all(isinstance(v, Mapping) for v in value)


def merge(base: StateDict, task_vectors: Sequence[Mapping[str, Tensor]], weights: ParamValue | Sequence[ParamValue] = 1.0,
          *, density: ParamValue | Sequence[ParamValue] = 1.0, sparsify_method: SparsifyMethod | None = None,
          rescale: bool | None = None, sign_consensus: SignConsensus | None = None, normalize: bool = False,
          lam: float | Tensor = 1.0, seed: int | Tensor = 0, model_axis: bool = False,
          layer_pattern: str = DEFAULT_LAYER_PATTERN) -> dict[str, Tensor]:
    """General task-arithmetic merge of state dicts (see the module docstring for every knob).

    weights/density: one value for all tasks, or a list with one value per task vector; each value may be
    a number, filter rules, a gradient, or an [E] tensor. Integer buffers are copied from base.
    A density below 1 without a sparsify_method is refused (it would be silently ignored otherwise).
    """
    if not task_vectors:
        raise ValueError("merge needs at least one task vector")
    knobs = MergeKnobs(sparsify_method, sign_consensus, normalize, rescale)
    n = len(task_vectors)
    w_per_task = _per_task(weights, n, "weights")
    d_per_task = _per_task(density, n, "density")
    n_layers = count_layers(list(base), layer_pattern)
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, b in base.items():
            if not is_editable(b):
                out[name] = b.clone()
                continue
            deltas = []
            for t, tv in enumerate(task_vectors):
                if name not in tv:
                    raise ValueError(f"tensor {name!r} is in base but missing from task vector {t}")
                deltas.append(tv[name])
            ws = [resolve(w, name, f"weights[{t}]", n_layers, layer_pattern) for t, w in enumerate(w_per_task)]
            for t, w in enumerate(ws):
                if w is None:
                    raise ValueError(f"weights[{t}]: no rule matches tensor {name!r} and there is no default rule")
            ds = [resolve(d, name, f"density[{t}]", n_layers, layer_pattern) for t, d in enumerate(d_per_task)]
            ds = [1.0 if d is None else float(d) for d in ds]
            if sparsify_method is None and any(d < 1.0 for d in ds):
                raise ValueError(f"density < 1 for tensor {name!r} needs sparsify_method='magnitude' or 'random'")
            out[name] = merge_tensor(name, b, deltas, ws, ds, knobs, lam=lam, seed=seed, model_axis=model_axis)
    return out


# ---- named methods: thin presets on merge() -------------------------------------------------------------


@dataclass(frozen=True)
class MergeMethod:
    name: str
    knobs: MergeKnobs
    doc: str = ""
    preset: Callable[[], dict] = field(repr=False, default=dict)

    def __call__(self, base: StateDict, task_vectors, weights=1.0, **overrides) -> dict[str, Tensor]:
        kw = {"sparsify_method": self.knobs.sparsify_method, "sign_consensus": self.knobs.sign_consensus,
              "normalize": self.knobs.normalize, "rescale": self.knobs.rescale}
        kw.update(overrides)
        return merge(base, task_vectors, weights, **kw)


MERGE_METHODS: dict[str, MergeMethod] = {}


def register_merge_method(name: str):
    """Decorator: the function returns the knob settings (a dict of MergeKnobs fields) of a named method."""

    def wrap(preset: Callable[[], dict]) -> MergeMethod:
        method = MergeMethod(name, MergeKnobs(**preset()), (preset.__doc__ or "").strip(), preset)
        MERGE_METHODS[name] = method
        return method

    return wrap


def get_merge_method(name: str) -> MergeMethod:
    if name not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {name!r}; known: {', '.join(sorted(MERGE_METHODS))}")
    return MERGE_METHODS[name]


@register_merge_method("task_arithmetic")
def _task_arithmetic():
    """Ilharco et al. 2023: base + lam * sum_t w_t tau_t. No sparsification, no normalization."""
    return {}


@register_merge_method("ties")
def _ties():
    """Yadav et al. 2023: trim to top-density magnitude, elect sign by summed mass, disjoint mean
    (normalize=True by default, as mergekit). Scale the result with lam."""
    return {"sparsify_method": "magnitude", "sign_consensus": "sum", "normalize": True}


@register_merge_method("dare_linear")
def _dare_linear():
    """Yu et al. 2024: random drop with rescale by 1/density, then weighted sum (no normalize)."""
    return {"sparsify_method": "random", "rescale": True}


@register_merge_method("dare_ties")
def _dare_ties():
    """DARE drop-and-rescale, then TIES sign election and disjoint sum (normalize off, as mergekit)."""
    return {"sparsify_method": "random", "rescale": True, "sign_consensus": "sum"}


@register_merge_method("magnitude_prune")
def _magnitude_prune():
    """Task arithmetic on magnitude-trimmed task vectors (keep the top-density entries of each tensor),
    no sign election, no rescale."""
    return {"sparsify_method": "magnitude"}


@register_merge_method("magnitude_prune_rescaled")
def _magnitude_prune_rescaled():
    """Magnitude trimming with kept entries divided by density (keeps the task vector's scale)."""
    return {"sparsify_method": "magnitude", "rescale": True}
