"""No SGD: `train_group` indexes each benchmark draw (encodes passages, contexts, queries and the query + context
texts) and scores the retrievers. The stored "weights" of a draw are its embeddings and labels; its metrics are
passage recall@k and MRR@k per method and the accuracy of identifying the pertinent context.

Why `train_group=` and not the protocol (core.protocol.Training): nothing here minimises a loss. The retrievers
are a frozen encoder and fixed score rules, so there are no trainable weights, no learning rate and no steps, and
the curves are recall@k over the cut-off k, not over training steps; a Training would record a meaningless
`loss` curve and `train_loss` metric.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from theorylab.core.ensemble import shared_value
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.studies.retrieval.config import RetrievalConfig
from theorylab.studies.retrieval.data import Benchmark, make_benchmark
from theorylab.studies.retrieval.encoders import encode
from theorylab.studies.retrieval.model import METHODS, context_picks, gold_rank, mrr_at, passage_scores, recall_at


def join(context: str, query: str) -> str:
    """q + c: the context, then the query (one text)."""
    return f"{context} {query}"


def embed(benches: Sequence[Benchmark], encoder: str, d_hash: int, device) -> dict[str, torch.Tensor]:
    """All texts of all draws encoded at once: P, Q, QC, QA, Cx ([E, ...]) and the labels."""
    texts: list[str] = []

    def add(items: list[str]) -> slice:
        texts.extend(items)
        return slice(len(texts) - len(items), len(texts))

    parts = []
    for b in benches:
        ctx = [b.contexts[u] for u in b.query_user]  # [Nq][C]
        parts.append({"P": add(b.passages), "Q": add(b.queries),
                      "QC": add([join(c, q) for q, cs in zip(b.queries, ctx) for c in cs]),
                      "QA": add([join(" ".join(cs), q) for q, cs in zip(b.queries, ctx)]),
                      "Cx": add([c for cs in ctx for c in cs])})
    emb = encode(texts, encoder, d_hash).to(device)
    Nq, C = len(benches[0].queries), len(benches[0].contexts[0])
    shape = {"P": (-1,), "Q": (Nq,), "QC": (Nq, C), "QA": (Nq,), "Cx": (Nq, C)}
    out = {k: torch.stack([emb[p[k]].reshape(*shape[k], emb.shape[-1]) for p in parts]) for k in shape}
    out["gold_passage"] = torch.tensor([b.gold_passage for b in benches], device=device)  # [E, Nq]
    out["gold_context"] = torch.tensor([b.gold_context for b in benches], device=device)  # [E, Nq]
    return out


def evaluate(cfgs: Sequence[RetrievalConfig], emb: dict[str, torch.Tensor]) -> tuple[dict, list[dict]]:
    """Metrics {name: [E]} (recall@k for k in ks and 1) and per-draw recall@k curves for k = 1 .. mrr_at."""
    ks, m_at, lam = shared_value(cfgs, "ks"), shared_value(cfgs, "mrr_at"), shared_value(cfgs, "lam")
    ks = sorted({1, *ks})  # recall@1 always (the claims read it)
    scores = passage_scores(emb, lam)
    metrics, curves = {}, [{"k": list(range(1, m_at + 1))} for _ in cfgs]
    for name in METHODS:
        rank = gold_rank(scores[name], emb["gold_passage"])
        for k in ks:
            metrics[f"{name}_recall@{k}"] = recall_at(rank, k)
        metrics[f"{name}_mrr@{m_at}"] = mrr_at(rank, m_at)
        rk = torch.stack([recall_at(rank, k) for k in range(1, m_at + 1)], 1).cpu()  # [E, m_at]
        for e, c in enumerate(curves):
            c[f"recall_{name}"] = rk[e].tolist()
    # PCAS at lam = 0 is max fusion itself: recorded, so the claims can say which of the two they compare
    metrics["pcas_equals_max_fusion"] = (scores["pcas"] == scores["max_fusion"]).all(-1).all(-1).float()
    for name, pick in context_picks(emb, scores["joint"]).items():
        metrics[f"{name}_context_acc"] = (pick == emb["gold_context"]).float().mean(-1)
    E = len(cfgs)
    metrics["chance_context_acc"] = torch.full((E,), 1.0 / emb["Cx"].shape[2])
    metrics["chance_recall@1"] = torch.full((E,), 1.0 / emb["P"].shape[1])
    return metrics, curves


def train_group(cfgs: Sequence[RetrievalConfig], device: torch.device, bars: Bars) -> GroupResult:
    """Indexes and scores each draw. Its own train_group, not the protocol: nothing here minimises a loss."""
    t0 = time.perf_counter()
    with bars.task(f"retrieval: index {len(cfgs)} benchmark draw(s)", 1, models=len(cfgs)) as advance:
        benches = [make_benchmark(c) for c in cfgs]
        emb = embed(benches, shared_value(cfgs, "encoder"), shared_value(cfgs, "d_hash"), device)
        metrics, curves = evaluate(cfgs, emb)
        advance(1)
    return group_result(emb, metrics, curves, torch.full((len(cfgs),), -1, dtype=torch.long), time.perf_counter() - t0)
