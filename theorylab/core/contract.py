"""The claim contract as types: typed bounds that evaluate and render themselves, declared hypotheses, and
references measured in the same run. A claim built from these (core.claims.Claim) is data the kit can check.

A criterion is a conjunction of bounds on named per-seed values of a Measurement. A bound's limit is an
expression over references (quantities the same run measures: the model's own error, chance level, the
untrained model) and constants declared once below. The same criterion is applied to the claim's arm and to
its control arm, so a control is always computed, never a literal.

    EPS_HAT = Reference("eps_hat", "the model's own error on fresh prompts of its training tasks (>= 3/n_test)", fn)
    Criterion(AtMost("unseen_error", O_EPS * EPS_HAT))   # renders "unseen_error <= 2 x eps_hat"
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

# ---- the contract's constants, declared once (fixed before any claim was run; every study uses these) ----
O_EPS = 2.0  # "O(eps)": at most this multiple of the model's own error (or loss) measured in the same run
CLOSE_GAP = 0.5  # "-> 1" (or "-> 0"): trained closes at least this share of the untrained model's gap
STAY_SMALL = 0.1  # "stays near init / small": at most this share of the quantity it is compared with
ALIGN_ANGLE = math.pi / 8  # "aligned": within pi/8 (the slides' scatter plots)
ALIGNED_SHARE = 0.9  # share of the rows (neurons, heads) that must be aligned for "the rows align"
FAR_FROM_CHANCE = 0.5  # "learned": error at most this share of chance level
CONTRACT_CONSTANTS = {"O_EPS": O_EPS, "CLOSE_GAP": CLOSE_GAP, "STAY_SMALL": STAY_SMALL, "ALIGN_ANGLE": ALIGN_ANGLE,
                      "ALIGNED_SHARE": ALIGNED_SHARE, "FAR_FROM_CHANCE": FAR_FROM_CHANCE}


class ContractError(ValueError):
    """A claim is declared against the contract (a study's bug, found by the kit or its conformance tests)."""


def per_seed(x: Any) -> torch.Tensor:
    """A per-seed value [E] as a float64 CPU tensor (from a tensor, a list of numbers or booleans)."""
    t = torch.as_tensor(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    return t.to(torch.float64).reshape(-1)


# ---- expressions over references ----
class Expr:
    """A limit built from references and constants; evaluates to [E] and renders its own text."""

    def value(self, refs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def references(self) -> tuple["Reference", ...]:
        return ()

    def __mul__(self, k: float) -> "Expr":
        return Scaled(float(k), self)

    __rmul__ = __mul__

    def __add__(self, other: "Expr | float") -> "Expr":
        return Sum(self, as_expr(other))

    __radd__ = __add__


def as_expr(x: "Expr | float | int") -> Expr:
    return x if isinstance(x, Expr) else Const(float(x))


@dataclass(frozen=True, eq=False)
class Const(Expr):
    number: float
    name: str = ""  # e.g. "M2^-1/2": rendered by name, with its value

    def value(self, refs):
        return torch.tensor(self.number, dtype=torch.float64)

    def text(self) -> str:
        return f"{self.name} ({self.number:.4g})" if self.name else f"{self.number:g}"


@dataclass(frozen=True, eq=False)
class Reference(Expr):
    """A quantity measured in the same run, once per run (the main arm's): compute(ctx) -> [E]."""
    name: str
    meaning: str
    compute: Callable[[Any], Any]

    def value(self, refs):
        return refs[self.name]

    def text(self) -> str:
        return self.name

    def references(self):
        return (self,)


@dataclass(frozen=True, eq=False)
class Scaled(Expr):
    k: float
    inner: Expr

    def value(self, refs):
        return self.k * self.inner.value(refs)

    def text(self) -> str:
        inner = self.inner.text()
        return f"{self.k:g} x ({inner})" if isinstance(self.inner, Sum) else f"{self.k:g} x {inner}"

    def references(self):
        return self.inner.references()


@dataclass(frozen=True, eq=False)
class Sum(Expr):
    a: Expr
    b: Expr

    def value(self, refs):
        return self.a.value(refs) + self.b.value(refs)

    def text(self) -> str:
        return f"{self.a.text()} + {self.b.text()}"

    def references(self):
        return self.a.references() + self.b.references()


# ---- bounds on a measured value ----
@dataclass(frozen=True)
class Bound:
    """value OP limit, per seed. A non-finite value never passes (a diverged model is no evidence)."""
    value_name: str
    limit: Expr | float = 0.0
    meaning: str = ""  # what the value is, for the rendered criterion (default: its name)

    op = "?"

    def compare(self, v: torch.Tensor, lim: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def test(self, values: Mapping[str, Any], refs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.value_name not in values:
            raise ContractError(f"criterion reads {self.value_name!r}, which the measurement does not give "
                                f"(it gives {sorted(values)})")
        v = per_seed(values[self.value_name])
        lim = as_expr(self.limit).value(refs).to(torch.float64)
        return self.compare(v, lim) & torch.isfinite(v)

    def text(self) -> str:
        return f"{self.meaning or self.value_name} {self.op} {as_expr(self.limit).text()}"

    def references(self) -> tuple[Reference, ...]:
        return as_expr(self.limit).references()


class AtMost(Bound):
    op = "<="

    def compare(self, v, lim):
        return v <= lim


class AtLeast(Bound):
    op = ">="

    def compare(self, v, lim):
        return v >= lim


class Below(Bound):
    op = "<"

    def compare(self, v, lim):
        return v < lim


class Above(Bound):
    op = ">"

    def compare(self, v, lim):
        return v > lim


@dataclass(frozen=True)
class Holds(Bound):
    """A per-seed condition the measurement computed (e.g. "non-increasing in S1"); `meaning` says which.
    Prefer a numeric bound: this one cannot render its own arithmetic."""

    def __post_init__(self):
        if not self.meaning:
            raise ContractError(f"Holds({self.value_name!r}) needs the condition's meaning")

    def compare(self, v, lim):
        return v != 0

    def text(self) -> str:
        return self.meaning


@dataclass(frozen=True)
class Criterion:
    """The conjunction of `bounds`; `key` names the value whose interval is reported (default: the first's)."""
    bounds: tuple[Bound, ...]
    key: str = ""

    def __init__(self, *bounds: Bound, key: str = ""):
        if not bounds:
            raise ContractError("a criterion needs at least one bound")
        object.__setattr__(self, "bounds", tuple(bounds))
        object.__setattr__(self, "key", key or bounds[0].value_name)

    def test(self, values: Mapping[str, Any], refs: Mapping[str, torch.Tensor]) -> list[bool]:
        ok = None
        for b in self.bounds:
            t = b.test(values, refs)
            ok = t if ok is None else ok & t
        return [bool(x) for x in ok]

    def references(self) -> tuple[Reference, ...]:
        seen: dict[str, Reference] = {}
        for b in self.bounds:
            for r in b.references():
                seen.setdefault(r.name, r)
        return tuple(seen.values())

    def text(self) -> str:
        body = " and ".join(b.text() for b in self.bounds)
        refs = self.references()
        if refs:
            body += "; " + "; ".join(f"{r.name}: {r.meaning}" for r in refs)
        return body


# ---- hypotheses and the control arm ----
@dataclass(frozen=True)
class Hypothesis:
    """A condition the theorem assumes. check(ctx) -> None when it holds at this config/run, or the reason it
    does not (then the claim is "not applicable: <text>: <reason>" and asserts nothing)."""
    text: str
    check: Callable[[Any], str | None]


@dataclass(frozen=True)
class ControlArm:
    """Where the claim should fail: measure(ctx, arm) on this arm, graded by the same criterion."""
    arm: str  # e.g. "untrained", "S1<1", "shuffled"
    description: str


MAIN = "main"


@dataclass
class Measurement:
    """What a claim measured on one arm: named per-seed values [E] (the criterion reads some of them), plus
    numbers and figure data for the report, and a one-line summary of what else was seen."""
    values: dict[str, Any]
    summary: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, dict] = field(default_factory=dict)

    def per_seed_lists(self) -> dict[str, list[float]]:
        return {k: [round(float(x), 6) for x in per_seed(v)] for k, v in self.values.items()}


def short(xs: Sequence[float] | torch.Tensor, digits: int = 4) -> list[float]:
    """Per-seed numbers rounded for a report line."""
    return [round(float(x), digits) for x in per_seed(xs)]
