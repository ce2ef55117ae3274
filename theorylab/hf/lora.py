"""PEFT LoRA adapters as task vectors: read one as a delta per weight, and extract one from a fine-tune.

A LoRA adapter stores, per adapted module, A [r, in] and B [out, r]; the module's weight moves by
scale * B @ A with scale = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA). Conv1D modules (GPT-2,
``fan_in_fan_out``) and embeddings (``lora_embedding_A/B``) hold the transposed product. Extraction is the
truncated SVD of the task vector (theorylab.edit.low_rank, Eckart-Young), one tensor at a time, split as
B = U sqrt(S), A = sqrt(S) V^T with scale 1 (lora_alpha = r per module), as mergekit-extract-lora does.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..edit.lowrank import _keep_mask
from ..edit.state import check_fraction
from .checkpoint import CheckpointReader, atomic_output_dir, check_output_target
from .safetensors_io import SafetensorsWriter, TensorInfo

PEFT_PREFIX = "base_model.model."
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


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


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches a module name ending in it."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def read_adapter(path: str | Path) -> dict[str, LoraFactors]:
    """Weight name ("model.layers.0.self_attn.q_proj.weight") -> LoRA factors of a PEFT adapter folder."""
    path = Path(path)
    cfg = json.loads((path / "adapter_config.json").read_text())
    label = f"LoRA adapter {path}"
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{label}: peft_type {cfg.get('peft_type')!r} is not LORA")
    unsupported = {"use_dora": bool(cfg.get("use_dora")), "modules_to_save": bool(cfg.get("modules_to_save")),
                   "bias": cfg.get("bias") not in (None, "none")}
    for key, bad in unsupported.items():
        if bad:
            raise ValueError(f"{label}: {key}={cfg[key]!r} is not supported (only plain LoRA factors are read)")
    weights = next((path / f for f in ADAPTER_WEIGHTS if (path / f).exists()), None)
    if weights is None:
        raise ValueError(f"{label}: no adapter_model.safetensors or adapter_model.bin")
    with CheckpointReader(weights) as r:
        tensors = {n: r.read(n) for n in r.names}
    r0, alpha0 = cfg.get("r", 8), cfg.get("lora_alpha", 8)
    out: dict[str, LoraFactors] = {}
    for name in tensors:
        m = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_(embedding_)?A(?:\.default)?(?:\.weight)?", name)
        if not m:
            if ".lora_" not in name:
                raise ValueError(f"{label}: tensor {name!r} is not a LoRA factor (only plain LoRA factors are read)")
            continue
        module, embedding = m.group(1), bool(m.group(2))
        b_name = name.replace("lora_embedding_A" if embedding else "lora_A", "lora_embedding_B" if embedding else "lora_B")
        if b_name not in tensors:
            raise ValueError(f"{label}: {name!r} has no matching {b_name!r}")
        rank = _pattern_value(cfg.get("rank_pattern") or {}, module, r0)
        alpha = _pattern_value(cfg.get("alpha_pattern") or {}, module, alpha0)
        scale = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
        out[f"{module}.weight"] = LoraFactors(tensors[name], tensors[b_name], float(scale),
                                              embedding or bool(cfg.get("fan_in_fan_out")))
    return out


class AdaptedReader:
    """A checkpoint with a LoRA adapter applied on the fly (mergekit's ``model+lora``): reads return
    model rows + the adapter's delta rows, computed in float32 and cast back to the stored dtype."""

    def __init__(self, model: CheckpointReader, adapter_path: str | Path):
        self.model, self.path = model, Path(adapter_path)
        self.factors = read_adapter(adapter_path)
        for name, f in self.factors.items():
            if name not in model:
                raise ValueError(f"LoRA adapter {adapter_path}: module weight {name!r} is not in {model.path}")
            if tuple(model.info(name).shape) != f.shape:
                raise ValueError(f"LoRA adapter {adapter_path}: {name!r} has shape {model.info(name).shape} but the "
                                 f"adapter's product has {f.shape}")

    @property
    def names(self) -> list[str]:
        return self.model.names

    def __contains__(self, name: str) -> bool:
        return name in self.model

    def info(self, name: str) -> TensorInfo:
        return self.model.info(name)

    def read_rows(self, name: str, start: int, stop: int) -> Tensor:
        rows = self.model.read_rows(name, start, stop)
        f = self.factors.get(name)
        if f is None:
            return rows
        work = torch.promote_types(rows.dtype, torch.float32)
        return (rows.to(work) + f.delta_rows(start, stop).to(work)).to(rows.dtype)

    def read(self, name: str) -> Tensor:
        return self.read_rows(name, 0, self.info(name).rows)

    def close(self) -> None:
        self.model.close()


# ---- extraction ---------------------------------------------------------------------------------------


@dataclass
class ExtractReport:
    out_dir: Path
    ranks: dict[str, int] = field(default_factory=dict)  # module -> kept rank
    energy: dict[str, float] = field(default_factory=dict)  # module -> kept fraction of ||tau||^2
    full_rank: dict[str, int] = field(default_factory=dict)
    not_carried: dict[str, float] = field(default_factory=dict)  # tensor -> ||tau||^2 left out (vectors etc.)
    sq: dict[str, float] = field(default_factory=dict)  # module -> ||tau||^2
    total_sq: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def carried_fraction(self) -> float:
        """Share of the whole task vector's squared norm that the adapter carries."""
        kept = sum(self.energy[m] * self.sq[m] for m in self.energy)
        return kept / self.total_sq if self.total_sq > 0 else 1.0


def _module_kinds(model_dir: Path) -> dict[str, str]:
    """Weight name -> "linear" | "conv1d" | "embedding" for the model's adaptable modules, from the
    architecture instantiated on the meta device (no weights are read)."""
    from theorylab.core.extras import require

    transformers = require("transformers", "extract-lora")
    cfg = transformers.AutoConfig.from_pretrained(model_dir)
    arch = (getattr(cfg, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        raise ValueError(f"{model_dir}: config.json names no transformers architecture to find the model's modules")
    with torch.device("meta"):
        model = cls(cfg)
    kinds = {}
    for name, mod in model.named_modules():
        kind = {"Linear": "linear", "Conv1D": "conv1d", "Embedding": "embedding"}.get(type(mod).__name__)
        if kind and getattr(mod, "weight", None) is not None and mod.weight.dim() == 2:
            kinds[f"{name}.weight"] = kind
    return kinds


def extract_lora(finetuned: str | Path, base: str | Path, out_dir: str | Path, *, rank: int | None = None,
                 energy: float | None = None, embeddings: bool = False, include: str | None = None,
                 exclude: str | None = None, overwrite: bool = False) -> ExtractReport:
    """Write the low-rank task vector finetuned - base as a PEFT LoRA adapter (atomically).

    rank: keep r singular values per matrix; energy: keep the fewest leading values holding this fraction of
    each matrix's squared norm. Linear and Conv1D weights become LoRA factors (embeddings too with
    ``embeddings=True``); tensors LoRA cannot carry (biases, norms, skipped modules) are reported with their
    share of the task vector. include/exclude: regexes on weight names.
    """
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of --rank (int >= 1) or --energy (fraction in (0, 1])")
    if rank is not None and rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    if energy is not None:
        check_fraction(energy, "energy")
        if energy <= 0:
            raise ValueError("energy must be in (0, 1], got 0")
    base, finetuned = Path(base), Path(finetuned)
    check_output_target(out_dir, [finetuned, base])
    kinds = _module_kinds(base)
    report = ExtractReport(Path(out_dir).resolve())
    factors: dict[str, tuple[Tensor, Tensor]] = {}
    with CheckpointReader(base) as b, CheckpointReader(finetuned) as f:
        for name in b.names:
            info = b.info(name)
            if not info.dtype.is_floating_point:
                continue
            if name not in f:
                raise ValueError(f"tensor {name!r} of the base is missing from {finetuned}")
            if f.info(name).shape != info.shape:
                raise ValueError(f"tensor {name!r} has shape {f.info(name).shape} in {finetuned}, base has {info.shape}")
            tau = f.read(name).float() - b.read(name).float()
            sq = float(tau.double().pow(2).sum())
            report.total_sq += sq
            kind = kinds.get(name)
            wanted = (kind in ("linear", "conv1d") or (kind == "embedding" and embeddings)) and \
                (include is None or re.search(include, name)) and not (exclude and re.search(exclude, name))
            if not wanted:
                if sq > 0:
                    report.not_carried[name] = sq
                continue
            module = name.removesuffix(".weight")
            m = tau.T if kind in ("conv1d", "embedding") else tau  # PEFT's product B A is [out, in]
            u, s, vh = torch.linalg.svd(m, full_matrices=False)
            keep = _keep_mask(s, min(rank, s.numel()) if rank is not None else None, energy)
            r = int(keep.sum())
            total = float(s.double().pow(2).sum())
            report.full_rank[module] = s.numel()
            report.sq[module] = sq
            report.energy[module] = float(s[:r].double().pow(2).sum()) / total if total > 0 else 1.0
            if r == 0 or total == 0:
                report.notes.append(f"{module}: zero task vector, no factors written")
                continue
            root = s[:r].sqrt()
            factors[module] = ((root[:, None] * vh[:r]).contiguous(), (u[:, :r] * root).contiguous())
            report.ranks[module] = r
    if not factors:
        raise ValueError("no matrix to extract: every selected weight has a zero task vector")
    _write_adapter(out_dir, factors, kinds, base, report, overwrite)
    return report


def _write_adapter(out_dir, factors, kinds, base: Path, report: ExtractReport, overwrite: bool) -> None:
    r_max = max(report.ranks.values())
    other = {m: r for m, r in report.ranks.items() if r != r_max}
    config = {
        "peft_type": "LORA", "base_model_name_or_path": str(base), "r": r_max, "lora_alpha": r_max,
        # full module names: PEFT matches a pattern against the end of a module name
        "rank_pattern": {re.escape(m): r for m, r in other.items()},
        "alpha_pattern": {re.escape(m): r for m, r in other.items()},
        "target_modules": sorted(factors), "lora_dropout": 0.0, "bias": "none", "use_rslora": False,
        "fan_in_fan_out": any(kinds[f"{m}.weight"] == "conv1d" for m in factors), "modules_to_save": None,
        "inference_mode": True, "task_type": None, "init_lora_weights": True,
    }
    tensors = {}
    for module, (a, b) in factors.items():
        emb = kinds[f"{module}.weight"] == "embedding"
        kind = "lora_embedding_" if emb else "lora_"
        suffix = "" if emb else ".weight"
        tensors[f"{PEFT_PREFIX}{module}.{kind}A{suffix}"] = a
        tensors[f"{PEFT_PREFIX}{module}.{kind}B{suffix}"] = b
    with atomic_output_dir(out_dir, overwrite, [base]) as tmp:
        w = SafetensorsWriter(tmp / "adapter_model.safetensors",
                              [TensorInfo(n, tuple(t.shape), t.dtype) for n, t in tensors.items()])
        for n, t in tensors.items():
            w.write(n, t)
        w.close()
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(_adapter_card(base, report))


def _adapter_card(base: Path, report: ExtractReport) -> str:
    rows = "\n".join(f"| {m} | {report.ranks.get(m, 0)} / {report.full_rank[m]} | {report.energy[m]:.4f} |"
                     for m in report.energy)
    return (f"---\nlibrary_name: peft\ntags: [theorylab, peft, lora, task-vector]\n---\n"
            f"# LoRA adapter extracted with theorylab\n\nThe truncated SVD of the task vector (fine-tuned minus "
            f"{base.name}) of each adapted matrix, written as PEFT LoRA factors (scale 1).\n\n"
            f"Share of the whole task vector's squared norm carried: {report.carried_fraction:.4f}.\n\n"
            f"| module | rank kept / full | kept energy |\n|---|---|---|\n{rows}\n")
