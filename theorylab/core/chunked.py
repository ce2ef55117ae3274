"""A loss computed a few models at a time, each slice's forward and backward done while its tensors are still in
cache, returned as one [E] loss that carries the gradient already computed.

On a CPU a study whose per-model work is large (millions of activations per model and step) runs slower as one
ensemble than as a loop over models: the ensemble's intermediates ([E, ...], tens of MB) fall out of the caches
between one operation and the next, a single model's do not. `chunked_loss` keeps the ensemble's one call per step
for the trainer and does the work in slices of `chunk` models, so each slice is computed at a single model's cache
footprint. Models share no parameters, so the gradient of the summed loss is exactly each slice's own: the numbers
are those of the whole-ensemble computation (bit for bit when the study's operations treat the model axis as a
batch axis, which batched matmuls, softmax and reductions over the other axes do; no slice holds a single model,
see model_slices).

The returned loss differentiates only to first order, and only through the parameters that required a gradient
when it was called (core's trainer asks for exactly those).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from theorylab.core.ensemble import expand_to

CACHE_FLOATS = 1 << 19  # floats of a slice's largest activation on a CPU (2 MB of float32: near a core's L2)


def models_per_slice(floats_per_model: int, models: int, device: torch.device, cache: int = CACHE_FLOATS) -> int:
    """Models per slice: on a CPU as many as keep a slice's largest activation (`floats_per_model` per model)
    within `cache` floats; elsewhere (a GPU's memory system wants the whole ensemble) all of them."""
    if device.type != "cpu":
        return models
    return max(1, cache // max(1, floats_per_model))


# loss_of(params_slice, models) -> {"loss": [e], other per-model outputs [e, ...]} for the models of the slice
SliceLoss = Callable[[dict[str, torch.Tensor], slice], dict[str, torch.Tensor]]


class _WithGradient(torch.autograd.Function):
    """loss [E] whose gradient with respect to each parameter is the precomputed d loss.sum() / d parameter, each
    model's slice scaled by the incoming gradient of its loss (1 from a plain sum: exact)."""

    @staticmethod
    def forward(ctx, loss: torch.Tensor, count: int, *grads_then_params: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*grads_then_params[:count])
        ctx.count = count
        return loss.clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        grads = ctx.saved_tensors
        # a model whose loss gets no gradient (the trainer zeroes a non-finite loss) gets exactly 0, even if its
        # precomputed gradient is not finite
        scaled = [torch.where(expand_to(g != 0, G), G * expand_to(g, G), 0.0) for G in grads]
        return (None, None, *([None] * ctx.count), *scaled)


def model_slices(models: int, chunk: int) -> list[slice]:
    """Consecutive slices of about `chunk` models covering all of them, none of a single model unless the ensemble
    is one: torch's batched matrix-vector product takes another path for a batch of one and rounds differently, so
    a slice of one would not reproduce the whole-ensemble numbers bit for bit."""
    size = max(1 if models < 2 else 2, chunk)
    starts = list(range(0, models, size))
    if len(starts) > 1 and models - starts[-1] == 1:  # a trailing single model joins the slice before it
        starts.pop()
    bounds = [*starts, models]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def chunked_loss(loss_of: SliceLoss, params: dict[str, torch.Tensor], models: int, chunk: int) -> dict[str, torch.Tensor]:
    """loss_of's outputs for all `models` models, computed `chunk` models at a time (params [E, ...] are sliced on
    their first axis); "loss" carries the gradient with respect to the parameters that require one."""
    if chunk >= models:  # one slice: the plain computation, autograd as usual
        return loss_of(params, slice(0, models))
    need = [k for k, v in params.items() if v.requires_grad] if torch.is_grad_enabled() else []
    outs: list[dict[str, torch.Tensor]] = []
    grads: list[tuple[torch.Tensor, ...]] = []
    for models_slice in model_slices(models, chunk):
        part = {k: v[models_slice].detach().requires_grad_(k in need) for k, v in params.items()}
        out = loss_of(part, models_slice)
        if need:
            grads.append(torch.autograd.grad(out["loss"].sum(), [part[k] for k in need]))
        outs.append({k: v.detach() for k, v in out.items()})
    merged = {k: torch.cat([o[k] for o in outs]) if len(outs) > 1 else outs[0][k] for k in outs[0]}
    if need:
        full = [torch.cat([g[i] for g in grads]) if len(grads) > 1 else grads[0][i] for i in range(len(need))]
        merged["loss"] = _WithGradient.apply(merged["loss"], len(need), *full, *(params[k] for k in need))
    return merged
