"""LwPTV: layer-wise pruning of task vectors (Zhang et al. 2025, arXiv 2506.09093).

For each task t and block l a saliency score s_t[l] (1 - redundancy) is computed; the least salient
blocks of each task are masked, so the merged model keeps the pre-trained weights there; the masked
task vectors then feed any merge method. The paper's exact score was not recovered
(../shared/papers/taskvec_lwptv_ap_diffusion.md, section 2.2); the default is that file's D1:

- "salient_mass" (D1, default): q_t = the global top-``top_k`` magnitude threshold of tau_t over all
  editable tensors; s_t[l] = fraction of the block's entries with |tau| >= q_t.
- "relative_update" (D2): ||tau_t^l||_F / ||theta0^l||_F.
- "cross_task" (D3): 1 - mean_{u != t} cos(tau_t^l, tau_u^l) (an update all tasks share is redundant).

A score is any function (task_vectors, base, groups, model_axis) -> Tensor [T, L] ([T, L, E] with
model_axis); pass it as ``score=``. Tensors outside blocks (embeddings, final norm, heads) are never masked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from .state import DEFAULT_LAYER_PATTERN, StateDict, check_fraction, count_of, is_editable, layer_index, per_model_flat

Groups = dict[int, list[str]]  # block index -> tensor names
ScoreFn = Callable[[Sequence[Mapping[str, Tensor]], StateDict, Groups, bool], Tensor]


def layer_groups(names: Sequence[str], layer_pattern: str = DEFAULT_LAYER_PATTERN) -> Groups:
    groups: Groups = {}
    for n in names:
        i = layer_index(n, layer_pattern)
        if i is not None:
            groups.setdefault(i, []).append(n)
    return dict(sorted(groups.items()))


def _flat_group(tv: Mapping[str, Tensor], names: list[str], model_axis: bool) -> Tensor:
    return torch.cat([per_model_flat(tv[n].float(), model_axis) for n in names], dim=1)  # [E, n_l]


def _squeeze(scores: Tensor, model_axis: bool) -> Tensor:
    return scores if model_axis else scores[..., 0]  # [T, L, E] -> [T, L]


def salient_mass(task_vectors, base, groups: Groups, model_axis: bool = False, top_k: float = 0.2) -> Tensor:
    out = []
    for tv in task_vectors:
        names = [n for n in tv if is_editable(tv[n])]
        a = _flat_group(tv, names, model_axis).abs()  # [E, N] over every editable tensor
        k = max(count_of(top_k, a.shape[1]), 1)
        q = a.kthvalue(a.shape[1] - k + 1, dim=1).values  # [E]
        out.append(torch.stack([(_flat_group(tv, g, model_axis).abs() >= q[:, None]).float().mean(1)
                                for g in groups.values()]))  # [L, E]
    return _squeeze(torch.stack(out), model_axis)


def relative_update(task_vectors, base, groups: Groups, model_axis: bool = False) -> Tensor:
    out = []
    for tv in task_vectors:
        out.append(torch.stack([_flat_group(tv, g, model_axis).norm(dim=1)
                                / _flat_group(base, g, model_axis).norm(dim=1).clamp_min(1e-12)
                                for g in groups.values()]))
    return _squeeze(torch.stack(out), model_axis)


def cross_task_from_gram(gram: Tensor) -> Tensor:
    """gram [..., T, T] of task-vector inner products in one block -> [..., T]: 1 - mean_{u != t} cos(tau_t, tau_u).
    Shared by the in-memory score below and the streaming one (theorylab.hf.lwptv), which accumulates gram."""
    T = gram.shape[-1]
    norms = gram.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt().clamp_min(1e-12)  # [..., T]
    cos = gram / (norms[..., :, None] * norms[..., None, :])
    return 1 - (cos.sum(-1) - cos.diagonal(dim1=-2, dim2=-1)) / (T - 1)


def cross_task(task_vectors, base, groups: Groups, model_axis: bool = False) -> Tensor:
    if len(task_vectors) < 2:
        raise ValueError("the cross_task score needs at least two task vectors")
    per_layer = []
    for g in groups.values():
        x = torch.stack([_flat_group(tv, g, model_axis) for tv in task_vectors])  # [T, E, n_l]
        per_layer.append(cross_task_from_gram(torch.einsum("ten,uen->etu", x, x)).T)  # [T, E]
    return _squeeze(torch.stack(per_layer, dim=1), model_axis)  # [T, L, E]


SCORES: dict[str, ScoreFn] = {"salient_mass": salient_mass, "relative_update": relative_update, "cross_task": cross_task}


@dataclass(frozen=True)
class LayerMasks:
    """keep[t, l] (or [t, l, e]): True where task t keeps its update in block layers[l]."""

    layers: list[int]
    keep: Tensor
    scores: Tensor
    groups: Groups

    def pruned_layers(self, task: int, model: int | None = None) -> list[int]:
        k = self.keep[task] if model is None else self.keep[task, :, model]
        return [l for l, kept in zip(self.layers, k.tolist()) if not kept]


def lwptv_masks(task_vectors: Sequence[Mapping[str, Tensor]], base: StateDict, ratio: float | None = 0.2, *,
                threshold: float | None = None, score: str | ScoreFn = "salient_mass",
                mode: Literal["per_task", "global"] = "per_task", layer_pattern: str = DEFAULT_LAYER_PATTERN,
                model_axis: bool = False) -> LayerMasks:
    """Per-task layer masks. ratio: prune the floor(ratio * L) least-salient blocks of each task (ties by
    block order); threshold: instead prune blocks with score <= threshold. mode="global": a block is kept
    for every task unless every task prunes it (the literal "pre-trained layer in the merged model")."""
    fn = SCORES.get(score) if isinstance(score, str) else score
    if fn is None:
        raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)} (or pass a function)")
    groups = layer_groups([n for n in base if is_editable(base[n])], layer_pattern)
    if not groups:
        raise ValueError(f"no tensor name matches layer_pattern {layer_pattern!r}")
    return masks_from_scores(fn(task_vectors, base, groups, model_axis), groups, ratio, threshold=threshold, mode=mode)


def masks_from_scores(s: Tensor, groups: Groups, ratio: float | None = 0.2, *, threshold: float | None = None,
                      mode: Literal["per_task", "global"] = "per_task") -> LayerMasks:
    """Masks from saliency scores s [T, L] (or [T, L, E]) of the blocks in ``groups`` (in order); shared by
    the in-memory path above and the streaming checkpoint merge (theorylab.hf.lwptv)."""
    if threshold is not None:
        keep = s > threshold
    else:
        check_fraction(ratio, "ratio")
        L = s.shape[1]
        order = torch.sort(s, dim=1, stable=True).indices
        keep = torch.ones_like(s, dtype=torch.bool)
        keep.scatter_(1, order[:, : count_of(ratio, L)], False)
    if mode == "global":
        keep = keep.any(dim=0, keepdim=True).expand_as(keep).clone()
    elif mode != "per_task":
        raise ValueError(f"mode must be 'per_task' or 'global', got {mode!r}")
    return LayerMasks(list(groups), keep, s, groups)


def apply_layer_masks(task_vectors: Sequence[Mapping[str, Tensor]], masks: LayerMasks,
                      model_axis: bool = False) -> list[dict[str, Tensor]]:
    """Task vectors with masked blocks zeroed; feed the result to any merge method."""
    out = []
    for t, tv in enumerate(task_vectors):
        masked = dict(tv)
        for li, layer in enumerate(masks.layers):
            k = masks.keep[t, li]
            for name in masks.groups[layer]:
                v = tv[name]
                m = k.reshape(-1, *([1] * (v.dim() - 1))) if model_axis else k
                masked[name] = v * m.to(v.dtype)
        out.append(masked)
    return out
