"""Extract a PEFT LoRA adapter that carries a fine-tune's whole task vector (``theorylab extract-lora``).

Linear and Conv1D weights become the truncated SVD of their task vector, one tensor at a time (Eckart-Young),
split as B = U sqrt(S), A = sqrt(S) V^T with scale 1 (lora_alpha = r per module), as mergekit-extract-lora
does. Everything else that changed and that LoRA factors cannot hold (norms, embeddings and the LM head
unless ``embeddings=True``, other module types) is saved whole in peft's ``modules_to_save``, again as
mergekit does (mergekit saves those modules even when unchanged; we only save what changed, plus what the
caller names). Changed biases of adapted layers travel as peft's ``lora_bias`` when every adapted layer has a
bias (peft's rule); otherwise they are reported as not carried.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..edit.lowrank import _keep_mask
from ..edit.state import check_fraction
from .checkpoint import CheckpointReader, atomic_output_dir, check_output_target
from .lora import PEFT_PREFIX
from .safetensors_io import SafetensorsWriter, TensorInfo

_KINDS = {"Linear": "linear", "Conv1D": "conv1d", "Embedding": "embedding"}
# peft task types by the suffix of a transformers architecture name. Classification heads get none: peft's
# SEQ_CLS / TOKEN_CLS / QUESTION_ANS add the head to modules_to_save on their own, which would clash with
# factoring it.
_TASK_TYPES = (("ForCausalLM", "CAUSAL_LM"), ("LMHeadModel", "CAUSAL_LM"), ("ForSeq2SeqLM", "SEQ_2_SEQ_LM"),
               ("Model", "FEATURE_EXTRACTION"))


@dataclass(frozen=True)
class ModuleInfo:
    name: str
    kind: str  # "linear" | "conv1d" | "embedding" | "other" (norms and anything LoRA has no factors for)
    params: tuple[str, ...]  # its own parameters, e.g. ("weight", "bias")
    embedding: bool  # an nn.Embedding, or the model's input or output embeddings (the LM head)


@dataclass(frozen=True)
class Architecture:
    modules: tuple[ModuleInfo, ...]
    task_type: str | None
    tied_embeddings: bool
    input_embeddings: str | None  # module names
    output_embeddings: str | None


def architecture(model_dir: str | Path) -> Architecture:
    """The model's modules from its architecture instantiated on the meta device (no weights are read)."""
    from theorylab.core.extras import require

    transformers = require("transformers", "extract-lora")

    cfg = transformers.AutoConfig.from_pretrained(model_dir)
    arch = (getattr(cfg, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        raise ValueError(f"{model_dir}: config.json names no transformers architecture to find the model's modules")
    with torch.device("meta"):
        model = cls(cfg)
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    edges = {id(m) for m in (inp, out) if m is not None}
    tied = inp is not None and out is not None and out.weight is inp.weight
    modules = []
    for name, mod in model.named_modules():
        params = tuple(p for p, _ in mod.named_parameters(recurse=False))
        if name and params:
            kind = _KINDS.get(type(mod).__name__, "other")
            modules.append(ModuleInfo(name, kind, params, kind == "embedding" or id(mod) in edges))
    task_type = next((t for suffix, t in _TASK_TYPES if arch.endswith(suffix)), None)
    names = {id(mod): name for name, mod in model.named_modules()}
    return Architecture(tuple(modules), task_type, tied, names.get(id(inp)), names.get(id(out)))


def module_kinds(model_dir: str | Path) -> dict[str, str]:
    """Weight name -> "linear" | "conv1d" | "embedding" for the model's matrices LoRA can adapt."""
    return {f"{m.name}.weight": m.kind for m in architecture(model_dir).modules
            if m.kind != "other" and "weight" in m.params}


@dataclass
class ExtractReport:
    out_dir: Path
    ranks: dict[str, int] = field(default_factory=dict)  # module -> kept rank
    energy: dict[str, float] = field(default_factory=dict)  # module -> kept fraction of ||tau||^2
    full_rank: dict[str, int] = field(default_factory=dict)
    capped: dict[str, int] = field(default_factory=dict)  # module -> its full rank, where --rank asked for more
    saved_whole: dict[str, float] = field(default_factory=dict)  # tensor -> ||tau||^2, carried exactly
    lora_bias: dict[str, float] = field(default_factory=dict)  # bias -> ||tau||^2, carried exactly
    not_carried: dict[str, float] = field(default_factory=dict)  # tensor -> ||tau||^2 left out
    sq: dict[str, float] = field(default_factory=dict)  # module -> ||tau||^2 of its weight
    total_sq: float = 0.0
    task_type: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def carried_fraction(self) -> float:
        """Share of the whole task vector's squared norm that the adapter carries."""
        kept = sum(self.energy[m] * self.sq[m] for m in self.energy)
        kept += sum(self.saved_whole.values()) + sum(self.lora_bias.values())
        return kept / self.total_sq if self.total_sq > 0 else 1.0


def _patterns(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    patterns = [value] if isinstance(value, str) else list(value)
    for p in patterns:
        try:
            re.compile(p)
        except re.error as err:
            raise ValueError(f"include/exclude: {p!r} is not a valid regular expression ({err})") from None
    return patterns


def _check_args(rank, energy, sv_epsilon) -> None:
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of --rank (int >= 1) or --energy (fraction in (0, 1])")
    if rank is not None and rank < 1:
        raise ValueError(f"--rank must be >= 1, got {rank}")
    if energy is not None:
        check_fraction(energy, "energy")
        if energy <= 0:
            raise ValueError("--energy must be in (0, 1], got 0")
    if not (math.isfinite(sv_epsilon) and sv_epsilon >= 0):
        raise ValueError(f"--sv-epsilon must be a finite number >= 0, got {sv_epsilon}")


def _check_rank(rank: int, shapes: dict[str, tuple[int, ...]]) -> None:
    """--rank is a per-matrix maximum, as mergekit-extract-lora's --max-rank: a matrix whose smaller side is
    below it keeps its full rank (reported as capped). A rank above every adapted matrix's smaller side asks
    for nothing any matrix can give, and would make the adapter larger than the task vector itself: refused."""
    if not shapes:
        return
    module, shape = max(shapes.items(), key=lambda kv: min(kv[1]))
    largest = min(shape)
    if rank > largest:
        raise ValueError(f"--rank {rank} exceeds the full rank of every adapted matrix; the largest rank they allow "
                         f"is {largest} ({module}: {' x '.join(map(str, shape))})")


def _factors(tau: Tensor, rank, energy, sv_epsilon) -> tuple[Tensor, Tensor, Tensor]:
    """(A, B, singular values) of the kept part of tau (PEFT's product B A is [out, in])."""
    u, s, vh = torch.linalg.svd(tau, full_matrices=False)
    keep = _keep_mask(s, min(rank, s.numel()) if rank is not None else None, energy).bool()
    keep &= s > sv_epsilon  # mergekit's --sv-epsilon: drop singular values at or below it
    r = int(keep.sum())
    root = s[:r].sqrt()
    return (root[:, None] * vh[:r]).contiguous(), (u[:, :r] * root).contiguous(), s


def extract_lora(finetuned: str | Path, base: str | Path, out_dir: str | Path, *, rank: int | None = None,
                 energy: float | None = None, sv_epsilon: float = 0.0, embeddings: bool = False,
                 save_modules: Sequence[str] = (), include: str | Sequence[str] | None = None,
                 exclude: str | Sequence[str] | None = None, skip_undecomposable: bool = False,
                 overwrite: bool = False) -> ExtractReport:
    """Write the task vector finetuned - base as a PEFT LoRA adapter (atomically).

    rank: keep r singular values per matrix; energy: keep the fewest leading values holding this fraction of
    each matrix's squared norm; sv_epsilon: also drop singular values <= it. embeddings: write embeddings and
    the LM head as LoRA factors too (mergekit's --embed-lora; otherwise they are saved whole if changed).
    save_modules: modules saved whole regardless (a full name or its last part, e.g. "lm_head").
    include/exclude: regexes on module names ("model.layers.0.mlp.up_proj"), as mergekit's. skip_undecomposable:
    report changed norms etc. as not carried instead of saving them whole.
    """
    _check_args(rank, energy, sv_epsilon)
    includes, excludes = _patterns(include), _patterns(exclude)
    base_as_given = os.fspath(base)
    base, finetuned = Path(base), Path(finetuned)
    check_output_target(out_dir, [finetuned, base])
    arch = architecture(base)
    short = {m.name for m in arch.modules} | {m.name.rsplit(".", 1)[-1] for m in arch.modules}
    unknown = [m for m in save_modules if m not in short]
    if unknown:
        raise ValueError(f"--save-module {unknown[0]!r} names no module of {base} (give a full module name or "
                         f"its last part, e.g. lm_head)")
    report = ExtractReport(Path(out_dir).resolve(), task_type=arch.task_type)
    factors: dict[str, tuple[Tensor, Tensor]] = {}
    whole: list[str] = []  # tensor names copied from the fine-tune
    biases: dict[str, Tensor] = {}  # bias name -> delta of an adapted module
    with CheckpointReader(base) as b, CheckpointReader(finetuned) as f:
        taus = _TaskVector(b, f, finetuned)

        def plan(mod: ModuleInfo) -> tuple[list[str], bool, bool, bool]:
            """(its floating tensors, saved whole on request, selected by include/exclude, factored as LoRA)"""
            names = [f"{mod.name}.{p}" for p in mod.params if taus.floating(f"{mod.name}.{p}")]
            asked = mod.name in save_modules or mod.name.rsplit(".", 1)[-1] in save_modules
            selected = (not includes or any(re.search(p, mod.name) for p in includes)) and \
                not any(re.search(p, mod.name) for p in excludes)
            as_lora = mod.kind != "other" and f"{mod.name}.weight" in names and (embeddings or not mod.embedding)
            return names, asked, selected, as_lora

        if rank is not None:  # from the headers alone, before any tensor is read
            factored = [m.name for m in arch.modules if (p := plan(m))[3] and p[2] and not p[1]]
            _check_rank(rank, {m: b.info(f"{m}.weight").shape for m in factored})
        owned = set()
        for mod in arch.modules:
            names, asked, selected, as_lora = plan(mod)
            owned.update(names)
            if not names:
                continue
            sqs = {n: taus.sq(n) for n in names}
            weight = f"{mod.name}.weight"
            if asked:
                whole += names
                report.saved_whole |= sqs
            elif not selected or (not as_lora and skip_undecomposable):
                report.not_carried |= {n: s for n, s in sqs.items() if s > 0}
            elif not as_lora:
                if any(s > 0 for s in sqs.values()):
                    whole += names
                    report.saved_whole |= sqs
            else:
                tau = taus.read(weight)
                m = tau.T if mod.kind in ("conv1d", "embedding") else tau
                a, bb, s = _factors(m, rank, energy, sv_epsilon)
                total = float(s.double().pow(2).sum())
                r = a.shape[0]
                report.full_rank[mod.name], report.sq[mod.name] = s.numel(), sqs[weight]
                if rank is not None and rank > s.numel():
                    report.capped[mod.name] = s.numel()
                report.energy[mod.name] = float(s[:r].double().pow(2).sum()) / total if total > 0 else 1.0
                if r == 0:
                    report.notes.append(f"{mod.name}: " + ("zero task vector" if total == 0 else
                                        f"no singular value above --sv-epsilon {sv_epsilon}") + ", no factors written")
                else:
                    factors[mod.name] = (a, bb)
                    report.ranks[mod.name] = r
                bias = f"{mod.name}.bias"
                if bias in names:
                    biases[bias] = taus.read(bias)
            taus.release()
        for name in taus.names:
            if name not in owned and taus.floating(name) and (sq := taus.sq(name)) > 0:
                report.not_carried[name] = sq
            taus.release()
        use_lora_bias = _carry_biases(factors, biases, arch, report)
        if not factors and not whole:
            raise ValueError("nothing to extract: every selected tensor has a zero task vector")
        _write_adapter(out_dir, factors, whole, biases if use_lora_bias else {}, arch, f, base, base_as_given,
                       report, overwrite)
    return report


class _TaskVector:
    """finetuned - base per tensor, read on demand; squared norms are counted once into the report."""

    def __init__(self, base: CheckpointReader, finetuned: CheckpointReader, ft_path: Path):
        self.b, self.f, self.ft_path = base, finetuned, ft_path
        self.names = base.names
        self._sq: dict[str, float] = {}
        self._held: dict[str, Tensor] = {}  # the current module's task vectors, so each is read once

    def release(self) -> None:
        self._held.clear()

    def floating(self, name: str) -> bool:
        return name in self.b and self.b.info(name).dtype.is_floating_point

    def read(self, name: str) -> Tensor:
        if name not in self._held:
            self._held[name] = self._difference(name)
        return self._held[name]

    def _difference(self, name: str) -> Tensor:
        if name not in self.f:
            raise ValueError(f"tensor {name!r} of the base is missing from {self.ft_path}")
        if self.f.info(name).shape != self.b.info(name).shape:
            raise ValueError(f"tensor {name!r} has shape {self.f.info(name).shape} in {self.ft_path}, "
                             f"base has {self.b.info(name).shape}")
        return self.f.read(name).float() - self.b.read(name).float()

    def sq(self, name: str) -> float:
        if name not in self._sq:
            self._sq[name] = float(self.read(name).double().pow(2).sum())
        return self._sq[name]


def _carry_biases(factors, biases: dict[str, Tensor], arch: Architecture, report: ExtractReport) -> bool:
    """peft's lora_bias gives every adapted layer a bias in lora_B; it cannot merge into a layer without one
    and refuses it on embeddings, so it is used only when every adapted layer has a bias."""
    changed = {n: float(t.double().pow(2).sum()) for n, t in biases.items()}
    changed = {n: s for n, s in changed.items() if s > 0}
    kinds = {m.name: m.kind for m in arch.modules}
    possible = all(f"{m}.bias" in biases and kinds[m] != "embedding" for m in factors)
    if changed and possible:
        report.lora_bias |= {n: s for n, s in changed.items() if n.removesuffix(".bias") in factors}
    lost = {n: s for n, s in changed.items() if n not in report.lora_bias}
    if lost:
        report.not_carried |= lost
        if not possible:
            report.notes.append(f"{len(lost)} changed biases of adapted layers are not carried: peft's lora_bias "
                                "needs every adapted layer to have a bias (and no embedding LoRA); "
                                "--save-module saves such a module whole")
    return bool(report.lora_bias)


def _write_adapter(out_dir, factors, whole: list[str], biases: dict[str, Tensor], arch: Architecture,
                   finetuned: CheckpointReader, base: Path, base_as_given: str, report: ExtractReport,
                   overwrite: bool) -> None:
    kinds = {m.name: m.kind for m in arch.modules}
    r_max = max(report.ranks.values(), default=1)
    other = {m: r for m, r in report.ranks.items() if r != r_max}
    sources = {n: n for n in whole}  # adapter tensor -> fine-tune tensor
    # A tied LM head must follow a whole-saved input embedding, as it does in the fine-tune. As peft itself does
    # for tied models, the head is saved too (a copy of the embedding) with ensure_weight_tying set.
    tie_head = arch.tied_embeddings and arch.output_embeddings and f"{arch.input_embeddings}.weight" in sources
    if tie_head:
        sources.setdefault(f"{arch.output_embeddings}.weight", f"{arch.input_embeddings}.weight")
    saved_modules = sorted({n.rsplit(".", 1)[0] for n in sources})
    config = {
        "peft_type": "LORA", "base_model_name_or_path": base_as_given, "task_type": report.task_type,
        "r": r_max, "lora_alpha": r_max,
        # full module names: PEFT matches a pattern against the end of a module name
        "rank_pattern": {re.escape(m): r for m, r in other.items()},
        "alpha_pattern": {re.escape(m): r for m, r in other.items()},
        "target_modules": sorted(factors), "modules_to_save": saved_modules or None,
        "lora_dropout": 0.0, "bias": "none", "lora_bias": bool(biases), "use_rslora": False,
        "fan_in_fan_out": any(kinds[m] == "conv1d" for m in factors),
        "ensure_weight_tying": bool(tie_head),
        "inference_mode": True, "init_lora_weights": True,
    }
    tensors: dict[str, Tensor | None] = {}
    for module, (a, b) in factors.items():
        emb = kinds[module] == "embedding"
        kind, suffix = ("lora_embedding_", "") if emb else ("lora_", ".weight")
        tensors[f"{PEFT_PREFIX}{module}.{kind}A{suffix}"] = a
        tensors[f"{PEFT_PREFIX}{module}.{kind}B{suffix}"] = b
        if biases:
            tensors[f"{PEFT_PREFIX}{module}.lora_B.bias"] = biases[f"{module}.bias"]
    infos = [TensorInfo(n, tuple(t.shape), t.dtype) for n, t in tensors.items()]
    infos += [TensorInfo(f"{PEFT_PREFIX}{n}", tuple(finetuned.info(src).shape), finetuned.info(src).dtype)
              for n, src in sources.items()]
    report.total_sq = _total_sq(report)
    with atomic_output_dir(out_dir, overwrite, [base]) as tmp:
        w = SafetensorsWriter(tmp / "adapter_model.safetensors", infos)
        for n, t in tensors.items():
            w.write(n, t)
        for n, src in sources.items():  # copied from the fine-tune one tensor at a time
            w.write(f"{PEFT_PREFIX}{n}", finetuned.read(src))
        w.close()
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(_adapter_card(base, report))


def _total_sq(report: ExtractReport) -> float:
    return sum(report.sq.values()) + sum(report.saved_whole.values()) + sum(report.lora_bias.values()) + \
        sum(report.not_carried.values())


def _adapter_card(base: Path, report: ExtractReport) -> str:
    rows = "\n".join(f"| {m} | {report.ranks.get(m, 0)} / {report.full_rank[m]} | {report.energy[m]:.4f} |"
                     for m in report.energy)
    whole = ", ".join(sorted({n.rsplit(".", 1)[0] for n in report.saved_whole})) or "none"
    return (f"---\nlibrary_name: peft\ntags: [theorylab, peft, lora, task-vector]\n---\n"
            f"# LoRA adapter extracted with theorylab\n\nThe truncated SVD of the task vector (fine-tuned minus "
            f"{base.name}) of each adapted matrix, written as PEFT LoRA factors (scale 1); modules saved whole "
            f"(modules_to_save): {whole}.\n\n"
            f"Share of the whole task vector's squared norm carried: {report.carried_fraction:.4f}.\n\n"
            f"| module | rank kept / full | kept energy |\n|---|---|---|\n{rows}\n")
