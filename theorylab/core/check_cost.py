"""What a claim run (`theorylab run` / `check`) will take, from whole runs timed on the reference machine.

core.cost counts the default configs of a study, one model per seed. A claim run trains much more than that: the
claims' sweeps, their controls, their second trainings. Those are decided inside each claim's code, so they cannot
be counted before it runs. What is known instead is how long the whole run took (or, where it was never run end to
end, what its measured per-step costs add up to) on the reference machine: `reference_checks.json`, one entry per
study and size, each saying how it was obtained. The guard refuses a run estimated over core.cost.MAX_SECONDS unless
the user passes --yes, and prints any estimate over a few minutes before the run starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from theorylab.core.cost import MAX_SECONDS, CostRefused, _duration
from theorylab.core.study import Study

REFERENCE_CHECKS = Path(__file__).with_name("reference_checks.json")
SAY_ABOVE_SECONDS = 5 * 60.0  # estimates shorter than this are not printed


@dataclass(frozen=True)
class ClaimRunCost:
    what: str  # "diffusion claims at full size, each claim's default seeds"
    seconds: float  # on the reference machine, scaled to the seeds asked for
    basis: str  # how the reference figure was obtained, and on what
    subset: bool = False  # only some claims: `seconds` is the whole study's, an upper bound
    overridden: bool = False  # --set changes the config: the figure is the default config's
    reused: bool = False  # the store already holds the default cells: a rerun reuses what it trained

    @property
    def binding(self) -> bool:
        """Whether the guard may refuse on it (a figure for another config, or for cells already trained, may not)."""
        return not (self.overridden or self.reused)

    def describe(self) -> str:
        bound = "at most " if self.subset else "about "
        notes = [self.basis]
        if self.subset:
            notes.append("the whole study's run; the claims asked for take part of it")
        if self.overridden:
            notes.append("for the default config: --set changes it")
        if self.reused:
            notes.append("this store already holds the default cells, so a rerun retrains less")
        return f"{self.what}: {bound}{_duration(self.seconds)} ({'; '.join(notes)})"

    def over_limits(self) -> list[str]:
        if self.binding and self.seconds > MAX_SECONDS:
            return [f"estimated {'at most ' if self.subset else ''}{_duration(self.seconds)} > {_duration(MAX_SECONDS)}"]
        return []

    def guard(self, yes: bool) -> None:
        why = self.over_limits()
        if why and not yes:
            fewer = "" if self.subset else ", run single claims with --claim"
            raise CostRefused(f"{self.describe()}. Refused: {why[0]}. Lower the sizes or the seeds{fewer}, or pass "
                              f"--yes (yes=True in Python) to run it anyway")


def reference_checks(path: Path | None = None) -> dict[str, Any]:
    path = path or REFERENCE_CHECKS
    return json.loads(path.read_text()) if path.is_file() else {}


def claim_run_cost(study: Study, size: str, seeds: int | None, claim_ids: Sequence[str] | None,
                   overrides: dict[str, Any], device: str, store=None, path: Path | None = None) -> ClaimRunCost | None:
    """The reference figure for this study and size, scaled linearly to `seeds` (None: each claim's defaults, as
    timed); None where there is none (another device than the CPU, or a size never timed)."""
    if not str(device).startswith("cpu"):
        return None
    ref = reference_checks(path)
    entry = ref.get("studies", {}).get(study.name, {}).get(size)
    if entry is None:
        return None
    timed_seeds = study.default_seeds.get(size, 5)
    n = timed_seeds if seeds is None else seeds
    basis = f"{entry['how']}, on {ref['machine']} at {ref['threads']} thread{'s' * (ref['threads'] > 1)}, {ref['measured']}"
    if seeds is not None:
        basis += f"; timed at the default seeds, scaled to {n}"
    every = {c.id for c in study.claims}
    subset = bool(claim_ids) and set(claim_ids) != every
    reused = False
    if store is not None:  # the first seeds every claim trains (claims may run fewer than the study's default)
        first = n if seeds is not None else min([c.seeds for c in study.claims if c.seeds] + [n])
        cfgs = study.seed_configs(size, first, **overrides)
        cells = store.get_cells([c.hash for c in cfgs])
        reused = len(cells) == len(cfgs) and all(c.status == "done" for c in cells.values())
    count = "each claim's default seeds" if seeds is None else f"{n} seed{'s' * (n > 1)}"
    return ClaimRunCost(f"{study.name} claims at {size} size, {count}",
                        float(entry["seconds"]) * n / timed_seeds, basis, subset, bool(overrides), reused)
