"""Whole-tensor merge kernels outside the task-vector family: mergekit 0.1.5's interpolation methods.

Each kernel takes one output tensor's inputs whole (these methods normalise over the entire tensor, so
they cannot stream row blocks) and follows mergekit 0.1.5's arithmetic step by step, including the
precision it works in: slerp and karcher accumulate norms in float32 (float64 for float64 inputs), the
others compute in the dtype of their inputs. That dtype is chosen by the caller (mergekit: the config's
``dtype``), so a bfloat16 merge is a bfloat16 computation, as in mergekit.

    slerp        base + one model; spherical interpolation of the two whole tensors at ``t``; when they
                 are (anti)parallel (|cos| > 0.9995) it falls back to (1 - t) v0 + t v1.
    nuslerp      two models; t = w_1 / (w_0 + w_1); spherical interpolation of the flattened tensors,
                 of each row, or of each column; with a base, of the two task vectors.
    multislerp   any number of models: weighted mean direction on the unit sphere via one tangent step,
                 rescaled to the weighted mean norm; with a base, of the task vectors.
    karcher      every input (the base too): weighted Karcher (Frechet) mean of the directions by a few
                 Riemannian gradient steps, rescaled to the weighted mean norm.
    nearswap     base + one model: take the model's value where it is within t of the base, blend
                 towards the base in proportion t / |difference| elsewhere.
    arcee_fusion base + one model: keep the model's change only where |change| * KL(softmax rows) is an
                 outlier (>= median + 1.5 IQR of all scores).
    passthrough  one input, optionally scaled (layer stacking happens in the slicing, not here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

BasePolicy = Literal["required", "optional", "ignored"]
# mergekit's slerp splits a tensor into pieces of this many elements for its norms and dots; the pieces'
# partial sums decide the float32 rounding, so the same split is kept here.
SLERP_PIECE = 1024 * 1024
SLERP_DOT_THRESHOLD = 0.9995
SLERP_EPS = 1e-8
ARCEE_SAMPLE = 1_000_000  # above this many scores mergekit samples its quantiles at random


@dataclass(frozen=True)
class KernelInputs:
    """One output tensor's inputs. base: the base model's tensor when the method uses one; models: the
    other inputs in config order; weights: their per-model weights (None where not given); scales: the
    per-input passthrough scales; params: the method's global parameters for this tensor."""
    base: Tensor | None
    models: Sequence[Tensor]
    weights: Sequence[float | None]
    params: Mapping[str, Any]
    scales: Sequence[float | None] = ()


@dataclass(frozen=True)
class Kernel:
    fn: Callable[[KernelInputs], Tensor]
    base: BasePolicy
    min_models: int  # inputs besides the base (with base "ignored": all inputs)
    max_models: int | None
    defaults: Mapping[str, Any]  # global parameters and their defaults (None: required)


def _float_work(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def slerp(t: float, v0: Tensor, v1: Tensor, dot_threshold: float = SLERP_DOT_THRESHOLD,
          eps: float = SLERP_EPS) -> Tensor:
    """Spherical interpolation of two whole tensors; the result has v0's dtype."""
    work = _float_work(v0)
    a, b = v0.reshape(1, -1), v1.reshape(1, -1)
    tt = torch.tensor([[t]], dtype=work)
    if a.shape[1] == 0:
        return ((1 - tt) * a + tt * b).reshape(v0.shape).to(v0.dtype)
    pieces = range(0, a.shape[1], SLERP_PIECE)
    piece = lambda x, s: x[:, s:s + SLERP_PIECE].to(work)  # noqa: E731
    # the norm of the pieces' norms (mergekit's order of summation)
    norm_a = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(piece(a, s), dim=1, keepdim=True)
                                                   for s in pieces]), dim=0)
    norm_b = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(piece(b, s), dim=1, keepdim=True)
                                                   for s in pieces]), dim=0)
    norm_a = torch.where(norm_a > eps, norm_a, 1)
    norm_b = torch.where(norm_b > eps, norm_b, 1)
    dot = torch.stack([(piece(a, s) / norm_a * (piece(b, s) / norm_b)).sum(dim=1, keepdim=True)
                       for s in pieces]).sum(dim=0).clamp(-1, 1)
    nearly_parallel = dot.abs() > dot_threshold
    theta = torch.acos(torch.where(nearly_parallel, 0, dot))
    sin_theta = torch.sin(theta)
    ca = torch.where(nearly_parallel, 1 - tt, torch.sin((1 - tt) * theta) / sin_theta)
    cb = torch.where(nearly_parallel, tt, torch.sin(tt * theta) / sin_theta)
    out = torch.empty_like(a)
    for s in pieces:
        out[:, s:s + SLERP_PIECE] = ca * piece(a, s) + cb * piece(b, s)
    return out.reshape(v0.shape)


def _slerp(x: KernelInputs) -> Tensor:
    return slerp(float(x.params["t"]), x.base, x.models[0])


def nuslerp(t: float, v0: Tensor, v1: Tensor, dim: int = -1, eps: float = 1e-8, flatten: bool = False) -> Tensor:
    """Spherical interpolation along one axis (each slice separately) or of the flattened tensors, in the
    inputs' dtype; where the two are parallel to within eps, linear interpolation."""
    shape = v0.shape
    if flatten:
        v0, v1 = v0.reshape(-1), v1.reshape(-1)
    elif dim != -1:
        v0, v1 = v0.transpose(dim, -1), v1.transpose(dim, -1)
    unit = lambda v: v / torch.norm(v, dim=-1, keepdim=True).clamp(min=1e-7)  # noqa: E731
    cos = torch.sum(unit(v0) * unit(v1), dim=-1, keepdim=True).clamp(-1, 1)
    parallel = (1 - cos.square()) <= eps ** 2
    theta = torch.acos(torch.where(parallel, 0, cos))
    spherical = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
    out = torch.where(parallel, (1 - t) * v0 + t * v1, spherical)
    if dim != -1 and not flatten:
        out = out.transpose(dim, -1)
    return out.reshape(shape)


def _nuslerp(x: KernelInputs) -> Tensor:
    w0, w1 = (float(w) for w in x.weights)
    total = w0 + w1
    t = 0.5 if abs(total) < 1e-6 else w1 / total
    dim = 0 if x.params["nuslerp_row_wise"] else -1
    flatten = bool(x.params["nuslerp_flatten"])
    if x.base is None:
        return nuslerp(t, x.models[0], x.models[1], dim=dim, flatten=flatten)
    return x.base + nuslerp(t, x.models[0] - x.base, x.models[1] - x.base, dim=dim, flatten=flatten)


def _multislerp(x: KernelInputs) -> Tensor:
    eps = float(x.params["eps"])
    if len(x.models) == 1:
        return x.models[0]
    stacked = torch.stack(list(x.models), dim=0)
    if x.base is not None:
        stacked = stacked - x.base
    flat = stacked.reshape(stacked.shape[0], -1)
    w = torch.tensor([float(v) for v in x.weights], dtype=stacked.dtype)
    if x.params["normalize_weights"]:
        w = w / w.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    units = flat / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if stacked.shape[0] != 2:
            raise ValueError("multislerp: the weighted mean direction of the inputs is zero (antipodal inputs "
                             "with balancing weights); change the weights")
        out = (stacked[0] * w[0] + stacked[1] * w[1]).view(stacked.shape[1:])
        return out if x.base is None else out + x.base
    mean = mean / mean_norm
    tangent = units - (units * mean).sum(-1, keepdim=True) * mean
    step = (tangent * w.view(-1, 1)).sum(0)
    step_norm = torch.norm(step) + eps
    out = mean * torch.cos(step_norm) + step * (torch.sin(step_norm) / step_norm)
    out = (out * (norms.squeeze(-1) * w).sum()).view(stacked.shape[1:])
    return out if x.base is None else out + x.base


def karcher_mean(tensors: Sequence[Tensor], alphas: Sequence[float], max_iter: int = 10, tol: float = 1e-5) -> Tensor:
    """Weighted Karcher mean of the directions, scaled by the weighted mean norm (mergekit's iteration:
    norms in float32/float64, directions kept in the inputs' dtype)."""
    if len(tensors) == 1:
        return tensors[0]
    work = _float_work(tensors[0])
    norms = [torch.linalg.vector_norm(v.to(work)) for v in tensors]
    units = [torch.zeros_like(v) if n.item() == 0.0 else (v / n).to(v.dtype) for v, n in zip(tensors, norms)]
    live = [i for i, n in enumerate(norms) if n.item() > tol]
    if not live:
        return sum(v * 0 for v in tensors)
    total = sum(alphas[i] for i in live)
    a = [alphas[i] / total for i in live]
    us = [units[i] for i in live]
    mean = torch.zeros_like(us[0])
    for ai, u in zip(a, us):
        mean += ai * u
    mean_norm = torch.linalg.vector_norm(mean.to(work))
    mean = us[0].clone() if mean_norm.item() < tol else (mean / mean_norm).to(mean.dtype)
    for _ in range(max_iter):
        tangent = torch.zeros_like(mean)
        for ai, u in zip(a, us):
            cos = torch.clamp(torch.dot(mean.flatten(), u.flatten()), -1.0, 1.0)
            angle = torch.arccos(cos)
            if angle.item() < tol:
                continue
            tangent += ai * (angle / torch.sin(angle)) * (u - cos * mean)
        tangent_norm = torch.linalg.vector_norm(tangent.to(work))
        if tangent_norm.item() < tol:
            break
        mean = (torch.cos(tangent_norm) * mean + torch.sin(tangent_norm) * (tangent / tangent_norm)).to(mean.dtype)
        length = torch.linalg.vector_norm(mean.to(work))
        if length.item() > tol:
            mean = (mean / length).to(mean.dtype)
    return sum(ai * n for ai, n in zip(alphas, norms)) * mean


def _karcher(x: KernelInputs) -> Tensor:
    ins = list(x.models)
    return karcher_mean(ins, [1.0 / len(ins)] * len(ins), max_iter=int(x.params["max_iter"]),
                        tol=float(x.params["tol"]))


def _nearswap(x: KernelInputs) -> Tensor:
    a, b = x.base, x.models[0]
    w = (float(x.params["t"]) / torch.abs(a - b).clamp(min=1e-6)).clamp(min=0, max=1)
    return w * b + (1 - w) * a


def _rough_quantiles(scores: Tensor, qs: Sequence[float]) -> list[Tensor]:
    flat = scores.reshape(-1)
    if flat.numel() > ARCEE_SAMPLE:  # mergekit samples with replacement here: the merge becomes random
        flat = flat[torch.randint(flat.numel(), (ARCEE_SAMPLE,))]
    ordered, _ = torch.sort(flat)
    idx = (torch.tensor(list(qs)) * (ordered.numel() - 1)).long()
    return list(ordered[idx])


def _arcee_fusion(x: KernelInputs) -> Tensor:
    base, model = x.base, x.models[0]
    change = (model - base).abs()
    p = F.softmax(model, dim=-1) + 1e-8
    q = F.softmax(base, dim=-1) + 1e-8
    kl = torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)
    scores = change * kl
    q1, median, q3 = _rough_quantiles(scores, (0.25, 0.5, 0.75))
    keep = (scores >= median + 1.5 * (q3 - q1)).float()
    return base + (model - base) * keep


def _passthrough(x: KernelInputs) -> Tensor:
    v = x.models[0]
    scale = x.scales[0] if x.scales else None
    return v if scale is None else v * scale


KERNELS: dict[str, Kernel] = {
    "slerp": Kernel(_slerp, "required", 1, 1, {"t": None}),
    "nuslerp": Kernel(_nuslerp, "optional", 2, 2, {"nuslerp_row_wise": False, "nuslerp_flatten": True}),
    "multislerp": Kernel(_multislerp, "optional", 1, None, {"normalize_weights": True, "eps": 1e-8}),
    "karcher": Kernel(_karcher, "ignored", 1, None, {"max_iter": 10, "tol": 1e-5}),
    "nearswap": Kernel(_nearswap, "required", 1, 1, {"t": None}),
    "arcee_fusion": Kernel(_arcee_fusion, "required", 1, 1, {}),
    "passthrough": Kernel(_passthrough, "ignored", 1, 1, {}),
}

_INFO = {  # pretty name, reference, per-model parameters
    "slerp": ("SLERP", "https://en.wikipedia.org/wiki/Slerp", ()),
    "nuslerp": ("NuSLERP", "", ("weight",)),
    "multislerp": ("Multi-SLERP", "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea", ("weight",)),
    "karcher": ("Karcher Mean", "https://en.wikipedia.org/wiki/Karcher_mean", ()),
    "nearswap": ("NearSwap", "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001", ()),
    "arcee_fusion": ("Arcee Fusion", "https://arcee.ai", ()),
    "passthrough": ("Passthrough", "", ("scale",)),
}


def _register() -> None:
    from .merge import MERGE_METHODS, MergeKnobs, MergeMethod

    for name, kernel in KERNELS.items():
        pretty, ref, per_model = _INFO[name]
        doc = next((line.split(None, 1)[1] for line in __doc__.splitlines() if line.strip().startswith(name + " ")), "")
        MERGE_METHODS[name] = MergeMethod(name, MergeKnobs(), doc, pretty, ref, tuple(kernel.defaults), per_model,
                                          kernel=kernel)


_register()


def merge_states(method: str, models: Sequence[Mapping[str, Tensor]], *, base: Mapping[str, Tensor] | None = None,
                 weights: Sequence[float] | None = None, scales: Sequence[float | None] | None = None,
                 dtype: torch.dtype | None = None, **params) -> dict[str, Tensor]:
    """Merge in-memory state dicts with a whole-tensor method (scalar parameters only; for gradients,
    filters and layer slices use theorylab.hf.merge_checkpoints). models excludes the base. Non-float
    tensors come from the first input. dtype: the compute dtype (mergekit's ``dtype``); default: the
    promoted dtype of the inputs."""
    kernel = KERNELS[method]
    unknown = set(params) - set(kernel.defaults)
    if unknown:
        raise ValueError(f"{method} takes no parameter {sorted(unknown)[0]!r} (it takes: {', '.join(kernel.defaults)})")
    p = dict(kernel.defaults) | params
    missing = [k for k, v in p.items() if v is None]
    if missing:
        raise ValueError(f"{method} needs the parameter {missing[0]!r}")
    if kernel.base == "required" and base is None:
        raise ValueError(f"{method} needs a base model")
    inputs = list(models) + ([base] if base is not None and kernel.base == "ignored" else [])
    use_base = base if kernel.base != "ignored" else None
    n = len(inputs)
    if n < kernel.min_models or (kernel.max_models is not None and n > kernel.max_models):
        raise ValueError(f"{method} takes {kernel.min_models}..{kernel.max_models or 'any'} models besides the base, got {n}")
    out = {}
    for name, first in inputs[0].items():
        if not first.is_floating_point():
            out[name] = first.clone()
            continue
        group = ([use_base[name]] if use_base is not None else []) + [m[name] for m in inputs]
        work = dtype or _promoted(group)
        ts = [g.to(work) for g in group]
        b, rest = (ts[0], ts[1:]) if use_base is not None else (None, ts)
        out[name] = kernel.fn(KernelInputs(b, rest, list(weights or [None] * n), p, list(scales or [None] * n)))
    return out


def _promoted(tensors: Sequence[Tensor]) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype
