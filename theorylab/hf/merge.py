"""Streaming merge of Hugging Face checkpoints: one tensor (row block) at a time.

Peak memory is set by the largest tensor, never by the number of models or the checkpoint size:
row blocks of ``chunk_elems`` elements are read from every model, merged with theorylab.edit's
TensorMerge and written straight into the planned output shard. Only magnitude sparsification
(TIES trimming) reads each tensor twice more per model: two histogram passes find the exact top-k
threshold without holding the whole delta.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..edit.merge import MergeKnobs, TensorMerge, get_merge_method
from ..edit.params import count_layers, resolve
from ..edit.relate import group_name, group_order
from ..edit.state import DEFAULT_LAYER_PATTERN
from .checkpoint import CheckpointReader, ShardedWriter, atomic_output_dir, check_output_target, copy_support_files
from .config import ConfigError, MergeConfig, ModelParameters, load_config, param_value, resolve_model_path
from .lora import AdaptedReader, ignored_bias_note, is_adapter
from .lwptv import checkpoint_masks
from .safetensors_io import TensorInfo
from .vocabulary import AlignedReader, aligned_tensors, plan_for_config, save_tokenizer

CONFIG_COPY = "mergekit_config.yml"  # mergekit's name for the copy of the config beside its output


@dataclass
class MergeReport:
    out_dir: Path
    n_tensors: int
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # the merged models, in task-vector order
    base_label: str = ""
    edit_sq: dict[str, float] = field(default_factory=dict)  # layer group -> ||merged - base||^2
    base_sq: dict[str, float] = field(default_factory=dict)
    lwptv_pruned: dict[str, list[int]] = field(default_factory=dict)  # model -> blocks kept at the base (LwPTV)
    # task relations: (i, j) -> <tau_i, tau_j> and i -> ||tau_i||^2, over the whole model and per layer group
    dots: dict[tuple[int, int], float] = field(default_factory=dict)
    sq: dict[int, float] = field(default_factory=dict)

    def add_relations(self, group: str, deltas) -> None:
        for i, a in enumerate(deltas):
            a64 = a.double()
            self.sq[i] = self.sq.get(i, 0.0) + float(a64.pow(2).sum())
            for j in range(i + 1, len(deltas)):
                self.dots[i, j] = self.dots.get((i, j), 0.0) + float((a64 * deltas[j].double()).sum())

    def cosines(self) -> dict[tuple[int, int], float | None]:
        """Cosine of each pair of task vectors over the whole model (None when one of them is zero)."""
        out = {}
        for (i, j), d in self.dots.items():
            den = (self.sq[i] * self.sq[j]) ** 0.5
            out[i, j] = d / den if den > 0 else None
        return out

    def table(self) -> Table:
        t = Table(title=f"edit norms per layer ({self.out_dir.name})")
        for col in ("layer", "||merged - base||", "||base||", "relative"):
            t.add_column(col, justify="right" if col != "layer" else "left")
        for g in sorted(self.edit_sq, key=group_order):
            e, b = self.edit_sq[g] ** 0.5, self.base_sq[g] ** 0.5
            t.add_row(g, f"{e:.4g}", f"{b:.4g}", f"{e / b:.3e}" if b > 0 else "-")
        return t

    def relations_markdown(self) -> str:
        rows = [f"| {self.labels[i]} | {self.labels[j]} | {'-' if c is None else f'{c:+.4f}'} |"
                for (i, j), c in self.cosines().items()]
        if not rows:
            return "One task vector: no relation to compute."
        return ("| task vector | task vector | cosine |\n|---|---|---|\n" + "\n".join(rows) +
                "\n\nCosines near 0 mark irrelevant tasks, positive aligned, negative contradictory ones (Li et al., "
                "ICLR 2025); `theorylab relate` adds the output-space estimate and a lambda range.")


def write_config_and_card(folder: Path, config: MergeConfig, config_text: str | None, report: MergeReport) -> None:
    """Beside the merged weights: the config as given (mergekit's copy) and the model card."""
    if config_text is None:
        config_text = yaml.safe_dump(config.model_dump(by_alias=True, exclude_defaults=True), sort_keys=False)
    (folder / CONFIG_COPY).write_text(config_text)
    (folder / "README.md").write_text(model_card(config, config_text, report))


def model_card(config: MergeConfig, config_text: str, report: MergeReport) -> str:
    """README.md for the merged model: method, inputs, task relations, notes and the config as given."""
    method = get_merge_method(config.merge_method)
    link = f"[{method.pretty_name}]({method.reference})" if method.reference else method.pretty_name
    base = f" with `{config.base_model}` as the base" if config.base_model else ""
    listed = dict.fromkeys(m.model for _, m in config.listed_inputs() if m.model != config.base_model)
    models = "\n".join(f"* `{m}`" for m in listed) or "* (none)"
    notes = "\n".join(f"* {n}" for n in report.notes) or "* none"
    edits = "\n".join(f"| {g} | {(report.edit_sq[g] / report.base_sq[g]) ** 0.5 if report.base_sq[g] > 0 else 0:.3e} |"
                       for g in sorted(report.edit_sq, key=group_order))
    return f"""---
library_name: transformers
tags: [merge, theorylab, mergekit-config]
---
# {report.out_dir.name}

A merge of pre-trained language models made with `theorylab merge`, from a mergekit-format config.

## Merge method

{link}{base}.

## Models merged

{models}

## Task relations (cosine of the task vectors, whole model)

{report.relations_markdown()}

## Relative edit per layer (||merged - base|| / ||base||)

| layer | relative edit |
|---|---|
{edits}

## Notes

{notes}

## Configuration

The YAML used (also saved as `{CONFIG_COPY}`):

```yaml
{config_text.rstrip()}
```
"""


def _knobs(config: MergeConfig) -> MergeKnobs:
    base = get_merge_method(config.merge_method).knobs
    p = config.parameters
    return dataclasses.replace(
        base, normalize=base.normalize if p.normalize is None else p.normalize,
        rescale=base.rescale if p.rescale is None else p.rescale,
        rescale_norm=p.rescale_norm or base.rescale_norm,
        sign_consensus=p.sign_consensus or base.sign_consensus, filter_wise=p.filter_wise)


@dataclass(frozen=True)
class _Input:
    """One merged model: its index in ``models`` (None: the base added by linear), folder, parameters."""
    index: int | None
    path: Path
    lora: Path | None
    params: ModelParameters

    @property
    def label(self) -> str:
        where = f"{self.path}" + (f"+{self.lora}" if self.lora else "")
        return f"models[{self.index}] ({where})" if self.index is not None else f"base_model ({where})"


def _inputs(config: MergeConfig, config_dir: Path | None, notes: list[str]) -> tuple[Path, list[_Input]]:
    """The reference every delta is taken against, and the models that contribute."""
    def resolve_entry(i, m):
        path = resolve_model_path(m.path, config_dir)
        lora = resolve_model_path(m.lora, config_dir) if m.lora else None
        if lora is None and is_adapter(path):
            raise ConfigError(f"models[{i}].model: {m.model!r} is a LoRA adapter; write it as "
                              f"'<model>+{m.model}' (mergekit's syntax), e.g. '{config.base_model or 'base'}+{m.model}'")
        if lora is not None and not is_adapter(lora):
            raise ConfigError(f"models[{i}].model: {m.lora!r} has no adapter_config.json (not a PEFT adapter)")
        return _Input(i, path, lora, m.parameters)

    entries = [resolve_entry(i, m) for i, m in enumerate(config.models)]
    method = get_merge_method(config.merge_method)
    if method.knobs.weights_on_models:
        # linear averages whole models: the base, when given, is one of them (as in mergekit); deltas are
        # taken against it, or against the first model, which changes nothing in sum_i w_i theta_i.
        if config.base_model is None:
            if entries[0].lora is not None:
                raise ConfigError("base_model: linear without a base_model takes deltas against models[0], which must "
                                  "then be a plain folder (not model+lora)")
            return entries[0].path, entries
        ref = resolve_model_path(config.base_model, config_dir)
        if not any(e.path == ref and e.lora is None for e in entries):
            entries.append(_Input(None, ref, None, ModelParameters()))
        return ref, entries
    base_path = resolve_model_path(config.base_model, config_dir)
    kept = []
    for e in entries:
        if e.path == base_path and e.lora is None:
            notes.append(f"models[{e.index}] is the base model; it contributes no task vector (as in mergekit)")
        else:
            kept.append(e)
    if not kept:
        raise ConfigError("models: every entry is the base model; nothing to merge")
    if config.merge_method == "model_stock" and len(kept) < 2:
        raise ConfigError("models: model_stock needs at least two fine-tuned models besides the base")
    return base_path, kept


@dataclass(frozen=True)
class _TensorPlan:
    weights: list[float]
    densities: list[float]
    gammas: list[float]
    epsilons: list[float]
    lam: float
    select_topk: float


def _plan_tensor(config: MergeConfig, name: str, inputs: list[_Input], knobs: MergeKnobs, n_layers: int,
                 layer_pattern: str, ignored: set[str]) -> _TensorPlan:
    """Every parameter of one tensor, resolved (filters, gradients) and checked before any data is read."""
    method = get_merge_method(config.merge_method)
    g = config.parameters

    def value(field: str, e: _Input | None, default):
        own = getattr(e.params, field) if e is not None else None
        raw = own if own is not None else getattr(g, field.replace("lambda", "lambda_"), None)
        where = f"models[{e.index}].parameters.{field}" if e is not None and e.index is not None else f"parameters.{field}"
        v = resolve(param_value(raw), name, where, n_layers, layer_pattern)
        if v is None and default is None:
            raise ConfigError(f"{where}: required by {config.merge_method}, and no value or filter rule applies to "
                              f"tensor {name!r}")
        return default if v is None else float(v)

    takes = set(method.per_model_parameters)
    weights = [value("weight", e, None) if "weight" in takes else 1.0 for e in inputs]
    densities = [value("density", e, 1.0) if "density" in takes else 1.0 for e in inputs]
    if knobs.sparsify_method is None and any(d < 1.0 for d in densities):
        ignored.add("density")
        densities = [1.0] * len(inputs)
    gammas = [value("gamma", e, 0.01) if "gamma" in takes else 0.01 for e in inputs]
    epsilons = [value("epsilon", e, 0.15) if "epsilon" in takes else 0.15 for e in inputs]
    lam = value("lambda", None, 1.0) if "lambda" in method.global_parameters else 1.0
    topk = value("select_topk", None, 1.0) if "select_topk" in method.global_parameters else 1.0
    plan = _TensorPlan(weights, densities, gammas, epsilons, lam, topk)
    try:  # the same checks the merge makes (ranges, DELLA's density +- epsilon), now, per tensor
        _tensor_merge(name, plan, knobs, config)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return plan


def _tensor_merge(name: str, plan: _TensorPlan, knobs: MergeKnobs, config: MergeConfig) -> TensorMerge:
    return TensorMerge(name, plan.weights, plan.densities, knobs, lam=plan.lam, seed=config.parameters.seed,
                       gammas=plan.gammas, epsilons=plan.epsilons, select_topk=plan.select_topk)


def _open(inp: _Input) -> CheckpointReader | AdaptedReader:
    reader = CheckpointReader(inp.path)
    if inp.lora is None:
        return reader
    try:
        return AdaptedReader(reader, inp.lora)
    except ValueError as err:
        reader.close()
        raise ConfigError(f"{inp.label}: {err}") from None


def merge_checkpoints(config: MergeConfig | str | Path, out_dir: str | Path, *, config_dir: Path | None = None,
                      max_shard_bytes: int = 2 * 1024**3, chunk_elems: int = 1 << 22, overwrite: bool = False,
                      progress: bool = True, console: Console | None = None,
                      layer_pattern: str = DEFAULT_LAYER_PATTERN) -> MergeReport:
    """Merge per a mergekit-style config into ``out_dir`` (written atomically, with a model card and a copy
    of the config, as mergekit writes)."""
    config_text = None
    if not isinstance(config, MergeConfig):
        config_dir = Path(config).parent
        config_text = Path(config).read_text()
        config = load_config(config)
    console = console or Console(stderr=True)
    if get_merge_method(config.merge_method).kernel is not None:  # slerp, passthrough, ...: whole tensors
        from .whole_tensor_merge import merge_whole_tensors
        return merge_whole_tensors(config, out_dir, config_dir=config_dir, config_text=config_text,
                                   max_shard_bytes=max_shard_bytes, overwrite=overwrite, progress=progress,
                                   console=console, layer_pattern=layer_pattern)
    knobs = _knobs(config)
    notes = config.notes()
    ref_path, inputs = _inputs(config, config_dir, notes)
    out_dtype = getattr(torch, config.output_dtype) if config.output_dtype else None

    check_output_target(out_dir, [ref_path] + [p for i in inputs for p in (i.path, i.lora) if p is not None])
    readers: list = []
    try:
        base = CheckpointReader(ref_path)
        readers.append(base)
        models = []
        for inp in inputs:
            r = _open(inp)
            readers.append(r)
            if isinstance(r, AdaptedReader) and (note := ignored_bias_note(inp.label, r.adapter)):
                notes.append(note)
            models.append(r)
        base, models, vocab = _align_vocabulary(config, config_dir, ref_path, base, inputs, models)
        for inp, r in zip(inputs, models):
            _check_layout(base, r, inp.label, notes)
        n_layers = count_layers(base.names, layer_pattern)
        infos = [TensorInfo(n, base.info(n).shape, out_dtype if out_dtype and base.info(n).dtype.is_floating_point
                            else base.info(n).dtype) for n in base.names]
        ignored: set[str] = set()
        plans = {i.name: _plan_tensor(config, i.name, inputs, knobs, n_layers, layer_pattern, ignored)
                 for i in infos if base.info(i.name).dtype.is_floating_point}
        report = MergeReport(Path(out_dir).resolve(), len(infos), notes, labels=[i.label for i in inputs],
                             base_label=str(ref_path))
        masked_tasks = _lwptv(config, base, models, inputs, report, layer_pattern, chunk_elems)
        protected = [ref_path] + [p for i in inputs for p in (i.path, i.lora) if p is not None]
        with atomic_output_dir(out_dir, overwrite, protected) as tmp, _progress(progress, console) as bar:
            task = bar.add_task("merging", total=len(infos))
            writer = ShardedWriter(tmp, infos, max_shard_bytes)
            for out_info in infos:
                name = out_info.name
                bar.update(task, description=name[-48:])
                _merge_one(name, base, models, writer, out_info, plans.get(name), knobs, config, chunk_elems,
                           report, layer_pattern, masked_tasks.get(name, frozenset()))
                bar.advance(task)
            writer.close()
            copy_support_files(ref_path, tmp, out_dtype)
            if vocab is not None:
                save_tokenizer(vocab, tmp)
            if "density" in ignored:
                notes.append(f"density is ignored by {config.merge_method} (no sparsification), as in mergekit")
            write_config_and_card(tmp, config, config_text, report)
        return report
    finally:
        for r in readers:
            r.close()


def _align_vocabulary(config, config_dir, ref_path, base, inputs, models):
    """With tokenizer_source / tokenizer: every model's embedding rows moved to the output vocabulary."""
    if config.vocabulary_source is None:
        return base, models, None
    keys = {(ref_path, None): f"base_model ({ref_path})"} | {(i.path, i.lora): i.label for i in inputs}

    def resolve_key(ref: str, where: str):
        path, _, lora = ref.partition("+")
        return resolve_model_path(path, config_dir), resolve_model_path(lora, config_dir) if lora else None

    base_key = (ref_path, None) if config.base_model else None
    plan = plan_for_config(config, resolve_key, keys, base_key)
    by_key = {(ref_path, None): base} | {(i.path, i.lora): r for i, r in zip(inputs, models)}
    replaced = aligned_tensors(plan, by_key)
    return (AlignedReader(base, replaced[(ref_path, None)]),
            [AlignedReader(r, replaced[(i.path, i.lora)]) for i, r in zip(inputs, models)], plan)


def _check_layout(base: CheckpointReader, other, label: str, notes: list[str]) -> None:
    """Every float tensor of the base must be in each model with its shape. A non-float buffer (position
    ids, counters) is copied from the base anyway, so one missing there is only noted."""
    for n in base.names:
        info = base.info(n)
        if n not in other:
            if not info.dtype.is_floating_point:
                notes.append(f"{label}: buffer {n!r} ({str(info.dtype).removeprefix('torch.')}) is missing; it is "
                             "copied from the base like every non-float buffer")
                continue
            raise ConfigError(f"{label}: tensor {n!r} of the base model is missing")
        if other.info(n).shape != info.shape:
            raise ConfigError(f"{label}: tensor {n!r} has shape {other.info(n).shape}, base has {info.shape}")
        theirs = other.info(n).dtype
        if theirs.is_floating_point != info.dtype.is_floating_point:
            kind = lambda d: ("float" if d.is_floating_point else "integer/bool") + f" ({str(d).removeprefix('torch.')})"
            raise ConfigError(f"{label}: tensor {n!r} is {kind(theirs)}, the base's is {kind(info.dtype)}; "
                              "expected the same kind")
    extra = [n for n in other.names if n not in base]
    if extra:
        shown = ", ".join(repr(n) for n in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        notes.append(f"{label}: {len(extra)} tensor(s) not in the base are left out of the output: {shown}")


def _lwptv(config, base, models, entries, report, layer_pattern, chunk_elems) -> dict[str, frozenset[int]]:
    """Tensor name -> indices of the models whose task vector LwPTV zeroes there (empty without lwptv)."""
    p = config.parameters.lwptv
    if p is None:
        return {}
    masks = checkpoint_masks(base, models, score=p.score, ratio=None if p.threshold is not None else p.ratio,
                             threshold=p.threshold, mode=p.mode, top_k=p.top_k, layer_pattern=layer_pattern,
                             chunk_elems=chunk_elems)
    masked: dict[str, set[int]] = {}
    for t, inp in enumerate(entries):
        pruned = masks.pruned_layers(t)
        report.lwptv_pruned[inp.label] = pruned
        for layer in pruned:
            for name in masks.groups[layer]:
                masked.setdefault(name, set()).add(t)
    report.notes.append("LwPTV (" + p.score + "): blocks kept at the base per model: " + "; ".join(
        f"{m}: {', '.join(map(str, layers)) or 'none'}" for m, layers in report.lwptv_pruned.items()))
    return {n: frozenset(ts) for n, ts in masked.items()}


def half_compute_dtype(config: MergeConfig, stored: torch.dtype | None = None) -> torch.dtype | None:
    """mergekit computes in ``dtype``, or without it in the inputs' (promoted) dtype ``stored``:
    float16/bfloat16 merges take the whole-tensor path that repeats its arithmetic there, unless
    compute_dtype asks for float32 (theorylab's streaming path)."""
    if config.compute_dtype is not None:
        return None
    dtype = getattr(torch, config.dtype) if config.dtype else stored
    return dtype if dtype in (torch.float16, torch.bfloat16) else None


def _merge_one_in_dtype(name, base, models, writer, out_info, plan, knobs, config, report, layer_pattern,
                        masked: frozenset[int], dtype: torch.dtype) -> None:
    from ..edit.in_dtype import linear_in_dtype, model_stock_in_dtype, sce_in_dtype, task_arithmetic_in_dtype
    from ..edit.sparsify import task_seed

    b = base.read(name).to(dtype)
    ms = [b if t in masked else m.read(name).to(dtype) for t, m in enumerate(models)]
    p = config.parameters
    if knobs.weights_on_models:
        merged = linear_in_dtype(ms, plan.weights, knobs.normalize)
    elif knobs.coefficients == "sce":
        merged = sce_in_dtype(b, ms, plan.select_topk, bool(p.int8_mask))
    elif knobs.coefficients == "model_stock":
        merged = model_stock_in_dtype(b, ms, knobs.filter_wise)
    else:
        seeds = [int(task_seed(p.seed, t, name)) for t in range(len(ms))]
        merged = task_arithmetic_in_dtype(b, ms, plan.weights, plan.densities, knobs, lam=plan.lam, gammas=plan.gammas,
                                          epsilons=plan.epsilons, int8_mask=bool(p.int8_mask), seeds=seeds)
    merged = merged.to(out_info.dtype)
    writer.write(name, merged)
    group = group_name(name, layer_pattern)
    report.add_relations(group, [m.float() - b.float() for m in ms])
    report.edit_sq[group] = report.edit_sq.get(group, 0.0) + float((merged.double() - b.double()).pow(2).sum())
    report.base_sq[group] = report.base_sq.get(group, 0.0) + float(b.double().pow(2).sum())


def _merge_one(name, base, models, writer, out_info, plan, knobs, config, chunk_elems, report, layer_pattern,
               masked: frozenset[int] = frozenset()) -> None:
    """masked: models whose task vector is zero in this tensor (LwPTV), so every merge method sees tau = 0."""
    info = base.info(name)
    if not info.dtype.is_floating_point:  # integer buffers: copied from the base
        for a, b in info.row_blocks(chunk_elems):
            writer.write(name, base.read_rows(name, a, b))
        return
    stored = info.dtype
    for m in models:
        stored = torch.promote_types(stored, m.info(name).dtype)
    half = half_compute_dtype(config, stored)
    if half is not None:
        _merge_one_in_dtype(name, base, models, writer, out_info, plan, knobs, config, report, layer_pattern, masked, half)
        return
    tm = _tensor_merge(name, plan, knobs, config)
    if tm.needs_whole_rows and len(info.shape) < 2:
        chunk_elems = max(chunk_elems, info.numel)  # a vector is one row: DELLA ranks / Model Stock normalizes it whole
    work = torch.promote_types(info.dtype, torch.float32)

    def deltas(a: int, b: int, base_rows=None) -> _LazyDeltas:
        return _LazyDeltas(lambda: base.read_rows(name, a, b) if base_rows is None else base_rows,
                           [lambda m=m: m.read_rows(name, a, b) for m in models], masked, work)

    if tm.needs_stats:
        tm.prepare(lambda: ((a * info.row_elems, deltas(a, b)) for a, b in info.row_blocks(chunk_elems)))
    group = group_name(name, layer_pattern)
    edit_sq = base_sq = 0.0
    for a, b in info.row_blocks(chunk_elems):
        base_rows = base.read_rows(name, a, b)
        ds = list(deltas(a, b, base_rows))
        _note_non_finite(name, base_rows, ds, report, masked)
        report.add_relations(group, ds)
        merged = tm.chunk(base_rows, [] if tm.is_identity else ds, offset=a * info.row_elems).to(out_info.dtype)
        writer.write(name, merged)
        edit_sq += float((merged.double() - base_rows.double()).pow(2).sum())
        base_sq += float(base_rows.double().pow(2).sum())
    report.edit_sq[group] = report.edit_sq.get(group, 0.0) + edit_sq
    report.base_sq[group] = report.base_sq.get(group, 0.0) + base_sq


def _note_non_finite(name: str, base_rows: torch.Tensor, ds, report: MergeReport, masked: frozenset[int]) -> None:
    """One note per input and tensor holding NaN/inf (the merge passes them on; the output is not checked)."""
    def note(who: str) -> None:
        msg = f"{who}: tensor {name!r} holds NaN or inf values; they pass into the merged tensor"
        if msg not in report.notes:
            report.notes.append(msg)

    base_ok = bool(torch.isfinite(base_rows).all())
    if not base_ok:
        note(f"base model ({report.base_label})")
    for t, d in enumerate(ds):
        if t not in masked and not bool(torch.isfinite(d).all()) and (base_ok or _model_has_non_finite(d, base_rows)):
            note(report.labels[t])


def _model_has_non_finite(delta: torch.Tensor, base_rows: torch.Tensor) -> bool:
    """With a non-finite base, a non-finite delta may come from the base alone: check model = base + delta
    where the base is finite."""
    ok = torch.isfinite(base_rows)
    return not bool(torch.isfinite(delta[ok]).all())


class _LazyDeltas(Sequence):
    """One row block's task-vector deltas, each read from disk only when asked for: a top-k threshold
    pass over task t then reads model t and the base, not every model."""

    def __init__(self, base_rows: Callable[[], torch.Tensor], model_rows: list[Callable[[], torch.Tensor]],
                 masked: frozenset[int], work: torch.dtype):
        self._base_rows, self._model_rows, self._masked, self._work = base_rows, model_rows, masked, work
        self._base: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self._model_rows)

    def __getitem__(self, t):
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(len(self)))]
        if self._base is None:
            self._base = self._base_rows().to(self._work)
        if t in self._masked:
            return torch.zeros_like(self._base)
        return self._model_rows[t]().to(self._work) - self._base


def _progress(enabled: bool, console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not enabled, transient=True)
