"""Typed, frozen configs; overrides from strings; stable hashes; clear errors.

A study's config is a frozen pydantic model that rejects unknown keys. Its hash (over the study name
and every field, seed included) names a grid cell everywhere: in the store, in the random streams
(core.rng), on other machines. Fields listed in `ensemble_scalars` may differ between models trained
together as one ensemble (they become [E] tensors); every other field must be equal inside a group.
"""
from __future__ import annotations

import hashlib
import json
import math
import typing
from typing import Any, ClassVar, TypeVar

import annotated_types as at
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

C = TypeVar("C", bound="StudyConfig")
SEED_LIMIT = 2**62
INT64 = 2**63


class ConfigError(ValueError):
    """A config value is unknown or out of range. The message names the field and the allowed range."""


class StudyConfig(BaseModel):
    """The fields every study has (a study redeclares them with its own defaults and bounds) and the kit's
    conventions: the trainer reads lr, B, steps and curve_points; seeds derive every random stream."""
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    study: ClassVar[str] = "base"
    # Fields that may vary between the models of one ensemble (they become [E] tensors).
    ensemble_scalars: ClassVar[frozenset[str]] = frozenset({"seed"})
    # Common random numbers: fields a claim sweeps while the world stays fixed. Two configs that differ only in
    # these draw every random stream from one key (world_hash), so the cells of one seed share their teacher,
    # patterns and initialisation and a comparison across cells is not confounded by a redraw.
    swept_fields: ClassVar[frozenset[str]] = frozenset()

    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="seed; every random stream derives from the config hash")
    lr: float = Field(0.1, gt=0, le=1e4, description="learning rate")
    B: int = Field(64, ge=1, le=1 << 20, description="batch size")
    steps: int = Field(1000, ge=1, le=10_000_000, description="optimizer steps")
    curve_points: int = Field(40, ge=2, le=10_000, description="checkpoints recorded along training")

    # tuple fields whose elements may be negative (every other tuple field holds sizes, rates, grids: >= 0)
    signed_tuples: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        """pydantic's lax mode reads true as 1 and 1.0: `--set seed=true` would train seed 1. A boolean is
        accepted only by a field whose type admits bool."""
        if isinstance(data, dict):
            for name, value in data.items():
                info = cls.model_fields.get(name)
                if info is None or _admits_bool(info.annotation):
                    continue
                if isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)):
                    raise ValueError(f"field '{name}' takes numbers, not true/false (got {value!r})")
        return data

    @model_validator(mode="after")
    def _tuple_elements_are_sane(self) -> "StudyConfig":
        """One rule for every study's tuple fields (grids, radii, cut-offs): not empty, every element finite,
        and >= 0 unless the field is in `signed_tuples`."""
        for name, value in self:
            if not isinstance(value, (tuple, list)):
                continue
            if not value:
                raise ValueError(f"field '{name}' must have at least one element (got an empty list)")
            for v in value:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"field '{name}': every element must be a finite number (got {v})")
                if isinstance(v, (int, float)) and v < 0 and name not in self.signed_tuples:
                    raise ValueError(f"field '{name}': every element must be >= 0 (got {v})")
        return self

    @model_validator(mode="after")
    def _integers_fit_the_store(self) -> "StudyConfig":
        """Seeds feed 64-bit counters and every integer lands in SQLite/parquet as int64: a study that
        redeclares a field without an upper bound still cannot take a value the store cannot hold."""
        if not 0 <= self.seed < SEED_LIMIT:
            raise ValueError(f"field 'seed' must be in [0, 2**62) (got {self.seed})")
        for name, value in self:
            for v in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(v, int) and not isinstance(v, bool) and not -INT64 <= v < INT64:
                    raise ValueError(f"field '{name}' must fit a signed 64-bit integer (got {v})")
        return self

    @property
    def hash(self) -> str:
        return config_hash(self)

    @property
    def world_hash(self) -> str:
        """The key of every random stream: the config hash less the swept fields (equal to `hash` when the study
        declares none, so declaring none changes no number)."""
        if not self.swept_fields:
            return self.hash
        if "seed" in self.swept_fields:
            raise ValueError(f"{self.study}: 'seed' defines the world and cannot be a swept field")
        kept = {k: v for k, v in self.model_dump(mode="json").items() if k not in self.swept_fields}
        return _digest({"study": self.study, "world": kept})

    def group_key(self) -> str:
        """Cells with equal group keys share tensor shapes and program: they train as one ensemble."""
        shared = {k: v for k, v in self.model_dump(mode="json").items() if k not in self.ensemble_scalars}
        return _digest({"study": self.study, **shared})

    def replace(self: C, **changes: Any) -> C:
        return make_config(type(self), {**self.model_dump(), **changes})


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    return any(_admits_bool(a) for a in typing.get_args(annotation) if a is not Ellipsis)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def config_hash(cfg: StudyConfig) -> str:
    return _digest({"study": cfg.study, **cfg.model_dump(mode="json")})


def field_bounds(cls: type[StudyConfig], name: str) -> tuple[Any, Any, bool, bool]:
    """(lo, hi, lo_open, hi_open) of a field's declared constraints (None where it has none)."""
    lo = hi = None
    lo_open = hi_open = False
    for m in cls.model_fields[name].metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
    return lo, hi, lo_open, hi_open


def allowed_range(cls: type[StudyConfig], name: str) -> str:
    """Human-readable allowed values of a field, from its declared constraints and type."""
    info = cls.model_fields[name]
    lo, hi, lo_open, hi_open = field_bounds(cls, name)
    ann = getattr(info.annotation, "__name__", str(info.annotation))
    if lo is None and hi is None:
        return f"a value of type {ann}"
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{ann} in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def _format_errors(cls: type[StudyConfig], err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        if e["type"] == "extra_forbidden":
            known = ", ".join(sorted(cls.model_fields))
            lines.append(f"unknown field '{field}' for study '{cls.study}'. Known fields: {known}")
        elif field in cls.model_fields:
            lines.append(
                f"field '{field}': {e['msg']} (got {e.get('input')!r}); allowed: {allowed_range(cls, field)}"
            )
        else:
            lines.append(e["msg"].removeprefix("Value error, "))
    return f"invalid {cls.study} config:\n  " + "\n  ".join(lines)


def make_config(cls: type[C], values: dict[str, Any]) -> C:
    try:
        return cls(**values)
    except ValidationError as err:
        raise ConfigError(_format_errors(cls, err)) from None


def parse_assignments(items: list[str] | None, what: str = "--set") -> dict[str, Any]:
    """['alpha=0.8', 'l_ts=[4,8]'] -> {'alpha': 0.8, 'l_ts': [4, 8]} (values parsed as YAML scalars/lists)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} expects key=value, got {_short(item)!r}")
        if key.strip() in out:
            raise ConfigError(f"{what} {key.strip()} is given twice; give each field once")
        out[key.strip()] = parse_value(raw.strip(), f"{what} {key.strip()}")
    return out


MAX_VALUE_CHARS = 10_000  # a --set / --grid value; longer is a mistake (or a paste), and costly to parse


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else f"{text[:n]}... ({len(text):,} characters)"


def parse_value(raw: str, what: str = "value") -> Any:
    """A YAML scalar or flow list, refused fast when too long or when it uses anchors/aliases (a few nested
    aliases expand to billions of items)."""
    if len(raw) > MAX_VALUE_CHARS:
        raise ConfigError(f"{what}: a value of {len(raw):,} characters is too long (at most {MAX_VALUE_CHARS:,})")
    try:
        if any(isinstance(t, (yaml.AnchorToken, yaml.AliasToken)) for t in yaml.scan(raw)):
            raise ConfigError(f"{what}: YAML anchors and aliases (&, *) are not accepted in a value (got {_short(raw)!r})")
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and value.isascii():  # YAML 1.1 reads '1e-3' as a string (float() would also take '١')
        try:
            return float(value)
        except ValueError:
            return value
    return value


def ensure_fields(cls: type[StudyConfig], keys: list[str] | set[str], what: str) -> None:
    unknown = sorted(set(keys) - set(cls.model_fields))
    if unknown:
        raise ConfigError(
            f"{what}: unknown field(s) {', '.join(map(repr, unknown))} for study '{cls.study}'. "
            f"Known fields: {', '.join(sorted(cls.model_fields))}"
        )
