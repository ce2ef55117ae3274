"""PEFT LoRA adapters as task vectors: read one as a delta per weight (mergekit's ``model+lora``).

A LoRA adapter stores, per adapted module, A [r, in] and B [out, r]; the module's weight moves by
scale * B @ A with scale = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA). Conv1D modules (GPT-2,
``fan_in_fan_out``) and embeddings (``lora_embedding_A/B``) hold the transposed product. With ``lora_bias``
the bias moves by scale * lora_B.bias. Modules listed in ``modules_to_save`` (norms, embeddings, heads that
mergekit-extract-lora and our extract-lora save whole) replace the base's tensors outright: peft saves them
as ``base_model.model.<module>.<param>`` (older versions insert ``modules_to_save[.default]``).
Extraction lives in theorylab.hf.lora_extract.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import CheckpointReader
from .safetensors_io import TensorInfo

PEFT_PREFIX = "base_model.model."
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# adapter_config fields whose non-default values change what the saved tensors mean; refused, not guessed
_UNSUPPORTED = ("use_dora", "use_qalora", "use_bdlora", "target_parameters", "trainable_token_indices",
                "alora_invocation_tokens", "layer_replication")
_LORA_TENSOR = re.compile(r"(.+)\.lora_(embedding_)?([AB])(?:\.default)?(?:\.(weight|bias))?")
_SAVED_TENSOR = re.compile(r"(.+?)(?:\.modules_to_save(?:\.default)?)?\.([^.]+)")


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


@dataclass
class LoraFactors:
    a: Tensor  # [r, in] (embeddings: [r, num_embeddings])
    b: Tensor  # [out, r] (embeddings: [dim, r])
    scale: float
    transposed: bool  # weight delta = (scale B A)^T: Conv1D with fan_in_fan_out, and embeddings

    def delta_rows(self, start: int, stop: int) -> Tensor:
        """Rows start..stop of the weight delta, without forming the whole product."""
        a, b = self.a.float(), self.b.float()
        if self.transposed:
            return self.scale * (a[:, start:stop].T @ b.T)
        return self.scale * (b[start:stop] @ a)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.a.shape[1], self.b.shape[0]) if self.transposed else (self.b.shape[0], self.a.shape[1])


@dataclass
class LoraAdapter:
    """What a PEFT LoRA adapter does to a checkpoint, by tensor name of the base model."""
    path: Path
    config: dict
    factors: dict[str, LoraFactors] = field(default_factory=dict)  # "x.weight" -> low-rank delta
    bias_deltas: dict[str, Tensor] = field(default_factory=dict)  # "x.bias" -> scale * lora_B.bias
    replaced: dict[str, Tensor] = field(default_factory=dict)  # modules_to_save: tensor -> its new value
    ignored: list[str] = field(default_factory=list)  # tensors peft would not load either

    @property
    def changed(self) -> set[str]:
        return set(self.factors) | set(self.bias_deltas) | set(self.replaced)


def ignored_bias_note(label: str, adapter: LoraAdapter) -> str | None:
    """The merge note for lora_B.bias tensors left out because the adapter's config has no lora_bias."""
    if not adapter.ignored:
        return None
    shown = ", ".join(adapter.ignored[:3]) + (f" and {len(adapter.ignored) - 3} more" if len(adapter.ignored) > 3 else "")
    return (f"{label}: {len(adapter.ignored)} lora_B.bias tensor(s) left out, as peft leaves them out, because "
            f"adapter_config.json does not set lora_bias: {shown}")


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches a module name ending in it."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _saved_module(module: str, modules_to_save: list[str]) -> bool:
    """PEFT wraps a module in modules_to_save when its name ends with one of the listed keys."""
    return any(module == key or module.endswith(key) for key in modules_to_save)


def read_adapter(path: str | Path) -> LoraAdapter:
    """The LoRA factors, bias deltas and whole-module replacements of a PEFT adapter folder."""
    path = Path(path)
    label = f"LoRA adapter {path}"
    try:
        cfg = json.loads((path / "adapter_config.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{label}: adapter_config.json is not valid JSON ({err})") from None
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{label}: peft_type {cfg.get('peft_type')!r} is not LORA (only LoRA adapters are read)")
    for key in _UNSUPPORTED:
        if cfg.get(key):
            raise ValueError(f"{label}: {key}={cfg[key]!r} is not supported (plain LoRA, lora_bias, rsLoRA, "
                             f"rank/alpha patterns and modules_to_save are)")
    weights = next((path / f for f in ADAPTER_WEIGHTS if (path / f).exists()), None)
    if weights is None:
        raise ValueError(f"{label}: no adapter_model.safetensors or adapter_model.bin")
    with CheckpointReader(weights) as r:
        tensors = {n.removeprefix(PEFT_PREFIX): r.read(n) for n in r.names}
    modules_to_save = cfg.get("modules_to_save") or []
    if isinstance(modules_to_save, str):
        modules_to_save = [modules_to_save]
    r0, alpha0 = cfg.get("r", 8), cfg.get("lora_alpha", 8)
    adapter = LoraAdapter(path, cfg)

    def scale_of(module: str) -> float:
        rank = _pattern_value(cfg.get("rank_pattern") or {}, module, r0)
        alpha = _pattern_value(cfg.get("alpha_pattern") or {}, module, alpha0)
        return float(alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank)

    for name, tensor in tensors.items():
        m = _LORA_TENSOR.fullmatch(name)
        if m:
            module, embedding, which, param = m.group(1), bool(m.group(2)), m.group(3), m.group(4)
            if which == "B" and param == "bias":
                if cfg.get("lora_bias"):
                    adapter.bias_deltas[f"{module}.bias"] = scale_of(module) * tensor.float()
                else:  # mergekit 0.1.5 writes these without setting lora_bias; peft then leaves them out
                    adapter.ignored.append(name)
                continue
            if which == "B":
                continue
            b_name = name.replace(f"lora_{m.group(2) or ''}A", f"lora_{m.group(2) or ''}B")
            if b_name not in tensors:
                raise ValueError(f"{label}: {PEFT_PREFIX}{name!r} has no matching {PEFT_PREFIX}{b_name!r}")
            adapter.factors[f"{module}.weight"] = LoraFactors(tensor, tensors[b_name], scale_of(module),
                                                              embedding or bool(cfg.get("fan_in_fan_out")))
            continue
        m = _SAVED_TENSOR.fullmatch(name)
        module, param = (m.group(1), m.group(2)) if m else (name, "")
        whole_bias = param == "bias" and cfg.get("bias") in ("all", "lora_only")
        if not (m and (_saved_module(module, modules_to_save) or whole_bias)):
            raise ValueError(f"{label}: tensor {PEFT_PREFIX}{name!r} is neither a LoRA factor nor part of a module "
                             f"in modules_to_save ({modules_to_save})")
        adapter.replaced[f"{module}.{param}"] = tensor
    both = sorted(set(adapter.factors) & set(adapter.replaced))
    if both:
        raise ValueError(f"{label}: {both[0]!r} has LoRA factors and is also saved whole (modules_to_save)")
    return adapter


class AdaptedReader:
    """A checkpoint with a LoRA adapter applied on the fly (mergekit's ``model+lora``, i.e. peft's
    merge_and_unload): reads return model rows + the adapter's delta rows, computed in float32 and cast back
    to the stored dtype; tensors of modules_to_save come from the adapter, cast to the stored dtype."""

    def __init__(self, model: CheckpointReader, adapter_path: str | Path):
        self.model, self.path = model, Path(adapter_path)
        self.adapter = read_adapter(adapter_path)
        if self.adapter.config.get("fan_in_fan_out"):
            self._untranspose_linear_modules()
        label = f"LoRA adapter {adapter_path}"
        shapes = {n: f.shape for n, f in self.adapter.factors.items()}
        shapes |= {n: tuple(t.shape) for n, t in (self.adapter.bias_deltas | self.adapter.replaced).items()}
        for name, shape in shapes.items():
            if name not in model and self._tied_copy(name):
                del self.adapter.replaced[name]
                continue
            if name not in model:
                raise ValueError(f"{label}: tensor {name!r} is not in {model.path}")
            if tuple(model.info(name).shape) != tuple(shape):
                raise ValueError(f"{label}: {name!r} has shape {tuple(model.info(name).shape)} in {model.path} but "
                                 f"{tuple(shape)} in the adapter")

    def _tied_copy(self, name: str) -> bool:
        """A saved module tensor the checkpoint lacks because it is tied: peft saves a tied LM head beside the
        input embedding, with the same values."""
        t = self.adapter.replaced.get(name)
        return t is not None and any(n != name and n in self.model and o.shape == t.shape and torch.equal(o, t)
                                     for n, o in self.adapter.replaced.items())

    def _untranspose_linear_modules(self) -> None:
        """peft ignores fan_in_fan_out on nn.Linear (it is for GPT-2's Conv1D); find which modules are Linear."""
        from .lora_extract import module_kinds

        try:
            kinds = module_kinds(self.model.path if self.model.path.is_dir() else self.model.path.parent)
        except (ImportError, ValueError, OSError):
            return  # no architecture to look at: trust the flag, as the shape check still catches most mistakes
        for name, f in self.adapter.factors.items():
            if kinds.get(name) == "linear":
                f.transposed = False

    @property
    def factors(self) -> dict[str, LoraFactors]:
        return self.adapter.factors

    @property
    def names(self) -> list[str]:
        return self.model.names

    def __contains__(self, name: str) -> bool:
        return name in self.model

    def info(self, name: str) -> TensorInfo:
        return self.model.info(name)

    def read_rows(self, name: str, start: int, stop: int) -> Tensor:
        whole = self.adapter.replaced.get(name)
        if whole is not None:
            return whole[start:stop].to(self.model.info(name).dtype)
        rows = self.model.read_rows(name, start, stop)
        f, bias = self.adapter.factors.get(name), self.adapter.bias_deltas.get(name)
        if f is None and bias is None:
            return rows
        delta = f.delta_rows(start, stop) if f is not None else bias[start:stop]
        work = torch.promote_types(rows.dtype, torch.float32)
        return (rows.to(work) + delta.to(work)).to(rows.dtype)

    def read(self, name: str) -> Tensor:
        return self.read_rows(name, 0, self.info(name).rows)

    def close(self) -> None:
        self.model.close()
