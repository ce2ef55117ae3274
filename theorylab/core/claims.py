"""Claims: a theorem's prediction as a runnable check with measured numbers and a verdict."""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from theorylab.core.config import StudyConfig
from theorylab.core.progress import QUIET, Bars
from theorylab.core.store import Store
from theorylab.core.study import Study
from theorylab.core.sweep import stack_params, train_cells


@dataclass
class Outcome:
    passed: bool
    summary: str  # one line with the measured numbers and the margin
    numbers: dict[str, Any]
    figures: dict[str, dict] = field(default_factory=dict)  # plot name -> JSON-able data for study.plots


@dataclass(frozen=True)
class Claim:
    id: str
    theorem: str  # e.g. "Thm 1", "Prop. 2"
    statement: str
    check: Callable[["ClaimContext"], Outcome]


@dataclass
class ClaimContext:
    """What a claim gets: the study, size, seeds, device and store, and a shared cache so claims of
    one run reuse trained models and evaluations."""
    study: Study
    size: str = "quick"
    seeds: int = 5
    device: torch.device = torch.device("cpu")
    store: Store | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    bars: Bars = QUIET
    cache: dict[str, Any] = field(default_factory=dict)

    def configs(self, **changes: Any) -> list[StudyConfig]:
        return self.study.seed_configs(self.size, self.seeds, **{**self.overrides, **changes})

    def trained(self, cfgs: list[StudyConfig]) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """Stacked weights [E, ...] and the per-model cell records (trained now if not in the store)."""
        key = "trained:" + ",".join(c.hash for c in cfgs)
        if key not in self.cache:
            if self.store is None:  # no store given: a private throw-away one
                self.store = Store(":memory:")
            store = self.store
            cells = train_cells(self.study, cfgs, store, self.device, self.bars)
            self.cache[key] = (stack_params(cells, cfgs, self.device), [cells[c.hash] for c in cfgs])
        return self.cache[key]

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


@dataclass
class ClaimResult:
    claim: Claim
    outcome: Outcome | None
    seconds: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.outcome is not None and self.outcome.passed

    @property
    def verdict(self) -> str:
        if self.outcome is None:
            return "ERROR"
        return "holds" if self.outcome.passed else "FAILS"

    @property
    def summary(self) -> str:
        return self.outcome.summary if self.outcome else (self.error or "").strip().splitlines()[-1]


def run_claims(ctx: ClaimContext, only: list[str] | None = None) -> list[ClaimResult]:
    """Runs the study's claims; a claim that raises is reported as an error, never skipped."""
    results = []
    for claim in ctx.study.claims:
        if only and claim.id not in only:
            continue
        t0 = time.perf_counter()
        try:
            res = ClaimResult(claim, claim.check(ctx), 0.0)
        except Exception:  # reported, not swallowed: the verdict says ERROR with the traceback's last line
            res = ClaimResult(claim, None, 0.0, traceback.format_exc())
        res.seconds = time.perf_counter() - t0
        if ctx.store is not None:
            o = res.outcome
            ctx.store.put_claim(ctx.study.name, claim.id, ctx.size, ctx.seeds, res.passed, res.verdict,
                                res.summary, o.numbers if o else {"error": res.error},
                                o.figures if o else {}, res.seconds)
        results.append(res)
    return results
