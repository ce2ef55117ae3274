"""Merge configs in mergekit's YAML vocabulary, validated by frozen pydantic models.

Accepted (mergekit's names): merge_method, base_model, models[].model, models[].parameters.{weight,
density}, parameters.{weight, density, normalize, rescale, lambda, int8_mask}, dtype, out_dtype.
theorylab additions: parameters.seed (DARE masks), parameters.sign_consensus ("sum"/"count"),
parameters.lwptv (layer-wise pruning of the task vectors before any merge method; see LwptvParameters).
A parameter value may be a number, a list of numbers (gradient over blocks) or filter rules
[{filter: "self_attn", value: 0.5}, {value: 1.0}]. Unknown keys are rejected, naming the field.
Computation is always float32 (or float64 for float64 inputs); ``dtype``/``out_dtype`` only cast the output.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..edit.merge import MERGE_METHODS

OutDtype = Literal["float32", "float16", "bfloat16", "float64"]


class ConfigError(ValueError):
    """A merge config that cannot be used; the message names the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FilterRule(_Frozen):
    filter: str | None = None
    value: float


Param = float | list[float] | list[FilterRule]


def param_value(p: Param | None):
    """Pydantic objects -> the plain values theorylab.edit.params.resolve understands."""
    if isinstance(p, list) and p and isinstance(p[0], FilterRule):
        return [r.model_dump(exclude_none=True) for r in p]
    return p


class ModelParameters(_Frozen):
    weight: Param | None = None
    density: Param | None = None


class ModelEntry(_Frozen):
    model: str
    parameters: ModelParameters = ModelParameters()


class LwptvParameters(_Frozen):
    """LwPTV (Zhang et al. 2025): per task, the least salient blocks keep the base weights.
    ratio: fraction of blocks pruned per task (or threshold: prune blocks with score <= threshold);
    score: salient_mass (default; top_k sets its global magnitude quantile), relative_update, cross_task;
    mode: per_task masks, or global (a block keeps the base only where every task prunes it)."""
    ratio: float | None = Field(0.2, ge=0.0, le=1.0)
    threshold: float | None = None
    score: Literal["salient_mass", "relative_update", "cross_task"] = "salient_mass"
    mode: Literal["per_task", "global"] = "per_task"
    top_k: float = Field(0.2, gt=0.0, le=1.0)


class GlobalParameters(_Frozen):
    weight: Param | None = None
    density: Param | None = None
    normalize: bool | None = None
    rescale: bool | None = None
    lambda_: float = Field(1.0, alias="lambda")
    int8_mask: bool | None = None  # mergekit memory option; theorylab's masks are bool already: ignored
    seed: int = 0
    sign_consensus: Literal["sum", "count"] | None = None
    lwptv: LwptvParameters | None = None


class MergeConfig(_Frozen):
    merge_method: str
    base_model: str
    models: list[ModelEntry] = Field(min_length=1)
    parameters: GlobalParameters = GlobalParameters()
    dtype: OutDtype | None = None
    out_dtype: OutDtype | None = None

    @field_validator("merge_method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in MERGE_METHODS:
            raise ValueError(f"unknown merge_method {v!r}; known: {', '.join(sorted(MERGE_METHODS))}")
        return v

    @property
    def output_dtype(self) -> str | None:
        return self.out_dtype or self.dtype

    def notes(self) -> list[str]:
        out = []
        if self.parameters.int8_mask is not None:
            out.append("parameters.int8_mask is a mergekit memory option; ignored (masks are boolean here)")
        if self.dtype and not self.out_dtype:
            out.append(f"dtype {self.dtype}: output is cast to it; the merge itself is computed in float32")
        return out


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not isinstance(p, str) or not p.startswith(("list[", "float", "function")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not part of the mergekit vocabulary theorylab accepts)"
        lines.append(f"{loc or '<config>'}: {msg}")
    return "invalid merge config:\n  " + "\n  ".join(dict.fromkeys(lines))


def parse_config(data: dict) -> MergeConfig:
    try:
        return MergeConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def load_config(path: str | Path) -> MergeConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping with merge_method, base_model and models")
    return parse_config(data)


def resolve_model_path(ref: str, config_dir: Path | None = None) -> Path:
    """Local folders only: relative to the working directory, else to the config file's folder."""
    for cand in (Path(ref), (config_dir / ref) if config_dir else None):
        if cand is not None and cand.exists():
            return cand.resolve()
    raise ConfigError(f"model {ref!r} not found as a local path (theorylab reads local folders only; "
                      "download hub models first, e.g. with huggingface-cli download)")
