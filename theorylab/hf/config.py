"""Merge configs in mergekit's YAML vocabulary, validated by frozen pydantic models.

Accepted: merge_method (mergekit's task-vector family: linear, task_arithmetic, ties, dare_linear,
dare_ties, breadcrumbs, breadcrumbs_ties, della, della_linear, sce, model_stock; its whole-tensor methods:
slerp, nuslerp, multislerp, karcher, nearswap, arcee_fusion, passthrough; plus theorylab's
magnitude_prune*), base_model, models[].model (a folder, or mergekit's ``folder+lora_adapter``) or
slices[].sources[] (model, layer_range; whole-tensor methods), models[].parameters (the method's per-model
parameters), parameters (the method's parameters), dtype, out_dtype, tokenizer_source / tokenizer (base,
union or a model). Each method takes exactly the parameters mergekit's spec gives it (see
``MergeMethod``). theorylab additions: parameters.seed (random masks), parameters.sign_consensus
("sum"/"count"), parameters.rescale_norm (l1/l2/linf/density), parameters.lwptv (layer-wise pruning of the
task vectors), compute_dtype. A parameter value may be a number, a list of numbers (gradient over blocks)
or filter rules [{filter: "self_attn", value: 0.5}, {value: 1.0}]. Every problem is reported as one line
naming the field. ``dtype`` is the precision the merge is computed in (as in mergekit) unless
compute_dtype says float32; ``out_dtype`` the precision written.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..edit.merge import MERGE_METHODS, MERGEKIT_ONLY_METHODS, get_merge_method

OutDtype = Literal["float32", "float16", "bfloat16", "float64"]
# mergekit config keys for things theorylab does not do: layer stacking and tokenizer surgery.
UNSUPPORTED_KEYS = {
    "modules": "per-module merge definitions",
    "chat_template": "chat template selection (the output takes the base model's files)",
}
THEORYLAB_PARAMETERS = ("seed", "sign_consensus", "rescale_norm", "lwptv")
PER_MODEL_NAMES = ("weight", "density", "gamma", "epsilon", "scale")
# Valid range of each numeric parameter: (low, high, low inclusive, high inclusive)
RANGES = {"density": (0.0, 1.0), "gamma": (0.0, 1.0), "epsilon": (0.0, 0.5), "select_topk": (0.0, 1.0)}
MERGEKIT_HINT = "use mergekit itself for it (pip install mergekit; mergekit-yaml config.yml out_dir)"


class ConfigError(ValueError):
    """A merge config that cannot be used; the message names the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FilterRule(_Frozen):
    filter: str | None = None
    value: float | list[float]


Param = float | list[float] | list[FilterRule]


def param_value(p: Param | None):
    """Pydantic objects -> the plain values theorylab.edit.params.resolve understands."""
    if isinstance(p, list) and p and isinstance(p[0], FilterRule):
        return [r.model_dump(exclude_none=True) for r in p]
    return p


def _numbers(p) -> list[float]:
    if isinstance(p, (int, float)):
        return [float(p)]
    if isinstance(p, list):
        return [x for v in p for x in _numbers(v.value if isinstance(v, FilterRule) else v)]
    return []


MAX_ABS = {"weight": 1e6, "lambda": 1e6}  # beyond these a merge only overflows; a typo more likely than intent


def _check_range(name: str, p, where: str, model: str | None = None) -> None:
    if p is None:
        return
    of = f" (model {model!r})" if model else ""
    for x in _numbers(p):
        if not math.isfinite(x):
            raise ValueError(f"{where}.{name}{of} must be a finite number, got {x}")
        if name in MAX_ABS and abs(x) > MAX_ABS[name]:
            raise ValueError(f"{where}.{name}{of} must satisfy |{name}| <= {MAX_ABS[name]:g}, got {x:g}")
    if name not in RANGES:
        return
    lo, hi = RANGES[name]
    for x in _numbers(p):
        if not lo <= x <= hi:
            raise ValueError(f"{where}.{name} must be in [{lo}, {hi}], got {x}")


class ModelParameters(_Frozen):
    weight: Param | None = None
    density: Param | None = None
    gamma: Param | None = None
    epsilon: Param | None = None
    scale: Param | None = None  # passthrough

    def given(self) -> list[str]:
        return [k for k in PER_MODEL_NAMES if getattr(self, k) is not None]


class _ModelReference(_Frozen):
    """A ``model`` string as mergekit writes it: a folder, or ``folder+lora_adapter``."""
    model: str

    @property
    def path(self) -> str:
        return self.model.split("+", 1)[0]

    @property
    def lora(self) -> str | None:
        """mergekit's ``model+lora`` reference: the model with a PEFT LoRA adapter applied."""
        parts = self.model.split("+", 1)
        return parts[1] if len(parts) == 2 else None


class ModelEntry(_ModelReference):
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


class GlobalParameters(ModelParameters):
    normalize: bool | None = None
    rescale: bool | None = None
    lambda_: Param = Field(1.0, alias="lambda")
    int8_mask: bool | None = None  # mergekit memory option; theorylab's masks are bool already: ignored
    select_topk: Param = 1.0
    filter_wise: bool = False
    seed: int = 0
    sign_consensus: Literal["sum", "count"] | None = None
    rescale_norm: Literal["l1", "l2", "linf", "density"] | None = None
    lwptv: LwptvParameters | None = None
    # the whole-tensor methods' own parameters (theorylab.edit.geometric)
    t: Param | None = None
    nuslerp_flatten: bool | None = None
    nuslerp_row_wise: bool | None = None
    normalize_weights: bool | None = None
    eps: float | None = None
    max_iter: int | None = Field(None, ge=1, le=10_000)
    tol: float | None = Field(None, ge=0.0)

    def given(self) -> list[str]:
        names = {"lambda_": "lambda"}
        return [names.get(k, k) for k in self.model_fields_set]


class ZeroRow(_Frozen):
    kind: Literal["zero"]


class ModelTokenRow(_Frozen):
    kind: Literal["model_token"]
    model: str
    token_id: int | None = Field(None, ge=0)
    token: str | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.token_id is None) == (self.token is None):
            raise ValueError("give exactly one of token_id and token")
        return self


class TokenSpec(_Frozen):
    """Where a token's embedding row comes from when a model lacks it (or always, with force)."""
    source: ZeroRow | ModelTokenRow | str | None = None
    force: bool = False


class TokenizerSettings(_Frozen):
    source: str = "union"
    tokens: dict[str, TokenSpec] | None = None
    pad_to_multiple_of: int | None = Field(None, ge=1)


class SliceSource(_ModelReference):
    layer_range: tuple[int, int]
    parameters: ModelParameters = ModelParameters()

    @model_validator(mode="after")
    def _range(self):
        a, b = self.layer_range
        if not 0 <= a < b:
            raise ValueError(f"layer_range must be [start, stop] with 0 <= start < stop, got [{a}, {b}]")
        return self


class SliceEntry(_Frozen):
    """One output slice (mergekit's ``slices:``): the same number of layers from each source."""
    sources: list[SliceSource] = Field(min_length=1)
    parameters: GlobalParameters = GlobalParameters()

    @model_validator(mode="after")
    def _same_length(self):
        lengths = {s.layer_range[1] - s.layer_range[0] for s in self.sources}
        if len(lengths) > 1:
            raise ValueError("every source of a slice must span the same number of layers, got "
                             + ", ".join(f"{s.model}: {list(s.layer_range)}" for s in self.sources))
        return self


class MergeConfig(_Frozen):
    merge_method: str
    base_model: str | None = None
    models: list[ModelEntry] | None = Field(None, min_length=1)
    slices: list[SliceEntry] | None = Field(None, min_length=1)
    parameters: GlobalParameters = GlobalParameters()
    dtype: OutDtype | None = None
    out_dtype: OutDtype | None = None
    # theorylab: the precision of the arithmetic. Default (None): mergekit's, i.e. ``dtype`` when given
    # (a bfloat16 merge computes in bfloat16), else the inputs' own; "float32" computes in float32 and
    # only casts the output.
    compute_dtype: Literal["float32", "float64"] | None = None
    tokenizer_source: str | None = None  # "base", "union" or a model
    tokenizer: TokenizerSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, what in UNSUPPORTED_KEYS.items():
                if key in data:
                    raise ValueError(f"{key}: {what} is not supported by theorylab merge; {MERGEKIT_HINT}")
            method = data.get("merge_method")
            if isinstance(method, str) and method not in MERGE_METHODS:
                if method in MERGEKIT_ONLY_METHODS:
                    raise ValueError(f"merge_method: {method!r} is outside the task-vector family and not supported by "
                                     f"theorylab merge; {MERGEKIT_HINT}. Supported: {', '.join(MERGE_METHODS)}")
                raise ValueError(f"merge_method: unknown method {method!r}; supported: {', '.join(MERGE_METHODS)}")
        return data

    @model_validator(mode="after")
    def _parameters_fit_the_method(self):
        method = get_merge_method(self.merge_method)
        if self.tokenizer_source is not None and self.tokenizer is not None:
            raise ValueError("tokenizer_source / tokenizer: give at most one of them")
        if (self.models is None) == (self.slices is None):
            raise ValueError("models / slices: give exactly one of them (models: whole models; slices: layer ranges)")
        extras = THEORYLAB_PARAMETERS if method.kernel is None else ()
        takes = set(method.parameters) | set(extras)
        for where, params in [("parameters", self.parameters)] + [
                (f"slices[{i}].parameters", s.parameters) for i, s in enumerate(self.slices or [])]:
            for name in params.given():
                if name not in takes:
                    raise ValueError(f"{where}.{name}: not a parameter of {self.merge_method} "
                                     f"(it takes: {', '.join(method.parameters + extras) or 'nothing'})")
                _check_range(name, getattr(params, "lambda_" if name == "lambda" else name, None), where)
        for where, m in self.listed_inputs():
            for name in m.parameters.given():
                if name not in method.per_model_parameters:
                    raise ValueError(f"{where}.parameters.{name}: not a per-model parameter of {self.merge_method} "
                                     f"(per model it takes: {', '.join(method.per_model_parameters) or 'nothing'})")
                _check_range(name, getattr(m.parameters, name), f"{where}.parameters", m.model)
        if method.kernel is None:
            if self.slices is not None:
                raise ValueError(f"slices: layer slices are supported with the whole-tensor methods (passthrough, "
                                 f"slerp, nuslerp, ...), not with {self.merge_method}; {MERGEKIT_HINT}")
            if self.base_model is None and self.merge_method != "linear":
                raise ValueError(f"base_model: required by {self.merge_method} (task vectors are differences to it)")
        elif method.kernel.base == "required" and self.base_model is None:
            raise ValueError(f"base_model: required by {self.merge_method}")
        return self

    def listed_inputs(self) -> list[tuple[str, "ModelEntry | SliceSource"]]:
        """(where in the config, entry) for every model listed under models or slices[].sources."""
        if self.models is not None:
            return [(f"models[{i}]", m) for i, m in enumerate(self.models)]
        return [(f"slices[{i}].sources[{j}]", s) for i, sl in enumerate(self.slices) for j, s in enumerate(sl.sources)]

    @property
    def vocabulary_source(self) -> str | None:
        """"base", a model reference, or None (no tokenizer handling: the base's files are copied)."""
        return self.tokenizer.source if self.tokenizer is not None else self.tokenizer_source

    @property
    def output_dtype(self) -> str | None:
        return self.out_dtype or self.dtype

    def notes(self) -> list[str]:
        out = []
        if self.parameters.int8_mask is not None:
            out.append("parameters.int8_mask is a mergekit memory option; ignored (masks are boolean here)")
        if self.compute_dtype and self.dtype and self.compute_dtype != self.dtype:
            out.append(f"compute_dtype {self.compute_dtype}: the merge is computed in it, then cast to "
                       f"{self.output_dtype} (mergekit computes in dtype {self.dtype})")
        return out


PARAM_FIELDS = ("weight", "density", "gamma", "epsilon", "lambda", "select_topk", "t", "scale")


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        parts = [p for p in e["loc"] if not isinstance(p, str) or not p.startswith(("list[", "float", "function"))]
        msg = e["msg"].removeprefix("Value error, ")
        at_param = next((i for i, p in enumerate(parts) if p in PARAM_FIELDS), None)
        if e["type"] == "extra_forbidden" and at_param == len(parts) - 1:
            at_param = None  # the parameter's name itself is out of place, not its value
        if at_param is not None and (at_param < len(parts) - 1 or e["type"] != "value_error"):
            # a parameter value failed every form it may take: say what the forms are, once
            parts = parts[: at_param + 1]
            msg = "expected a number, a list of numbers (a gradient over blocks) or a list of {filter, value} rules"
        elif e["type"] == "extra_forbidden":
            per_model = len(parts) >= 3 and parts[0] == "models"
            msg = ("a global parameter, set it once under parameters:" if per_model and parts[-1] in
                   GlobalParameters.model_fields.keys() | {"lambda"} else
                   "unknown field (not part of the mergekit vocabulary theorylab accepts)")
        loc = ".".join(str(p) for p in parts)
        if e["type"] == "value_error" and not e["loc"]:
            loc = ""  # model validators name the field themselves
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "invalid merge config: " + "; ".join(dict.fromkeys(lines))


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
