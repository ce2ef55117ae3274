"""Claims: a theorem's prediction (or a paper figure, or a training mechanism) as a runnable check.

A claim's check returns an Outcome with its test evaluated on every seed. The verdict comes from those
per-seed results by one fixed rule (core.verdict): `holds | fails | inconclusive` for `theorem` and
`mechanism` claims, `agrees | differs | inconclusive` for `figure` claims, `ERROR` when the check raised.

- `theorem`: what the theorem states, in its direction only, where its hypothesis holds. Constants are
  multiples (fixed a priori, printed in `criterion`) of quantities the same run measured. A theorem claim
  carries a `control`: the same test where the hypothesis fails, or before training, which should fail.
- `mechanism`: what training does (attention concentration, alignment, low rank, sparsity).
- `figure`: a paper figure or table reproduced in sign and ordering; "differs" says the experiment
  differs from the figure, not that a theorem fails.
"""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from theorylab.core.config import ConfigError, StudyConfig
from theorylab.core.contract import (MAIN, ContractError, ControlArm, Criterion, Hypothesis, Measurement, per_seed,
                                     short)
from theorylab.core.progress import QUIET, Bars
from theorylab.core.store import Store
from theorylab.core.study import Study
from theorylab.core.sweep import stack_params, train_cells
from theorylab.core.verdict import (ERROR, INCONCLUSIVE, KINDS, NEGATIVE, PASS_SHARE, POSITIVE, describe_interval,
                                    interval, seeds_to_settle, verdict_word)

Kind = Literal["theorem", "mechanism", "figure"]


class NotApplicable(Exception):
    """Raised by a check when the theorem's hypothesis does not hold at this config: the theorem is silent
    there, so the claim asserts nothing (verdict `inconclusive`, with the reason)."""


@dataclass
class Control:
    """The same test where it should fail (hypothesis false, or the untrained model).
    per_seed[j]: True when the control *passes* the test on seed j (which it should not)."""
    description: str
    per_seed: Sequence[bool]
    summary: str = ""
    values: Sequence[float] = ()  # the key number on the control arm, per seed (kit-built claims)


@dataclass
class Outcome:
    per_seed: Sequence[bool]  # the test on seed j (seed base + j); diverged seeds are failed by the context
    key: str  # what the key number is, e.g. "unseen in-domain error"
    values: Sequence[float]  # the key number on each seed (its interval is reported)
    criterion: str  # the test with its a-priori constants, e.g. "error <= 2 x eps_hat (multiplier fixed a priori)"
    summary: str  # measured numbers, one line
    numbers: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, dict] = field(default_factory=dict)  # plot name -> JSON-able data for study.plots
    control: Control | None = None


@dataclass(frozen=True)
class Claim:
    """A theorem's prediction as data. A kit-built claim declares:
    - measure(ctx, arm) -> Measurement: named per-seed values on an arm (MAIN, or the control's arm);
    - criterion: typed bounds on those values (core.contract), which render the criterion's text;
    - hypotheses: what the theorem assumes (a failing one makes the claim "not applicable: ...");
    - control: the arm where the same measurement and criterion should fail.
    `check` is the retired hand-built form (it returns an Outcome itself); the conformance tests refuse it."""
    id: str
    theorem: str  # e.g. "Thm 1", "Prop. 2", "Fig. 24"
    kind: Kind
    statement: str
    check: Callable[["ClaimContext"], Outcome] | None = None
    seeds: int | None = None  # default seed count for this claim (None: the study's default)
    measure: Callable[["ClaimContext", str], Measurement] | None = None
    criterion: Criterion | None = None
    hypotheses: tuple[Hypothesis, ...] = ()
    control: ControlArm | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.check is not None:
            return
        if self.measure is None or self.criterion is None:
            raise ContractError(f"claim {self.id}: a claim declares measure and criterion")
        if self.kind == "theorem" and (not self.hypotheses or self.control is None):
            raise ContractError(f"claim {self.id}: a theorem claim declares the hypotheses it needs and a control arm")
        if self.control is not None and self.control.arm == MAIN:
            raise ContractError(f"claim {self.id}: the control arm must differ from {MAIN!r}")

    @property
    def declared(self) -> bool:
        """Built from the kit's types (not a hand-built Outcome)."""
        return self.check is None

    def evaluate(self, ctx: "ClaimContext") -> Outcome:
        if self.check is not None:
            return self.check(ctx)
        for h in self.hypotheses:
            reason = h.check(ctx)
            if reason:
                raise NotApplicable(f"{h.text}: {reason}")
        crit = self.criterion
        refs = {r.name: ctx.reference(r) for r in crit.references()}
        m = self.measure(ctx, MAIN)
        key = crit.key
        numbers = {**m.numbers, "per_seed": m.per_seed_lists(),
                   "references": {k: short(v) for k, v in refs.items()}}
        summary = m.summary
        if refs:
            summary = "; ".join([*(f"{k} {short(v)}" for k, v in refs.items()), *([summary] if summary else [])])
        control = None
        if self.control is not None:
            cm = self.measure(ctx, self.control.arm)
            cvals = per_seed(cm.values[key]).tolist()
            control = Control(self.control.description, crit.test(cm.values, refs),
                              f"{key} {short(cvals)}" + (f"; {cm.summary}" if cm.summary else ""), cvals)
            numbers["control"] = {"arm": self.control.arm, "per_seed": cm.per_seed_lists(), **cm.numbers}
        meaning = next((b.meaning for b in crit.bounds if b.value_name == key and b.meaning), key)
        return Outcome(crit.test(m.values, refs), meaning, per_seed(m.values[key]).tolist(), crit.text(), summary,
                       numbers, m.figures, control)


@dataclass
class ClaimContext:
    """What a claim gets: the study, size, seeds, device and store, and a cache shared by the claims of
    one run so they reuse trained models and evaluations."""
    study: Study
    size: str = "quick"
    seeds: int = 5
    device: torch.device = torch.device("cpu")
    store: Store | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    bars: Bars = QUIET
    cache: dict[str, Any] = field(default_factory=dict)
    diverged: set[int] = field(default_factory=set)  # seed values with a diverged model in any trained group

    def configs(self, **changes: Any) -> list[StudyConfig]:
        return self.study.seed_configs(self.size, self.seeds, **{**self.overrides, **changes})

    @property
    def seed_values(self) -> list[int]:
        return [c.seed for c in self.configs()]

    def trained(self, cfgs: list[StudyConfig]) -> tuple[dict[str, torch.Tensor], list]:
        """Stacked weights [E, ...] and the per-model cell records (trained now if not in the store)."""
        key = "trained:" + ",".join(c.hash for c in cfgs)
        if key not in self.cache:
            if self.store is None:  # no store given: a private throw-away one
                self.store = Store(":memory:")
            cells = train_cells(self.study, cfgs, self.store, self.device, self.bars)
            self.cache[key] = (stack_params(cells, cfgs, self.device), [cells[c.hash] for c in cfgs])
        params, cells = self.cache[key]
        self.diverged |= {c.seed for c, cell in zip(cfgs, cells) if cell.status != "done"}
        return params, cells

    def reference(self, ref) -> torch.Tensor:
        """A reference quantity (core.contract.Reference) measured once per run: [E] float64."""
        return self.memo(f"ref:{ref.name}", lambda: per_seed(ref.compute(self)))

    def sweep(self, field_name: str, values: Sequence[Any], **changes: Any) -> dict[Any, list[StudyConfig]]:
        """{value: the seed configs with field_name = value}. The field must be one the study declares swept
        (StudyConfig.swept_fields), so the cells of one seed share their world (teacher, patterns, init)."""
        swept = self.study.config_cls.swept_fields
        if field_name not in swept:
            raise ContractError(f"study {self.study.name}: a claim sweeps {field_name!r}, which is not in its "
                                f"swept_fields {sorted(swept)}: cells would not share their world")
        return {v: self.configs(**{**changes, field_name: v}) for v in values}

    def trained_sweep(self, field_name: str, values: Sequence[Any], **changes: Any) -> dict[Any, tuple]:
        """{value: (params [E, ...], cells)} over a swept field; every cell trained in one call (cells sharing
        shapes train as one ensemble)."""
        by_value = self.sweep(field_name, values, **changes)
        every = [c for cfgs in by_value.values() for c in cfgs]
        unique = list({c.hash: c for c in every}.values())
        self.trained(unique)  # one call: the store groups what shares shapes
        return {v: self.trained(cfgs) for v, cfgs in by_value.items()}

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute() once per key and per set of configs (claims of one run may use different seed counts)."""
        key = f"{key}|{self.seeds}|{sorted(self.overrides.items(), key=str)}"
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


@dataclass
class ClaimResult:
    claim: Claim
    outcome: Outcome | None
    seconds: float
    seeds: list[int] = field(default_factory=list)
    error: str | None = None
    diverged: list[int] = field(default_factory=list)
    not_applicable: str | None = None  # why the theorem says nothing at this config

    @property
    def passed_seeds(self) -> list[bool]:
        if self.outcome is None:
            return []
        return [bool(ok) and s not in self.diverged for ok, s in zip(self.outcome.per_seed, self.seeds)]

    @property
    def control_discriminates(self) -> bool | None:
        c = self.outcome.control if self.outcome else None
        if c is None or not len(c.per_seed):
            return None
        n = len(c.per_seed)
        return (n - sum(map(bool, c.per_seed))) / n >= PASS_SHARE  # the control fails on at least PASS_SHARE

    @property
    def verdict(self) -> str:
        if self.not_applicable is not None:
            return INCONCLUSIVE
        if self.outcome is None:
            return ERROR
        word = verdict_word(self.claim.kind, self.passed_seeds)
        if word in POSITIVE and self.control_discriminates is False:
            return INCONCLUSIVE  # the control passes the same test: the check shows nothing
        return word

    @property
    def passed(self) -> bool:
        return self.verdict in POSITIVE

    @property
    def interval(self) -> dict:
        return interval(self.outcome.values) if self.outcome else interval([])

    @property
    def settle(self) -> str:
        """What an inconclusive verdict would need."""
        if self.verdict != INCONCLUSIVE or self.outcome is None:
            return ""
        if self.control_discriminates is False and verdict_word(self.claim.kind, self.passed_seeds) in POSITIVE:
            return "the control passes the same test, so the check does not discriminate; more seeds will not help"
        ok = self.passed_seeds
        need = seeds_to_settle(sum(ok), len(ok))
        if need is None:
            return f"the test holds on {sum(ok)}/{len(ok)} seeds: about half, which more seeds will not settle"
        return f"seeds disagree ({sum(ok)}/{len(ok)} pass); about {need} seeds would settle it at this pass rate"

    @property
    def summary(self) -> str:
        if self.not_applicable is not None:
            return f"not applicable: {self.not_applicable}"
        if self.outcome is None:
            return (self.error or "").strip().splitlines()[-1]
        o = self.outcome
        ok = self.passed_seeds
        text = (f"{sum(ok)}/{len(ok)} seeds pass [{o.criterion}]; {o.key} {describe_interval(self.interval)}; "
                f"{o.summary}")
        if self.diverged:
            text += f"; diverged seeds (counted as failing): {self.diverged}"
        if o.control is not None:
            c = o.control
            text += f"; control ({c.description}) passes on {sum(map(bool, c.per_seed))}/{len(c.per_seed)} seeds"
            text += f" ({c.summary})" if c.summary else ""
        if self.settle:
            text += f"; {self.settle}"
        return text

    def row(self, study: str) -> dict:
        """The JSON object `theorylab check --json` prints for this claim."""
        o = self.outcome
        return {"study": study, "claim": self.claim.id, "theorem": self.claim.theorem, "kind": self.claim.kind,
                "statement": self.claim.statement, "verdict": self.verdict, "seeds": len(self.seeds),
                "seed_values": self.seeds, "seeds_passed": sum(self.passed_seeds),
                "criterion": o.criterion if o else None, "key": o.key if o else None, "interval": self.interval,
                "control": None if o is None or o.control is None else {
                    "description": o.control.description, "passes": sum(map(bool, o.control.per_seed)),
                    "seeds": len(o.control.per_seed), "summary": o.control.summary,
                    "interval": interval(o.control.values) if len(o.control.values) else None},
                "diverged_seeds": self.diverged, "settle": self.settle or None, "not_applicable": self.not_applicable, "summary": self.summary,
                "seconds": round(self.seconds, 3),
                "numbers": o.numbers if o else {"error": self.error}, "figures": o.figures if o else {}}


def select_claims(study: Study, only: Sequence[str] | None) -> list[Claim]:
    """The study's claims, or those named; an unknown id is an error that names the known ones."""
    if not only:
        return list(study.claims)
    known = {c.id for c in study.claims}
    unknown = [c for c in only if c not in known]
    if unknown:
        raise ConfigError(f"--claim: unknown claim(s) {', '.join(map(repr, unknown))} for study '{study.name}'. "
                          f"Known: {', '.join(c.id for c in study.claims)}")
    return [c for c in study.claims if c.id in set(only)]


def run_claims(ctx: ClaimContext, only: Sequence[str] | None = None, seeds_given: bool = True) -> list[ClaimResult]:
    """Runs the study's claims; a claim that raises is reported as ERROR, never skipped.
    seeds_given=False: each claim runs at its own default seed count (Claim.seeds) when it has one."""
    results = []
    for claim in select_claims(ctx.study, only):
        c = ctx if seeds_given or claim.seeds is None else replace(ctx, seeds=claim.seeds)
        t0 = time.perf_counter()
        seeds = c.seed_values
        try:
            outcome = claim.evaluate(c)
            if len(outcome.per_seed) != len(seeds) or len(outcome.values) != len(seeds):
                raise RuntimeError(f"claim {claim.id} returned {len(outcome.per_seed)} per-seed results for "
                                   f"{len(seeds)} seeds")
            res = ClaimResult(claim, outcome, 0.0, seeds, diverged=sorted(c.diverged & set(seeds)))
        except NotApplicable as why:
            res = ClaimResult(claim, None, 0.0, seeds, not_applicable=str(why))
        except Exception:  # reported, not swallowed: the verdict says ERROR with the traceback's last line
            res = ClaimResult(claim, None, 0.0, seeds, traceback.format_exc())
        res.seconds = time.perf_counter() - t0
        if c is not ctx:
            ctx.diverged |= c.diverged
        if ctx.store is not None:
            row = res.row(ctx.study.name)
            # the --set overrides are stored with the contract so the exact command can be shown again (atlas)
            contract = {**{k: v for k, v in row.items() if k not in ("numbers", "figures")},
                        "overrides": json.loads(json.dumps(c.overrides, default=str))}
            ctx.store.put_claim(ctx.study.name, claim.id, ctx.size, len(seeds), res.passed, res.verdict,
                                res.summary, {**row["numbers"], "_contract": contract}, row["figures"], res.seconds)
        results.append(res)
    return results


def exit_code(verdicts: Sequence[str]) -> int:
    """`theorylab check`: 0 all hold or agree; 1 some fail or differ; 3 none fails, some inconclusive or ERROR
    (2 is the CLI's input error)."""
    if any(v in NEGATIVE for v in verdicts):
        return 1
    if any(v not in POSITIVE for v in verdicts):
        return 3
    return 0
