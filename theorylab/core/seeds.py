"""How many seeds a claim needs: the smallest count at which three disjoint seed sets give the same verdict.

For each candidate count n, the seeds base..base+3n-1 are trained once (one ensemble) and split into three
disjoint sets of n; each set's claims are graded on their own. A claim's default seed count (Claim.seeds)
is the smallest n whose three verdicts agree; where none agrees, the largest candidate is reported as unsettled.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.store import Store
from theorylab.core.study import Study


def seed_agreement(study: Study, ctx: ClaimContext, candidates: Sequence[int] = (3, 5, 8),
                   only: Sequence[str] | None = None) -> dict[str, dict]:
    """{claim id: {"verdicts": {n: [v1, v2, v3]}, "seeds": smallest agreeing n or None}}."""
    base = ctx.overrides.get("seed", study.config(ctx.size, **ctx.overrides).seed)
    store = ctx.store or Store(":memory:")
    out: dict[str, dict] = {}
    for n in sorted(candidates):
        whole = replace(ctx, seeds=3 * n, store=store, cache={}, diverged=set())
        whole.trained(whole.configs())  # all 3n seeds as one ensemble; the sets below read them from the store
        for k in range(3):
            part = replace(ctx, seeds=n, store=store, cache={}, diverged=set(),
                           overrides={**ctx.overrides, "seed": base + k * n})
            for r in run_claims(part, only):
                out.setdefault(r.claim.id, {"verdicts": {}, "seeds": None})["verdicts"].setdefault(n, []).append(r.verdict)
    for rec in out.values():
        agree = [n for n, v in sorted(rec["verdicts"].items()) if len(set(v)) == 1 and v[0] != "ERROR"]
        rec["seeds"] = agree[0] if agree else None
    return out
