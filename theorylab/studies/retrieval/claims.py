"""The abstract's result (arXiv 2308.13760, the paper's main table) as figure claims on the kit (core.claims,
core.contract), graded per benchmark draw.

The paper's numbers were not available; what is reproduced is the ordering: PCAS retrieves the gold passage better
than the baselines, and identifies the pertinent context better than picking the context most similar to the query.
The baselines (model.py): query only, query + all contexts, and the stronger ones of issue 23: max fusion
max_j sim(q + c_j, p), sum fusion sum_j sim(q + c_j, p), and pick-a-context-then-retrieve. PCAS with lam = 0 (the
default) IS max fusion, score for score: the passage claim then compares max fusion with the other baselines, and
says so; max fusion is a baseline only where lam > 0. The tests (fixed before the quick run was read):
- passages, per draw and against each baseline: PCAS recall@1 >= the baseline's and PCAS MRR >= the baseline's, at
  least one of the two strictly (a draw where a baseline ties PCAS at the ceiling shows nothing and does not pass);
- context, per draw: PCAS accuracy > the query-similarity pick's, and > chance (1 / contexts per user).

Two wordings of the same draws (issue 23): fig_pcas_passage / fig_pcas_context grade the configured context_style
(verbatim by default: "I live in Denver."), the *_indirect claims always grade the indirect one ("I live in the Mile
High City.": no word of any value in a context), with the same criteria. context_style is a swept field, so both
read the same users, values and queries; the indirect claims ask whether the ordering survives when the context
must be understood, not string-matched against the passage.
"""
from __future__ import annotations

import torch

from theorylab.core.claims import Claim, ClaimContext
from functools import partial

from theorylab.core.contract import Above, AtLeast, Criterion, Measurement, Reference, short
from theorylab.core.measures import r4
from theorylab.studies.retrieval.model import BASELINES


INDIRECT = "indirect"


def _cells(ctx: ClaimContext, style: str | None = None):
    """(configs, cells) of the configured context_style (style None) or of the given one, same draws."""
    def compute():
        cfgs = ctx.configs() if style is None else ctx.sweep("context_style", [style])[style]
        _, cells = ctx.trained(cfgs)
        return cfgs, cells
    return ctx.memo(f"retrieval:cells:{style}", compute)


def _col(cells, name: str) -> list[float]:
    return [float(c.metrics[name]) for c in cells]


def _table(cfgs, cells) -> dict:
    c0 = cfgs[0]
    names = [f"recall@{k}" for k in c0.ks] + [f"mrr@{c0.mrr_at}"]
    methods = (*BASELINES, "pcas")
    return {"metrics": names, "methods": {m: {n: _col(cells, f"{m}_{n}") for n in names} for m in methods},
            "context": {m: _col(cells, f"{m}_context_acc") for m in ("query_sim", "pcas", "chance")},
            "curves": {m: [c.curves[f"recall_{m}"] for c in cells] for m in methods},
            "k": cells[0].curves["k"], "encoder": c0.encoder, "context_style": c0.context_style}


def _compared(cells) -> tuple[str, ...]:
    """The baselines PCAS is compared with: all but max fusion where PCAS is max fusion (lam = 0)."""
    same = all(c.metrics.get("pcas_equals_max_fusion", 0.0) == 1.0 for c in cells)
    return tuple(b for b in BASELINES if not (same and b == "max_fusion"))


def _figure(style: str | None) -> str:
    return "retrieval_table" if style is None else f"retrieval_table_{style}"  # one file per style (report.py)


def measure_passage(ctx: ClaimContext, arm: str, style: str | None = None) -> Measurement:
    cfgs, cells = _cells(ctx, style)
    mrr = f"mrr@{cfgs[0].mrr_at}"
    versus = _compared(cells)
    r1 = {m: torch.tensor(_col(cells, f"{m}_recall@1")) for m in (*BASELINES, "pcas")}
    mr = {m: torch.tensor(_col(cells, f"{m}_{mrr}")) for m in (*BASELINES, "pcas")}
    lows = torch.stack([torch.minimum(r1["pcas"] - r1[b], mr["pcas"] - mr[b]) for b in versus])  # [B, E]
    highs = torch.stack([torch.maximum(r1["pcas"] - r1[b], mr["pcas"] - mr[b]) for b in versus])
    best = torch.stack([r1[b] for b in versus]).max(0).values
    note = ("PCAS (lam = 0) is max fusion score for score: compared with the other baselines"
            if "max_fusion" not in versus else f"lam = {cfgs[0].lam}")
    return Measurement(
        {"r1_margin": r1["pcas"] - best, "worst_low": lows.min(0).values, "worst_high": highs.min(0).values},
        "; ".join(f"{m}: R@1 {r4(r1[m].mean())}, {mrr} {r4(mr[m].mean())}" for m in (*BASELINES, "pcas"))
        + f" (means over {len(cells)} draws; encoder {cfgs[0].encoder}; contexts {cfgs[0].context_style}); {note}",
        {"compared_with": list(versus), "recall@1": {m: short(v) for m, v in r1.items()},
         mrr: {m: short(v) for m, v in mr.items()}, "context_style": cfgs[0].context_style},
        {_figure(style): _table(cfgs, cells)})


CHANCE = Reference("chance", "1 / contexts per user (a uniform pick)",
                   lambda ctx: _col(_cells(ctx)[1], "chance_context_acc"))


def measure_context(ctx: ClaimContext, arm: str, style: str | None = None) -> Measurement:
    cfgs, cells = _cells(ctx, style)
    pc, qs = torch.tensor(_col(cells, "pcas_context_acc")), torch.tensor(_col(cells, "query_sim_context_acc"))
    return Measurement({"lead": pc - qs, "pcas_accuracy": pc},
                       f"PCAS {short(pc)}, query-similarity pick {short(qs)} (contexts {cfgs[0].context_style})",
                       {"pcas": short(pc), "query_sim": short(qs), "context_style": cfgs[0].context_style},
                       {_figure(style): _table(cfgs, cells)})


PASSAGE_CRITERION = Criterion(
    AtLeast("worst_low", 0.0, "min over the baselines of min(PCAS - baseline recall@1, PCAS - baseline MRR)"),
    Above("worst_high", 0.0, "min over the baselines of max(the same two differences)"), key="r1_margin")
CONTEXT_CRITERION = Criterion(Above("lead", 0.0, "PCAS's context accuracy minus argmax_j sim(q, c_j)'s"),
                              Above("pcas_accuracy", CHANCE, "PCAS's context accuracy"))
PASSAGE = ("PCAS retrieves the relevant passage better than every baseline: query only, query + all contexts, sum "
           "fusion, pick-a-context-then-retrieve (and max fusion where lam > 0; at lam = 0 PCAS is max fusion)")
CONTEXT = "PCAS identifies the pertinent context among all of the user's contexts better than a similarity pick"
REWORDED = (", on the same draws with every context naming its value only indirectly (an alias or a description, "
            "no word of any value: \"I live in the Mile High City.\")")

CLAIMS = [
    Claim("fig_pcas_passage", "Abstract; main results table", "figure", PASSAGE + " (contexts as configured: "
          "context_style, verbatim by default).", measure=measure_passage, criterion=PASSAGE_CRITERION),
    Claim("fig_pcas_context", "Abstract; main results table", "figure", CONTEXT + " (contexts as configured).",
          measure=measure_context, criterion=CONTEXT_CRITERION),
    Claim("fig_pcas_passage_indirect", "Abstract; main results table", "figure", PASSAGE + REWORDED + ".",
          measure=partial(measure_passage, style=INDIRECT), criterion=PASSAGE_CRITERION),
    Claim("fig_pcas_context_indirect", "Abstract; main results table", "figure", CONTEXT + REWORDED + ".",
          measure=partial(measure_context, style=INDIRECT), criterion=CONTEXT_CRITERION),
]
