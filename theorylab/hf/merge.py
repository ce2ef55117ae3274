"""Streaming merge of Hugging Face checkpoints: one tensor (row block) at a time.

Peak memory is set by the largest tensor, never by the number of models or the checkpoint size:
row blocks of ``chunk_elems`` elements are read from every model, merged with theorylab.edit's
TensorMerge and written straight into the planned output shard. Only magnitude sparsification
(TIES trimming) reads each tensor twice more per model: two histogram passes find the exact top-k
threshold without holding the whole delta.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..edit.merge import MergeKnobs, TensorMerge, get_merge_method
from ..edit.params import count_layers, resolve
from ..edit.relate import group_name, group_order
from ..edit.state import DEFAULT_LAYER_PATTERN
from .checkpoint import CheckpointReader, ShardedWriter, atomic_output_dir, copy_support_files
from .config import ConfigError, MergeConfig, load_config, param_value, resolve_model_path
from .lwptv import checkpoint_masks
from .safetensors_io import TensorInfo


@dataclass
class MergeReport:
    out_dir: Path
    n_tensors: int
    notes: list[str] = field(default_factory=list)
    edit_sq: dict[str, float] = field(default_factory=dict)  # layer group -> ||merged - base||^2
    base_sq: dict[str, float] = field(default_factory=dict)
    lwptv_pruned: dict[str, list[int]] = field(default_factory=dict)  # model -> blocks kept at the base (LwPTV)

    def table(self) -> Table:
        t = Table(title=f"edit norms per layer ({self.out_dir.name})")
        for col in ("layer", "||merged - base||", "||base||", "relative"):
            t.add_column(col, justify="right" if col != "layer" else "left")
        for g in sorted(self.edit_sq, key=group_order):
            e, b = self.edit_sq[g] ** 0.5, self.base_sq[g] ** 0.5
            t.add_row(g, f"{e:.4g}", f"{b:.4g}", f"{e / b:.3e}" if b > 0 else "-")
        return t


def _knobs(config: MergeConfig) -> MergeKnobs:
    base = get_merge_method(config.merge_method).knobs
    p = config.parameters
    return dataclasses.replace(
        base, normalize=base.normalize if p.normalize is None else p.normalize,
        rescale=base.rescale if p.rescale is None else p.rescale,
        sign_consensus=p.sign_consensus or base.sign_consensus)


def merge_checkpoints(config: MergeConfig | str | Path, out_dir: str | Path, *, config_dir: Path | None = None,
                      max_shard_bytes: int = 2 * 1024**3, chunk_elems: int = 1 << 22, overwrite: bool = False,
                      progress: bool = True, console: Console | None = None,
                      layer_pattern: str = DEFAULT_LAYER_PATTERN) -> MergeReport:
    """Merge per a mergekit-style config into ``out_dir`` (written atomically)."""
    if not isinstance(config, MergeConfig):
        config_dir = Path(config).parent
        config = load_config(config)
    console = console or Console(stderr=True)
    knobs = _knobs(config)
    notes = config.notes()
    base_path = resolve_model_path(config.base_model, config_dir)
    entries = []
    for i, m in enumerate(config.models):
        path = resolve_model_path(m.model, config_dir)
        if path == base_path:
            notes.append(f"models[{i}] is the base model; it contributes no task vector (as in mergekit)")
            continue
        entries.append((i, path, m.parameters))
    if not entries:
        raise ConfigError("models: every entry is the base model; nothing to merge")
    out_dtype = getattr(torch, config.output_dtype) if config.output_dtype else None

    readers: list[CheckpointReader] = []
    try:
        base = CheckpointReader(base_path)
        readers.append(base)
        models = []
        for i, path, _ in entries:
            r = CheckpointReader(path)
            readers.append(r)
            _check_layout(base, r, f"models[{i}] ({path})")
            models.append(r)
        n_layers = count_layers(base.names, layer_pattern)
        infos = [TensorInfo(n, base.info(n).shape, out_dtype if out_dtype and base.info(n).dtype.is_floating_point
                            else base.info(n).dtype) for n in base.names]
        report = MergeReport(Path(out_dir).resolve(), len(infos), notes)
        masked_tasks = _lwptv(config, base, models, entries, report, layer_pattern, chunk_elems)
        density_ignored = False
        with atomic_output_dir(out_dir, overwrite) as tmp, _progress(progress, console) as bar:
            task = bar.add_task("merging", total=len(infos))
            writer = ShardedWriter(tmp, infos, max_shard_bytes)
            for out_info in infos:
                name = out_info.name
                bar.update(task, description=name[-48:])
                weights, densities = [], []
                for (i, _, params) in entries:
                    w = resolve(param_value(params.weight if params.weight is not None else config.parameters.weight),
                                name, f"models[{i}].parameters.weight", n_layers, layer_pattern)
                    if w is None:
                        raise ConfigError(f"models[{i}].parameters.weight: required, and no value or filter rule "
                                          f"applies to tensor {name!r}")
                    d = resolve(param_value(params.density if params.density is not None else config.parameters.density),
                                name, f"models[{i}].parameters.density", n_layers, layer_pattern)
                    d = 1.0 if d is None else float(d)
                    if knobs.sparsify_method is None and d < 1.0:
                        density_ignored, d = True, 1.0
                    weights.append(float(w))
                    densities.append(d)
                _merge_one(name, base, models, writer, out_info, weights, densities, knobs, config, chunk_elems,
                           report, layer_pattern, masked_tasks.get(name, frozenset()))
                bar.advance(task)
            writer.close()
            copy_support_files(base_path, tmp, out_dtype)
        if density_ignored:
            notes.append(f"density is ignored by {config.merge_method} (no sparsification), as in mergekit")
        return report
    finally:
        for r in readers:
            r.close()


def _check_layout(base: CheckpointReader, other: CheckpointReader, label: str) -> None:
    for n in base.names:
        if n not in other:
            raise ConfigError(f"{label}: tensor {n!r} of the base model is missing")
        if other.info(n).shape != base.info(n).shape:
            raise ConfigError(f"{label}: tensor {n!r} has shape {other.info(n).shape}, base has {base.info(n).shape}")


def _lwptv(config, base, models, entries, report, layer_pattern, chunk_elems) -> dict[str, frozenset[int]]:
    """Tensor name -> indices of the models whose task vector LwPTV zeroes there (empty without lwptv)."""
    p = config.parameters.lwptv
    if p is None:
        return {}
    masks = checkpoint_masks(base, models, score=p.score, ratio=None if p.threshold is not None else p.ratio,
                             threshold=p.threshold, mode=p.mode, top_k=p.top_k, layer_pattern=layer_pattern,
                             chunk_elems=chunk_elems)
    masked: dict[str, set[int]] = {}
    for t, (i, path, _) in enumerate(entries):
        pruned = masks.pruned_layers(t)
        report.lwptv_pruned[f"models[{i}] ({path.name})"] = pruned
        for layer in pruned:
            for name in masks.groups[layer]:
                masked.setdefault(name, set()).add(t)
    report.notes.append("LwPTV (" + p.score + "): blocks kept at the base per model: " + "; ".join(
        f"{m}: {', '.join(map(str, layers)) or 'none'}" for m, layers in report.lwptv_pruned.items()))
    return {n: frozenset(ts) for n, ts in masked.items()}


def _merge_one(name, base, models, writer, out_info, weights, densities, knobs, config, chunk_elems, report,
               layer_pattern, masked: frozenset[int] = frozenset()) -> None:
    """masked: models whose task vector is zero in this tensor (LwPTV), so every merge method sees tau = 0."""
    info = base.info(name)
    if not info.dtype.is_floating_point:  # integer buffers: copied from the base
        for a, b in info.row_blocks(chunk_elems):
            writer.write(name, base.read_rows(name, a, b))
        return
    tm = TensorMerge(name, weights, densities, knobs, lam=config.parameters.lambda_, seed=config.parameters.seed)
    if tm.needs_full_deltas:
        for t, m in enumerate(models):
            tm.prepare(t, lambda m=m, t=t: _delta_chunks(base, m, name, info, chunk_elems, t in masked))
    group = group_name(name, layer_pattern)
    edit_sq = base_sq = 0.0
    for a, b in info.row_blocks(chunk_elems):
        base_rows = base.read_rows(name, a, b)
        work = torch.promote_types(info.dtype, torch.float32)
        deltas = [] if tm.is_identity else [
            torch.zeros(base_rows.shape, dtype=work) if t in masked else m.read_rows(name, a, b).to(work) - base_rows.to(work)
            for t, m in enumerate(models)]
        merged = tm.chunk(base_rows, deltas, offset=a * info.row_elems).to(out_info.dtype)
        writer.write(name, merged)
        edit_sq += float((merged.double() - base_rows.double()).pow(2).sum())
        base_sq += float(base_rows.double().pow(2).sum())
    report.edit_sq[group] = report.edit_sq.get(group, 0.0) + edit_sq
    report.base_sq[group] = report.base_sq.get(group, 0.0) + base_sq


def _delta_chunks(base, model, name, info, chunk_elems, masked: bool = False):
    """Row blocks of model - base, read afresh from disk (the magnitude threshold makes two passes)."""
    work = torch.promote_types(info.dtype, torch.float32)
    for a, b in info.row_blocks(chunk_elems):
        base_rows = base.read_rows(name, a, b).to(work)
        yield torch.zeros_like(base_rows) if masked else model.read_rows(name, a, b).to(work) - base_rows


def _progress(enabled: bool, console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not enabled, transient=True)
