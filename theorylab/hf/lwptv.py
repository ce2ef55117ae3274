"""LwPTV on checkpoints: the saliency scores of theorylab.edit.lwptv computed by streaming row blocks.

Same definitions as the in-memory scores (tests check the two agree), so a merge config's
``parameters.lwptv`` gives the masks ``lwptv_masks`` would give on the loaded state dicts:

- relative_update: per block, sum tau^2 and sum theta0^2 accumulated chunk by chunk;
- cross_task: per block, the Gram matrix <tau_t, tau_u> accumulated chunk by chunk;
- salient_mass: the global top-k threshold of |tau_t| over every float tensor, found exactly with the
  two histogram passes of ``magnitude_rule_chunked``, then a third pass counting entries >= it per block.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..edit.lwptv import Groups, LayerMasks, cross_task_from_gram, layer_groups, masks_from_scores
from ..edit.sparsify import magnitude_rule_chunked
from .checkpoint import CheckpointReader


def _deltas(base: CheckpointReader, model: CheckpointReader, names: Sequence[str], chunk_elems: int) -> Iterator[tuple[str, Tensor]]:
    """(tensor name, row block of model - base in float64) over ``names``."""
    for name in names:
        for a, b in base.info(name).row_blocks(chunk_elems):
            yield name, model.read_rows(name, a, b).double() - base.read_rows(name, a, b).double()


def streaming_scores(base: CheckpointReader, models: Sequence[CheckpointReader], groups: Groups, score: str,
                     top_k: float = 0.2, chunk_elems: int = 1 << 22) -> Tensor:
    """[T, L] saliency of each model's task vector in each block of ``groups``."""
    layer_of = {n: li for li, names in enumerate(groups.values()) for n in names}
    L, T = len(groups), len(models)
    if score == "relative_update":
        tau_sq, base_sq = torch.zeros(T, L, dtype=torch.float64), torch.zeros(L, dtype=torch.float64)
        for name in layer_of:
            for a, b in base.info(name).row_blocks(chunk_elems):
                rows = base.read_rows(name, a, b).double()
                base_sq[layer_of[name]] += rows.pow(2).sum()
                for t, m in enumerate(models):
                    tau_sq[t, layer_of[name]] += (m.read_rows(name, a, b).double() - rows).pow(2).sum()
        return (tau_sq.sqrt() / base_sq.sqrt().clamp_min(1e-12)).float()
    if score == "cross_task":
        if T < 2:
            raise ValueError("parameters.lwptv.score cross_task needs at least two models")
        gram = torch.zeros(L, T, T, dtype=torch.float64)
        for name in layer_of:
            for a, b in base.info(name).row_blocks(chunk_elems):
                rows = base.read_rows(name, a, b).double()
                x = torch.stack([(m.read_rows(name, a, b).double() - rows).reshape(-1) for m in models])  # [T, n]
                gram[layer_of[name]] += x @ x.T
        return cross_task_from_gram(gram).T.float()  # [L, T] -> [T, L]
    if score == "salient_mass":
        float_names = [n for n in base.names if base.info(n).dtype.is_floating_point]
        out = torch.zeros(T, L, dtype=torch.float64)
        size = torch.zeros(L, dtype=torch.float64)
        for name, li in layer_of.items():
            size[li] += base.info(name).numel
        for t, m in enumerate(models):
            rule = magnitude_rule_chunked(lambda m=m: (d.float() for _, d in _deltas(base, m, float_names, chunk_elems)),
                                          top_k)
            q = float(rule.threshold[0])
            for name, d in _deltas(base, m, list(layer_of), chunk_elems):
                out[t, layer_of[name]] += (d.float().abs() >= q).sum()
        return (out / size).float()
    raise ValueError(f"parameters.lwptv.score: unknown score {score!r}; known: salient_mass, relative_update, cross_task")


def checkpoint_masks(base: CheckpointReader, models: Sequence[CheckpointReader], *, score: str = "salient_mass",
                     ratio: float | None = 0.2, threshold: float | None = None, mode: str = "per_task",
                     top_k: float = 0.2, layer_pattern: str, chunk_elems: int = 1 << 22) -> LayerMasks:
    """Per-task block masks for a streaming merge (keep[t, l] False: task t keeps theta0 in block l)."""
    groups = layer_groups([n for n in base.names if base.info(n).dtype.is_floating_point], layer_pattern)
    if not groups:
        raise ValueError(f"parameters.lwptv: no tensor name matches the layer pattern {layer_pattern!r}")
    s = streaming_scores(base, models, groups, score, top_k, chunk_elems)
    return masks_from_scores(s, groups, ratio, threshold=threshold, mode=mode)
