"""One general task-arithmetic merge with independent knobs; every named method is a preset of it.

    theta = B * base + lam * MIX_t( c_t * RESCALE(SPARSIFY(tau_t)) )

Knobs (each independent; mergekit 0.1.5's generalized task arithmetic plus its sce, model_stock and
linear, whose semantics these follow to the tensor):
- sparsify_method: what each task vector keeps, ``density`` being the kept fraction:
  None | "magnitude" (TIES' trim: the int(density * n) largest |x|, at least one) |
  "random" (DARE: keep each entry with probability density) |
  "magnitude_outliers" (Model Breadcrumbs: first drop the int(gamma * n) largest |x|, then keep the next
  int(density * n)) | "della_magprune" (DELLA: keep probability grows with the magnitude rank within each
  row, density +- epsilon).
- rescale + rescale_norm: after sparsifying, scale the kept entries so that the tensor keeps the norm of
  the untrimmed one ("l1", mergekit's choice; "l2"; "linf"), or divide by density ("density", the DARE
  paper's 1 / (1 - p)). rescale=None: on for the random methods, off for the others.
- sign_consensus: None | "sum" (TIES: the elected sign is the sign of the summed weighted deltas, ties
  elect +) | "count" (majority of signs); entries disagreeing with the elected sign, and zeros, drop out.
- coefficients c_t: "given" (the weights, any sign) | "sce" (SCE: the task vectors are first restricted to
  the select_topk fraction of entries with the largest variance across tasks; c_t is each task's share of
  the mean squared delta; the sign is elected on the unweighted deltas) | "model_stock" (Model Stock:
  c_t = t / N with t = N cos / (1 + (N - 1) cos), cos the mean pairwise cosine of the task vectors, per
  tensor or per row with filter_wise).
- normalize: divide by the sum of the coefficients (with consensus: of the agreeing ones, TIES' disjoint
  mean; a zero divisor becomes 1).
- weights_on_models (linear): the weights apply to whole models, so the base term is B = 1 with normalize
  (a weighted average) and B = sum of weights without; otherwise B = 1.
- lam: a final scale on the mixed delta (mergekit's ``lambda``; scalar or [E]).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from .params import ParamValue, count_layers, resolve
from .sparsify import (MagnitudeRule, della_keep_probability, magnitude_mask, magnitude_rule, magnitude_rule_chunked,
                       mergekit_count, random_mask, task_seed)
from .rng import uniform
from .state import DEFAULT_LAYER_PATTERN, StateDict, check_fraction, is_editable, per_model_flat, per_model_value

SignConsensus = Literal["sum", "count"]
SparsifyMethod = Literal["magnitude", "random", "magnitude_outliers", "della_magprune"]
RescaleNorm = Literal["l1", "l2", "linf", "density"]
Coefficients = Literal["given", "sce", "model_stock"]
SPARSIFY_METHODS = ("magnitude", "random", "magnitude_outliers", "della_magprune")
RANDOM_METHODS = ("random", "della_magprune")
# Below this norm mergekit leaves a trimmed tensor unscaled (an all-zero task vector stays zero).
RESCALE_EPS = 1e-7

# A re-iterable source of one tensor's task-vector deltas: each call yields (flat offset, [delta chunk per
# task]) over consecutive row blocks. In memory it is a single chunk holding the whole tensors.
DeltaSource = Callable[[], Iterable[tuple[int, Sequence[Tensor]]]]


def _check_choice(value, allowed, field_name: str):
    if value is not None and value not in allowed:
        raise ValueError(f"{field_name} must be None or one of {', '.join(map(repr, allowed))}, got {value!r}")


@dataclass(frozen=True)
class MergeKnobs:
    sparsify_method: SparsifyMethod | None = None
    sign_consensus: SignConsensus | None = None
    normalize: bool = False
    rescale: bool | None = None
    rescale_norm: RescaleNorm = "l1"
    coefficients: Coefficients = "given"
    weights_on_models: bool = False
    filter_wise: bool = False  # model_stock: one interpolation factor per row instead of per tensor

    def __post_init__(self):
        _check_choice(self.sparsify_method, SPARSIFY_METHODS, "sparsify_method")
        _check_choice(self.sign_consensus, ("sum", "count"), "sign_consensus")
        _check_choice(self.rescale_norm, ("l1", "l2", "linf", "density"), "rescale_norm")
        _check_choice(self.coefficients, ("given", "sce", "model_stock"), "coefficients")

    @property
    def does_rescale(self) -> bool:
        return (self.sparsify_method in RANDOM_METHODS) if self.rescale is None else bool(self.rescale)


def _is_zero(v: float | Tensor) -> bool:
    return bool((torch.as_tensor(v) == 0).all())


@dataclass
class _MaskState:
    """Running tie counts of the magnitude rules while walking a tensor's chunks in order."""
    seen: dict = field(default_factory=dict)


class TensorMerge:
    """Merges one tensor, optionally in row chunks (streaming checkpoints).

    Use: if ``needs_stats``, call ``prepare(source)`` once (it walks the tensor's deltas as often as the
    knobs need whole-tensor statistics: top-k thresholds, rescale norms, variances, cosines); then call
    ``chunk(...)`` over consecutive row chunks in order. Random masks and tie breaking use flat positions,
    so chunking does not change the result.
    """

    def __init__(self, name: str, weights: Sequence[float | Tensor], densities: Sequence[float],
                 knobs: MergeKnobs, *, lam: float | Tensor = 1.0, seed: int | Tensor = 0, model_axis: bool = False,
                 gammas: Sequence[float] | None = None, epsilons: Sequence[float] | None = None,
                 select_topk: float = 1.0):
        n = len(weights)
        if len(densities) != n:
            raise ValueError(f"{n} weights but {len(densities)} densities for tensor {name!r}")
        for d in densities:
            check_fraction(d, f"density of tensor {name!r}")
        self.gammas = list(gammas) if gammas is not None else [0.01] * n
        self.epsilons = list(epsilons) if epsilons is not None else [0.15] * n
        for g in self.gammas:
            check_fraction(g, f"gamma of tensor {name!r}")
        check_fraction(select_topk, f"select_topk of tensor {name!r}")
        if knobs.sparsify_method == "della_magprune":
            for d, e in zip(densities, self.epsilons):
                if 0 < d < 1 and not (d - e > 0 and d + e < 1):
                    raise ValueError(f"epsilon: density - epsilon and density + epsilon must lie in (0, 1); got density "
                                     f"{d} and epsilon {e} for tensor {name!r}")
        if model_axis and (knobs.coefficients != "given" or knobs.sparsify_method in ("della_magprune", "magnitude_outliers")):
            raise ValueError(f"model_axis is not supported with coefficients={knobs.coefficients!r} / "
                             f"sparsify_method={knobs.sparsify_method!r}; merge the models one by one")
        self.name, self.weights, self.densities, self.knobs = name, list(weights), list(densities), knobs
        self.lam, self.model_axis, self.select_topk = lam, model_axis, select_topk
        self.is_identity = _is_zero(lam) or (knobs.coefficients == "given" and not knobs.weights_on_models
                                             and all(_is_zero(w) for w in self.weights))
        sparse = knobs.sparsify_method is not None
        self.sparse_tasks = [sparse and d < 1.0 for d in self.densities]
        self.seeds = [task_seed(seed, t, name) for t in range(n)]
        self.rules: list[list[MagnitudeRule]] = [[] for _ in range(n)]  # magnitude: [keep]; outliers: [keep, drop]
        self.variance_rule: MagnitudeRule | None = None
        self.rescale_factors: list[Tensor | None] = [None] * n
        self.sce_coefficients: Tensor | None = None
        self.stock_factor: Tensor | None = None
        self._state = _MaskState()
        self._prepared = False

    # ---- what whole-tensor statistics are needed ----------------------------------------------------

    @property
    def _uses_rules(self) -> bool:
        return self.knobs.sparsify_method in ("magnitude", "magnitude_outliers") and any(self.sparse_tasks)

    @property
    def _uses_rescale(self) -> bool:
        return self.knobs.does_rescale and any(self.sparse_tasks) and self.knobs.rescale_norm != "density"

    @property
    def needs_stats(self) -> bool:
        if self.is_identity:
            return False
        k = self.knobs
        return (self._uses_rules or self._uses_rescale or k.coefficients == "sce"
                or (k.coefficients == "model_stock" and not k.filter_wise))

    @property
    def needs_whole_rows(self) -> bool:
        """DELLA ranks within rows and filter-wise Model Stock normalizes rows: a 1-D tensor (one row) must
        arrive as one chunk."""
        return self.knobs.sparsify_method == "della_magprune" or (
            self.knobs.coefficients == "model_stock" and self.knobs.filter_wise)

    def prepare(self, source: DeltaSource | Sequence[Tensor]) -> None:
        """Gather whole-tensor statistics. source: the whole deltas (one per task), or a DeltaSource."""
        if not callable(source):
            whole = [d for d in source]
            source = lambda: [(0, whole)]  # noqa: E731
        single = len(list(source())) == 1
        if self.model_axis and not single:
            raise ValueError("chunked deltas are for single models; pass the whole tensors with model_axis")
        if self._uses_rules:
            self._find_rules(source, single)
        if self.knobs.coefficients == "sce" and self.select_topk < 1:
            self._find_variance_rule(source, single)
        if self._uses_rescale:
            self._find_rescale_factors(source)
        if self.knobs.coefficients == "sce":
            self._find_sce_coefficients(source)
        if self.knobs.coefficients == "model_stock" and not self.knobs.filter_wise:
            self._find_stock_factor(source)
        self._state = _MaskState()
        self._prepared = True

    def _counts(self, t: int) -> list[Callable[[float, int], int]]:
        if self.knobs.sparsify_method == "magnitude":
            return [mergekit_count]
        gamma = self.gammas[t]
        # Breadcrumbs keeps ranks drop..drop+keep of |x| (largest first): top(drop + keep) minus top(drop).
        keep = lambda d, n: int(d * n)  # noqa: E731
        drop = lambda d, n: n - max(0, n - keep(d, n) - int(gamma * n)) - keep(d, n)  # noqa: E731
        return [lambda d, n: keep(d, n) + drop(d, n), drop]

    def _find_rules(self, source: DeltaSource, single: bool) -> None:
        for t in range(len(self.weights)):
            if not self.sparse_tasks[t]:
                continue
            d = self.densities[t]
            if single:
                whole = next(iter(source()))[1][t]
                self.rules[t] = [magnitude_rule(whole, d, self.model_axis, count=c) for c in self._counts(t)]
            else:
                chunks = lambda t=t: (c[t] for _, c in source())  # noqa: E731
                self.rules[t] = [magnitude_rule_chunked(chunks, d, count=c) for c in self._counts(t)]

    def _variance(self, deltas: Sequence[Tensor]) -> Tensor:
        return torch.var(torch.stack([d.float() for d in deltas]), dim=0, unbiased=False)

    def _find_variance_rule(self, source: DeltaSource, single: bool) -> None:
        nonzero = sum(int(torch.count_nonzero(self._variance(c))) for _, c in source())
        k = int(nonzero * self.select_topk)
        count = lambda d, n: k  # noqa: E731  SCE keeps a fraction of the entries where the tasks differ
        if single:
            self.variance_rule = magnitude_rule(self._variance(next(iter(source()))[1]), 0.0, count=count)
        else:
            self.variance_rule = magnitude_rule_chunked(lambda: (self._variance(c) for _, c in source()), 0.0,
                                                        count=count)

    def _keep(self, t: int, delta: Tensor, offset: int, state: _MaskState) -> Tensor | None:
        """Boolean keep mask of task t's sparsification for a chunk (None: keeps everything)."""
        if not self.sparse_tasks[t]:
            return None
        method, density = self.knobs.sparsify_method, self.densities[t]
        if method == "random":
            return random_mask(delta, density, self.seeds[t], self.model_axis, offset)
        if method == "della_magprune":
            if density <= 0:
                return torch.zeros(delta.shape, dtype=torch.bool)
            p = della_keep_probability(delta, density, self.epsilons[t])
            return (uniform(self.seeds[t], delta.numel(), offset) < p.reshape(-1)).reshape(delta.shape)
        if not self.rules[t]:
            raise RuntimeError(f"prepare() was not called for tensor {self.name!r}")
        masks = []
        for i, rule in enumerate(self.rules[t]):
            m, state.seen[(t, i)] = magnitude_mask(delta, rule, self.model_axis, state.seen.get((t, i)))
            masks.append(m)
        return masks[0] if len(masks) == 1 else masks[0] & ~masks[1]

    def _variance_keep(self, deltas: Sequence[Tensor], state: _MaskState) -> Tensor | None:
        if self.knobs.coefficients != "sce" or self.select_topk >= 1:
            return None
        if self.select_topk <= 0:
            return torch.zeros(deltas[0].shape, dtype=torch.bool)
        m, state.seen["var"] = magnitude_mask(self._variance(deltas), self.variance_rule, False, state.seen.get("var"))
        return m

    def _norm_parts(self, x: Tensor) -> Tensor:
        """Per model: the statistic the rescale norm accumulates over chunks ([E, 1] sums or maxima)."""
        a = per_model_flat(x, self.model_axis).double().abs()
        norm = self.knobs.rescale_norm
        if norm == "l1":
            return a.sum(1)
        if norm == "l2":
            return a.pow(2).sum(1)
        return a.amax(1) if a.shape[1] else torch.zeros(a.shape[0], dtype=torch.float64)

    def _find_rescale_factors(self, source: DeltaSource) -> None:
        state = _MaskState()
        before = [None] * len(self.weights)
        after = [None] * len(self.weights)
        combine = torch.maximum if self.knobs.rescale_norm == "linf" else torch.add
        for offset, chunk in source():
            for t, d in enumerate(chunk):
                keep = self._keep(t, d, offset, state)
                if keep is None:
                    continue
                b, a = self._norm_parts(d), self._norm_parts(d * keep)
                before[t] = b if before[t] is None else combine(before[t], b)
                after[t] = a if after[t] is None else combine(after[t], a)
        for t in range(len(self.weights)):
            if before[t] is None:
                continue
            b, a = before[t], after[t]
            if self.knobs.rescale_norm == "l2":
                b, a = b.sqrt(), a.sqrt()
            tiny = (b < RESCALE_EPS) | (a < RESCALE_EPS)
            self.rescale_factors[t] = torch.where(tiny, 1.0, b / torch.where(tiny, 1.0, a)).float()

    def _sparsified(self, deltas: Sequence[Tensor], offset: int, state: _MaskState) -> list[Tensor]:
        out = []
        for t, d in enumerate(deltas):
            keep = self._keep(t, d, offset, state)
            if keep is None:
                out.append(d)
                continue
            x = d * keep
            if self.knobs.does_rescale:
                if self.knobs.rescale_norm == "density":
                    x = x / self.densities[t] if self.densities[t] > 0 else x
                else:
                    x = x * self._broadcast(self.rescale_factors[t], x)
            out.append(x)
        vkeep = self._variance_keep(deltas, state)
        return out if vkeep is None else [x * vkeep for x in out]

    def _broadcast(self, stat: Tensor, ref: Tensor) -> Tensor:
        """[E] (model_axis) or [1] statistic shaped to broadcast against ref."""
        if self.model_axis:
            return stat.reshape(-1, *([1] * (ref.dim() - 1))).to(ref.dtype)
        return stat.reshape(()).to(ref.dtype)

    def _find_sce_coefficients(self, source: DeltaSource) -> None:
        state = _MaskState()
        sq = torch.zeros(len(self.weights), dtype=torch.float64)
        n = 0
        for offset, chunk in source():
            xs = self._sparsified(chunk, offset, state)
            sq += torch.stack([x.double().pow(2).sum() for x in xs])
            n += chunk[0].numel()
        energy = sq / max(n, 1)
        total = float(energy.sum())
        self.sce_coefficients = (torch.full_like(energy, 1.0 / len(energy)) if abs(total) < 1e-6 else energy / total).float()

    @staticmethod
    def _stock_t(dots: Tensor, sq: Tensor, n_tasks: int) -> Tensor:
        """Model Stock's interpolation factor from pairwise dots [P, ...] and squared norms [T, ...]."""
        norms = sq.sqrt()
        cos = []
        p = 0
        for a in range(n_tasks):
            for b in range(a + 1, n_tasks):
                cos.append((dots[p] / (norms[a] * norms[b]).clamp(min=1e-6)).clamp(-1, 1))
                p += 1
        cos = torch.stack(cos).mean(0)
        den = 1 + (n_tasks - 1) * cos
        singular = den.abs() < 1e-6  # no finite estimate: keep the base (mergekit's choice)
        return torch.where(singular, 0.0, n_tasks * cos / torch.where(singular, 1.0, den))

    def _pair_stats(self, deltas: Sequence[Tensor], dim: int | None) -> tuple[Tensor, Tensor]:
        xs = [d.double() for d in deltas]
        red = (lambda x: x.sum()) if dim is None else (lambda x: x.sum(dim))  # noqa: E731
        dots = torch.stack([red(xs[a] * xs[b]) for a in range(len(xs)) for b in range(a + 1, len(xs))])
        return dots, torch.stack([red(x * x) for x in xs])

    def _find_stock_factor(self, source: DeltaSource) -> None:
        dots = sq = None
        for _, chunk in source():
            d, s = self._pair_stats(chunk, None)
            dots, sq = (d, s) if dots is None else (dots + d, sq + s)
        self.stock_factor = self._stock_t(dots, sq, len(self.weights)).float()

    # ---- the merge ----------------------------------------------------------------------------------

    def _coefficients(self, deltas: Sequence[Tensor]) -> list[Tensor]:
        ref = deltas[0]
        mode, n = self.knobs.coefficients, len(deltas)
        if mode == "sce":
            return [self.sce_coefficients[t].to(ref.dtype) for t in range(n)]
        if mode == "model_stock":
            if n < 2:
                raise ValueError("model_stock needs at least two fine-tuned models besides the base")
            if self.knobs.filter_wise:
                rows = [d.unsqueeze(0) if d.dim() < 2 else d for d in deltas]
                dots, sq = self._pair_stats(rows, -1)
                t = self._stock_t(dots, sq, n)
                t = t.unsqueeze(-1) if ref.dim() >= 2 else t.reshape(())  # one factor per row
            else:
                t = self.stock_factor
            return [(t / n).to(ref.dtype)] * n
        return [per_model_value(x, ref, self.model_axis, f"weight of tensor {self.name!r}").to(ref.dtype)
                for x in self.weights]

    def mixed_delta(self, deltas: Sequence[Tensor], offset: int = 0) -> Tensor:
        """The lam-scaled mixed delta for a chunk; deltas: T tensors of the chunk's shape, float."""
        if self.needs_stats and not self._prepared:
            raise RuntimeError(f"prepare() was not called for tensor {self.name!r}")
        ref = deltas[0]
        sparse = self._sparsified(deltas, offset, self._state)
        c = self._coefficients(deltas)
        weighted = [x * c[t] for t, x in enumerate(sparse)]
        consensus = self.knobs.sign_consensus
        if consensus is None:
            mixed = torch.stack(weighted).sum(0) if len(weighted) > 1 else weighted[0].clone()
            divisor = sum(c)
            divisor = torch.where(torch.as_tensor(divisor).abs() < 1e-8, 1.0, divisor)
        else:
            # SCE elects on the unweighted deltas; the TIES family on the weighted ones (both as mergekit).
            voters = sparse if self.knobs.coefficients == "sce" else weighted
            if consensus == "sum":
                total = torch.stack(voters).sum(0)
            else:
                total = torch.stack([x.sign() for x in voters]).sum(0)
            elected = torch.where(total >= 0, 1.0, -1.0).to(ref.dtype)  # ties elect +
            mixed = torch.zeros_like(ref)
            divisor = torch.zeros_like(ref)
            for t, x in enumerate(voters):
                agree = x.sign() == elected  # zeros never agree: the disjoint mean skips them
                mixed += weighted[t] * agree
                divisor += c[t] * agree
            if self.knobs.coefficients == "sce":
                divisor = divisor.clamp(min=1e-6)  # SCE's guard; its coefficients are never negative
            else:
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
        b = base.to(work)
        if self.knobs.weights_on_models and not self.knobs.normalize:
            # sum_t w_t theta_t = (sum_t w_t) base + sum_t w_t tau_t
            b = b * per_model_value(sum(self.weights), b, self.model_axis, "sum of weights").to(work)
        return (b + mixed).to(base.dtype)


def merge_tensor(name: str, base: Tensor, deltas: Sequence[Tensor], weights: Sequence[float | Tensor],
                 densities: Sequence[float] | None = None, knobs: MergeKnobs = MergeKnobs(), *,
                 lam: float | Tensor = 1.0, seed: int | Tensor = 0, model_axis: bool = False,
                 gammas: Sequence[float] | None = None, epsilons: Sequence[float] | None = None,
                 select_topk: float = 1.0) -> Tensor:
    """Merge one in-memory tensor. deltas: one task-vector tensor per task, same shape as base."""
    densities = list(densities) if densities is not None else [1.0] * len(deltas)
    tm = TensorMerge(name, weights, densities, knobs, lam=lam, seed=seed, model_axis=model_axis,
                     gammas=gammas, epsilons=epsilons, select_topk=select_topk)
    for t, d in enumerate(deltas):
        if tuple(d.shape) != tuple(base.shape):
            raise ValueError(f"tensor {name!r} has shape {tuple(base.shape)} in base but {tuple(d.shape)} in task vector {t}")
    work = torch.promote_types(base.dtype, torch.float32)
    deltas = [d.to(work) for d in deltas]
    if tm.needs_stats:
        tm.prepare(deltas)
    return tm.chunk(base, deltas)


def _per_task(value, n: int, field_name: str) -> list:
    """A value for every task: a list/tuple of length n, or one value shared by all tasks."""
    if isinstance(value, (list, tuple)) and len(value) == n and n > 0 and not _looks_like_param(value):
        return list(value)
    if isinstance(value, (list, tuple)) and n > 1 and len(value) != n and not _looks_like_param(value):
        raise ValueError(f"{field_name}: got {len(value)} values for {n} task vectors")
    return [value] * n


def _looks_like_param(value) -> bool:
    # A list of filter rules is one parameter value, not a list of per-task values.
    return all(isinstance(v, Mapping) for v in value)


def merge(base: StateDict, task_vectors: Sequence[Mapping[str, Tensor]], weights: ParamValue | Sequence[ParamValue] = 1.0,
          *, density: ParamValue | Sequence[ParamValue] = 1.0, sparsify_method: SparsifyMethod | None = None,
          rescale: bool | None = None, rescale_norm: RescaleNorm = "l1", sign_consensus: SignConsensus | None = None,
          normalize: bool = False, coefficients: Coefficients = "given", weights_on_models: bool = False,
          filter_wise: bool = False, gamma: ParamValue | Sequence[ParamValue] = 0.01,
          epsilon: ParamValue | Sequence[ParamValue] = 0.15, select_topk: ParamValue = 1.0,
          lam: float | Tensor = 1.0, seed: int | Tensor = 0, model_axis: bool = False,
          layer_pattern: str = DEFAULT_LAYER_PATTERN) -> dict[str, Tensor]:
    """General task-arithmetic merge of state dicts (see the module docstring for every knob).

    weights/density/gamma/epsilon: one value for all tasks, or a list with one value per task vector; each
    value may be a number, filter rules, a gradient, or an [E] tensor. Integer buffers are copied from base.
    A density below 1 without a sparsify_method is refused (it would be silently ignored otherwise).
    """
    if not task_vectors:
        raise ValueError("merge needs at least one task vector")
    knobs = MergeKnobs(sparsify_method, sign_consensus, normalize, rescale, rescale_norm, coefficients,
                       weights_on_models, filter_wise)
    n = len(task_vectors)
    per_task = {f: _per_task(v, n, f) for f, v in (("weights", weights), ("density", density), ("gamma", gamma),
                                                    ("epsilon", epsilon))}
    n_layers = count_layers(list(base), layer_pattern)
    out: dict[str, Tensor] = {}

    def values(field_name: str, name: str, default: float | None) -> list:
        vals = [resolve(v, name, f"{field_name}[{t}]", n_layers, layer_pattern) for t, v in enumerate(per_task[field_name])]
        for t, v in enumerate(vals):
            if v is None and default is None:
                raise ValueError(f"{field_name}[{t}]: no rule matches tensor {name!r} and there is no default rule")
        return [default if v is None else v for v in vals]

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
            ws = values("weights", name, None)
            ds = [float(d) for d in values("density", name, 1.0)]
            if sparsify_method is None and coefficients != "sce" and any(d < 1.0 for d in ds):
                raise ValueError(f"density < 1 for tensor {name!r} needs a sparsify_method "
                                 f"({', '.join(SPARSIFY_METHODS)})")
            topk = resolve(select_topk, name, "select_topk", n_layers, layer_pattern)
            out[name] = merge_tensor(name, b, deltas, ws, ds, knobs, lam=lam, seed=seed, model_axis=model_axis,
                                     gammas=[float(g) for g in values("gamma", name, 0.01)],
                                     epsilons=[float(e) for e in values("epsilon", name, 0.15)],
                                     select_topk=1.0 if topk is None else float(topk))
    return out


# ---- named methods: presets of merge() ------------------------------------------------------------------


@dataclass(frozen=True)
class MergeMethod:
    """A named preset. ``parameters`` are the config parameters it takes (mergekit's, for mergekit's
    methods): "global" ones are set once, "per_model" ones may also be set for each model."""
    name: str
    knobs: MergeKnobs
    doc: str = ""
    pretty_name: str = ""
    reference: str = ""
    global_parameters: tuple[str, ...] = ()
    per_model_parameters: tuple[str, ...] = ()
    from_mergekit: bool = True
    preset: Callable[[], dict] = field(repr=False, default=dict)
    # whole-tensor methods (slerp, ...; theorylab.edit.geometric) carry their kernel instead of knob settings
    kernel: object | None = field(repr=False, default=None)

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.per_model_parameters + self.global_parameters

    def __call__(self, base: StateDict, task_vectors, weights=1.0, **overrides) -> dict[str, Tensor]:
        if self.kernel is not None:
            raise ValueError(f"{self.name} merges whole models, not task vectors; use "
                             "theorylab.edit.geometric.merge_states")
        kw = {f: getattr(self.knobs, f) for f in ("sparsify_method", "sign_consensus", "normalize", "rescale",
                                                   "rescale_norm", "coefficients", "weights_on_models", "filter_wise")}
        kw.update(overrides)
        return merge(base, task_vectors, weights, **kw)


MERGE_METHODS: dict[str, MergeMethod] = {}

# mergekit's methods outside the task-vector family: named so that a config using them gets pointed there.
MERGEKIT_ONLY_METHODS = ("ram", "ramplus_tl")

_GTA_GLOBAL = ("normalize", "rescale", "lambda", "int8_mask")


def register_merge_method(name: str, *, pretty_name: str = "", reference: str = "",
                          global_parameters: tuple[str, ...] = _GTA_GLOBAL,
                          per_model_parameters: tuple[str, ...] = ("weight", "density"), from_mergekit: bool = True):
    """Decorator: the function returns the knob settings (a dict of MergeKnobs fields) of a named method."""

    def wrap(preset: Callable[[], dict]) -> MergeMethod:
        if name in MERGE_METHODS:
            raise ValueError(f"merge method {name!r} is already registered")
        method = MergeMethod(name, MergeKnobs(**preset()), (preset.__doc__ or "").strip(), pretty_name or name,
                             reference, tuple(global_parameters), tuple(per_model_parameters), from_mergekit, preset)
        MERGE_METHODS[name] = method
        return method

    return wrap


def get_merge_method(name: str) -> MergeMethod:
    if name not in MERGE_METHODS:
        if name in MERGEKIT_ONLY_METHODS:
            raise ValueError(f"merge method {name!r} is a mergekit method outside the task-vector family and is not "
                             f"supported here; use mergekit itself (pip install mergekit; mergekit-yaml config.yml out)")
        raise ValueError(f"unknown merge method {name!r}; known: {', '.join(sorted(MERGE_METHODS))}")
    return MERGE_METHODS[name]


@register_merge_method("linear", pretty_name="Linear", reference="https://arxiv.org/abs/2203.05482",
                       global_parameters=("normalize",), per_model_parameters=("weight",))
def _linear():
    """Wortsman et al. 2022 (model soups): sum_i w_i theta_i / sum_i w_i over the listed models (the base
    model, when given, is one of them); normalize=False drops the division."""
    return {"weights_on_models": True, "normalize": True}


@register_merge_method("task_arithmetic", pretty_name="Task Arithmetic", reference="https://arxiv.org/abs/2212.04089")
def _task_arithmetic():
    """Ilharco et al. 2023: base + lam * sum_t w_t tau_t. No sparsification, no normalization."""
    return {}


@register_merge_method("ties", pretty_name="TIES", reference="https://arxiv.org/abs/2306.01708")
def _ties():
    """Yadav et al. 2023: trim to the top-density magnitudes, elect the sign by summed mass, disjoint mean
    (normalize on by default). rescale=True scales each trimmed tensor back to its untrimmed L1 norm."""
    return {"sparsify_method": "magnitude", "sign_consensus": "sum", "normalize": True, "rescale": False}


@register_merge_method("dare_linear", pretty_name="Linear DARE", reference="https://arxiv.org/abs/2311.03099")
def _dare_linear():
    """Yu et al. 2024: random drop keeping each entry with probability density; the survivors are scaled so
    the tensor keeps its L1 norm (mergekit's rescale; rescale_norm: density gives the paper's 1/density);
    then the weighted sum."""
    return {"sparsify_method": "random", "rescale": True}


@register_merge_method("dare_ties", pretty_name="DARE TIES", reference="https://arxiv.org/abs/2311.03099")
def _dare_ties():
    """DARE drop-and-rescale, then TIES sign election and disjoint sum (normalize off by default)."""
    return {"sparsify_method": "random", "rescale": True, "sign_consensus": "sum"}


_BREADCRUMBS = dict(pretty_name="Model Breadcrumbs", reference="https://arxiv.org/abs/2312.06795",
                    per_model_parameters=("weight", "density", "gamma"))


@register_merge_method("breadcrumbs", **_BREADCRUMBS)
def _breadcrumbs():
    """Davari & Belilovsky 2023: drop the gamma fraction of largest-magnitude entries (outliers) and the
    smallest ones, keeping a density fraction in between; weighted sum."""
    return {"sparsify_method": "magnitude_outliers", "rescale": False}


@register_merge_method("breadcrumbs_ties", **(_BREADCRUMBS | {"pretty_name": "Model Breadcrumbs with TIES"}))
def _breadcrumbs_ties():
    """Breadcrumbs' outlier-and-small trimming, then TIES sign election (normalize off by default)."""
    return {"sparsify_method": "magnitude_outliers", "sign_consensus": "sum", "rescale": False}


_DELLA = dict(pretty_name="DELLA", reference="https://arxiv.org/abs/2406.11617",
              per_model_parameters=("weight", "density", "epsilon"))


@register_merge_method("della", **_DELLA)
def _della():
    """Deep et al. 2024: MAGPRUNE (random drop, keep probability rising with magnitude rank in each row,
    density +- epsilon), L1 rescale, TIES sign election and disjoint mean."""
    return {"sparsify_method": "della_magprune", "sign_consensus": "sum", "normalize": True, "rescale": True}


@register_merge_method("della_linear", **(_DELLA | {"pretty_name": "Linear DELLA"}))
def _della_linear():
    """MAGPRUNE and L1 rescale, then the weighted sum (no sign election, no normalize)."""
    return {"sparsify_method": "della_magprune", "rescale": True}


@register_merge_method("sce", pretty_name="SCE", reference="https://arxiv.org/abs/2408.07990",
                       global_parameters=("select_topk", "int8_mask"), per_model_parameters=())
def _sce():
    """Wan et al. 2024 (FuseChat): keep the select_topk fraction of entries that vary most across the task
    vectors, weight each task by its share of the mean squared delta, elect signs (sum), disjoint mean.
    Takes no per-model weights."""
    return {"coefficients": "sce", "sign_consensus": "sum", "normalize": True}


@register_merge_method("model_stock", pretty_name="Model Stock", reference="https://arxiv.org/abs/2403.19522",
                       global_parameters=("filter_wise",), per_model_parameters=())
def _model_stock():
    """Jang et al. 2024: base + t * mean_t tau_t with t = N cos / (1 + (N - 1) cos) from the mean pairwise
    cosine of the task vectors (per tensor, or per row with filter_wise). Needs two or more models."""
    return {"coefficients": "model_stock"}


@register_merge_method("magnitude_prune", from_mergekit=False)
def _magnitude_prune():
    """theorylab: task arithmetic on magnitude-trimmed task vectors (keep the top-density entries of each
    tensor), no sign election, no rescale."""
    return {"sparsify_method": "magnitude"}


@register_merge_method("magnitude_prune_rescaled", from_mergekit=False)
def _magnitude_prune_rescaled():
    """theorylab: magnitude trimming with kept entries divided by density (keeps the task vector's scale)."""
    return {"sparsify_method": "magnitude", "rescale": True, "rescale_norm": "density"}


from . import geometric as _geometric  # noqa: E402,F401  registers slerp, nuslerp, ... (whole-tensor kernels)
