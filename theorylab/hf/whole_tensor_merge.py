"""Checkpoint merges with the whole-tensor methods (slerp, nuslerp, multislerp, karcher, nearswap,
arcee_fusion, passthrough), with mergekit's ``slices`` (layer ranges: frankenmerges, per-slice gradients).

The plan follows mergekit 0.1.5's planner: a ``models:`` config is one slice over every layer of each
model (the base appended when it is not listed); the output's layers are the slices' layers in order,
renumbered from 0; tensors outside the layers come from the first slice's sources when they precede the
layers (embeddings) and from the last slice's otherwise (final norm, head). A gradient's position is the
layer's place within its slice (0 .. 1; a one-layer slice sits at 1), outside the layers 0. A global
parameter's filter sees the output name, a per-model one the input's own name.

Memory: one output tensor's inputs at a time (these methods normalise over whole tensors).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from ..edit.geometric import KernelInputs
from ..edit.merge import get_merge_method
from ..edit.params import count_layers
from ..edit.relate import group_name
from ..edit.state import DEFAULT_LAYER_PATTERN, layer_index
from .checkpoint import CheckpointReader, ShardedWriter, atomic_output_dir, check_output_target, copy_support_files
from .config import (ConfigError, FilterRule, GlobalParameters, MergeConfig, ModelParameters, resolve_model_path)
from .lora import AdaptedReader, ignored_bias_note, is_adapter
from .safetensors_io import TensorInfo
from .vocabulary import AlignedReader, aligned_tensors, plan_for_config, save_tokenizer

# Non-layer tensors whose name says they feed the first layer (mergekit's "pre" weights); every other
# non-layer tensor follows the last layer.
PRE_LAYER_MARKS = ("embed", "wte", "wpe")
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


@dataclass(frozen=True)
class _Source:
    key: tuple[Path, Path | None]  # the model folder and its LoRA adapter: identifies the reader
    label: str
    first_layer: int
    params: ModelParameters


@dataclass(frozen=True)
class _Slice:
    sources: list[_Source]
    params: GlobalParameters
    n_layers: int


@dataclass(frozen=True)
class _Output:
    name: str
    slice: _Slice
    inputs: list[tuple[_Source, str]]  # (source, tensor name in it)
    t: float  # the gradient position


def evaluate(raw, name: str, t: float):
    """One parameter setting at tensor ``name`` and gradient position t (mergekit's evaluate_setting:
    filter rules in order, ``*`` or no filter matching all; a list of numbers interpolated at t)."""
    if raw is None or isinstance(raw, (bool, int, float)):
        return raw
    if raw and isinstance(raw[0], FilterRule):
        for rule in raw:
            if rule.filter is None or rule.filter == "*" or rule.filter in name:
                return evaluate(rule.value, name, t)
        return None
    values = [float(v) for v in raw]
    if not values:
        return None
    pos = t * (len(values) - 1)
    i0 = int(pos)
    i1 = min(len(values) - 1, i0 + 1)
    frac = pos - i0
    return (1 - frac) * values[i0] + frac * values[i1]


def _rename_layer(name: str, layer: int, pattern: str) -> str:
    m = re.search(pattern, name)
    return name[:m.start(1)] + str(layer) + name[m.end(1):]


class _Readers:
    def __init__(self, notes: list[str]):
        self.open: dict[tuple[Path, Path | None], CheckpointReader | AdaptedReader] = {}
        self.notes = notes

    def get(self, key, label: str):
        if key not in self.open:
            path, lora = key
            reader = CheckpointReader(path)
            if lora is not None:
                try:
                    reader = AdaptedReader(reader, lora)
                except ValueError as err:
                    reader.close()
                    raise ConfigError(f"{label}: {err}") from None
                if note := ignored_bias_note(label, reader.adapter):
                    self.notes.append(note)
            self.open[key] = reader
        return self.open[key]

    def close(self):
        for r in self.open.values():
            r.close()


def _key(ref: str, config_dir: Path | None, where: str) -> tuple[Path, Path | None]:
    path_ref, _, lora_ref = ref.partition("+")
    path = resolve_model_path(path_ref, config_dir)
    lora = resolve_model_path(lora_ref, config_dir) if lora_ref else None
    if lora is not None and not is_adapter(lora):
        raise ConfigError(f"{where}.model: {lora_ref!r} has no adapter_config.json (not a PEFT adapter)")
    return path, lora


def _slices(config: MergeConfig, config_dir, readers: _Readers, pattern: str) -> list[_Slice]:
    if config.slices is not None:
        out = []
        for i, sl in enumerate(config.slices):
            sources = []
            for j, s in enumerate(sl.sources):
                where = f"slices[{i}].sources[{j}]"
                key = _key(s.model, config_dir, where)
                have = count_layers(readers.get(key, where).names, pattern)
                if s.layer_range[1] > have:
                    raise ConfigError(f"{where}.layer_range: {list(s.layer_range)} goes past the {have} layers of "
                                      f"{s.model!r}")
                sources.append(_Source(key, f"{where} ({s.model})", s.layer_range[0], s.parameters))
            out.append(_Slice(sources, sl.parameters, sl.sources[0].layer_range[1] - sl.sources[0].layer_range[0]))
        return out
    entries = [(f"models[{i}]", m.model, m.parameters) for i, m in enumerate(config.models)]
    base_key = _key(config.base_model, config_dir, "base_model") if config.base_model else None
    keys = [_key(ref, config_dir, where) for where, ref, _ in entries]
    if base_key is not None and base_key not in keys:
        entries.append(("base_model", config.base_model, ModelParameters()))
        keys.append(base_key)
    sources, lengths = [], {}
    for (where, ref, params), key in zip(entries, keys):
        lengths[where] = count_layers(readers.get(key, where).names, pattern)
        sources.append(_Source(key, f"{where} ({ref})", 0, params))
    if len(set(lengths.values())) > 1:
        raise ConfigError("models: every model must have the same number of layers, got "
                          + ", ".join(f"{w}: {n}" for w, n in lengths.items()))
    return [_Slice(sources, GlobalParameters(), next(iter(lengths.values())))]


def _plan(slices: list[_Slice], readers: _Readers, ref_reader, pattern: str) -> list[_Output]:
    ref_plain = [n for n in ref_reader.names if layer_index(n, pattern) is None]
    pre = [n for n in ref_plain if any(m in n for m in PRE_LAYER_MARKS)]
    post = [n for n in ref_plain if n not in pre]
    out = [_Output(n, slices[0], [(s, n) for s in slices[0].sources], 0.0) for n in pre]
    layer = 0
    for sl in slices:
        first = sl.sources[0]
        first_reader = readers.get(first.key, first.label)
        for offset in range(sl.n_layers):
            t = offset / (sl.n_layers - 1) if sl.n_layers > 1 else 1.0
            template = [n for n in first_reader.names if layer_index(n, pattern) == first.first_layer + offset]
            for n in template:
                ins = [(s, _rename_layer(n, s.first_layer + offset, pattern)) for s in sl.sources]
                out.append(_Output(_rename_layer(n, layer, pattern), sl, ins, t))
            layer += 1
    out += [_Output(n, slices[-1], [(s, n) for s in slices[-1].sources], 0.0) for n in post]
    return out


def _split(config: MergeConfig, kernel, sl: _Slice, base_key, where: str) -> tuple[int | None, list[int]]:
    """Index of the base among the slice's sources (None: no base used) and the other inputs' indices."""
    idx = list(range(len(sl.sources)))
    base = None
    if kernel.base != "ignored" and base_key is not None:
        base = next((i for i in idx if sl.sources[i].key == base_key), None)
        if base is None and kernel.base == "required":
            raise ConfigError(f"{where}: {config.merge_method} needs the base model {config.base_model!r} among "
                              "the inputs")
    others = [i for i in idx if i != base]
    lo, hi = kernel.min_models, kernel.max_models
    if len(others) < lo or (hi is not None and len(others) > hi):
        count = f"exactly {lo}" if lo == hi else (f"{lo} to {hi}" if hi else f"at least {lo}")
        besides = " besides the base" if kernel.base != "ignored" else ""
        raise ConfigError(f"{where}: {config.merge_method} takes {count} model(s){besides}, got {len(others)}")
    return base, others


def _global_params(config: MergeConfig, kernel, out: _Output) -> dict:
    p = {}
    for name, default in kernel.defaults.items():
        value = None
        for scope in (out.slice.params, config.parameters):
            value = evaluate(getattr(scope, name), out.name, out.t)
            if value is not None:
                break
        if value is None and default is None:
            raise ConfigError(f"parameters.{name}: required by {config.merge_method}, and no value or filter rule "
                              f"applies to tensor {out.name!r}")
        p[name] = default if value is None else value
    return p


def _per_input(config: MergeConfig, field: str, src: _Source, in_name: str, out: _Output, required: bool):
    for scope in (src.params, out.slice.params, config.parameters):
        value = evaluate(getattr(scope, field, None), in_name, out.t)
        if value is not None:
            return value
    if required:
        raise ConfigError(f"{src.label}.parameters.{field}: required by {config.merge_method}, and no value or filter "
                          f"rule applies to tensor {in_name!r}")
    return None


def _write_layer_count(folder: Path, n_layers: int) -> None:
    cfg = folder / "config.json"
    if not cfg.exists():
        return
    data = json.loads(cfg.read_text())
    for key in LAYER_COUNT_KEYS:
        if key in data:
            data[key] = n_layers
            cfg.write_text(json.dumps(data, indent=2) + "\n")
            return


def merge_whole_tensors(config: MergeConfig, out_dir, *, config_dir: Path | None, config_text: str | None,
                        max_shard_bytes: int, overwrite: bool, progress: bool, console: Console,
                        layer_pattern: str = DEFAULT_LAYER_PATTERN):
    from .merge import MergeReport, _progress, write_config_and_card

    method = get_merge_method(config.merge_method)
    kernel = method.kernel
    notes = config.notes()
    readers = _Readers(notes)
    try:
        slices = _slices(config, config_dir, readers, layer_pattern)
        base_key = _key(config.base_model, config_dir, "base_model") if config.base_model else None
        ref_key = base_key or slices[0].sources[0].key
        ref_reader = readers.get(ref_key, "base_model")
        labels = {s.key: s.label for sl in slices for s in sl.sources}
        if base_key is not None:
            labels = {base_key: f"base_model ({config.base_model})"} | labels
        vocab = plan_for_config(config, lambda ref, where: _key(ref, config_dir, where), labels, base_key)
        if vocab is not None:
            for k in labels:
                readers.get(k, labels[k])
            replaced = aligned_tensors(vocab, readers.open)
            readers.open = {k: AlignedReader(r, replaced[k]) for k, r in readers.open.items()}
            ref_reader = readers.get(ref_key, "base_model")
        splits = {id(sl): _split(config, kernel, sl, base_key,
                                 f"slices[{i}]" if config.slices is not None else "models")
                  for i, sl in enumerate(slices)}
        outputs = _plan(slices, readers, ref_reader, layer_pattern)
        infos, plans = [], []
        for o in outputs:  # resolve every input and parameter before any data is read
            src_infos = []
            for s, n in o.inputs:
                r = readers.get(s.key, s.label)
                if n not in r:
                    raise ConfigError(f"{s.label}: tensor {n!r} is missing (needed for output {o.name!r})")
                src_infos.append(r.info(n))
            shapes = {i.shape for i in src_infos}
            if len(shapes) > 1:
                raise ConfigError(f"tensor {o.name!r}: the inputs' shapes differ: "
                                  + ", ".join(f"{s.label}: {tuple(i.shape)}" for (s, _), i in zip(o.inputs, src_infos)))
            in_dtype = src_infos[0].dtype
            for i in src_infos[1:]:
                in_dtype = torch.promote_types(in_dtype, i.dtype)
            if not in_dtype.is_floating_point:
                infos.append(TensorInfo(o.name, src_infos[0].shape, src_infos[0].dtype))
                plans.append(None)
                continue
            compute = getattr(torch, config.compute_dtype or config.dtype or str(in_dtype).removeprefix("torch."))
            out_dtype = getattr(torch, config.output_dtype) if config.output_dtype else in_dtype
            base, others = splits[id(o.slice)]
            weights = [_per_input(config, "weight", o.slice.sources[i], o.inputs[i][1], o, True)
                       if "weight" in method.per_model_parameters else None for i in others]
            scales = [_per_input(config, "scale", o.slice.sources[i], o.inputs[i][1], o, False)
                      if "scale" in method.per_model_parameters else None for i in others]
            plans.append((base, others, weights, scales, _global_params(config, kernel, o), compute))
            infos.append(TensorInfo(o.name, src_infos[0].shape, out_dtype))
        if len({i.name for i in infos}) != len(infos):
            raise ConfigError("slices: two output tensors got the same name (overlapping layer numbering)")
        n_out_layers = sum(sl.n_layers for sl in slices)
        report = MergeReport(Path(out_dir).resolve(), len(infos), notes,
                             labels=list(dict.fromkeys(s.label for sl in slices for s in sl.sources)),
                             base_label=str(ref_key[0]))
        protected = list({p for sl in slices for s in sl.sources for p in s.key if p is not None})
        check_output_target(out_dir, protected)
        with atomic_output_dir(out_dir, overwrite, protected) as tmp, _progress(progress, console) as bar:
            task = bar.add_task("merging", total=len(infos))
            writer = ShardedWriter(tmp, infos, max_shard_bytes)
            for o, info, plan in zip(outputs, infos, plans):
                bar.update(task, description=o.name[-48:])
                tensors = [readers.get(s.key, s.label).read(n) for s, n in o.inputs]
                if plan is None:  # integer buffers: from the first input
                    writer.write(o.name, tensors[0])
                else:
                    base, others, weights, scales, params, compute = plan
                    work = [x.to(compute) for x in tensors]
                    merged = kernel.fn(KernelInputs(work[base] if base is not None else None,
                                                    [work[i] for i in others], weights, params, scales))
                    merged = merged.to(info.dtype)
                    writer.write(o.name, merged)
                    if base is not None:
                        group = group_name(o.name, layer_pattern)
                        b = tensors[base].double()
                        report.edit_sq[group] = report.edit_sq.get(group, 0.0) + float((merged.double() - b).pow(2).sum())
                        report.base_sq[group] = report.base_sq.get(group, 0.0) + float(b.pow(2).sum())
                bar.advance(task)
            writer.close()
            out_cast = getattr(torch, config.output_dtype) if config.output_dtype else None
            copy_support_files(ref_key[0], tmp, out_cast)
            if vocab is not None:
                save_tokenizer(vocab, tmp)
            if config.slices is not None:
                _write_layer_count(tmp, n_out_layers)
                notes.append(f"layer slices: the output has {n_out_layers} layers")
            write_config_and_card(tmp, config, config_text, report)
        return report
    finally:
        readers.close()
