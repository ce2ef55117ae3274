"""The retrievers: dense scores sim(u, v) = u . v of unit vectors, ensemble-first (E benchmark draws).

Embeddings per draw: passages P [E, Np, D]; queries Q [E, Nq, D]; the query's user's contexts Cx [E, Nq, C, D];
q + c_j (the context text, then the query) QC [E, Nq, C, D]; q + all contexts concatenated QA [E, Nq, D].

- B0 query only:          s(p) = sim(q, p)
- B1 query + all context: s(p) = sim(q + c_1 + ... + c_C, p)
- PCAS (joint):           s(p, c_j) = sim(q + c_j, p) + lam sim(q, c_j); passage score max_j, context argmax_(p, j)
- B2 max fusion:          s(p) = max_j sim(q + c_j, p)  (PCAS with lam = 0 is exactly this)
- B3 sum fusion:          s(p) = sum_j sim(q + c_j, p)
- B4 pick, then retrieve: j* = argmax_j sim(q, c_j), s(p) = sim(q + c_j*, p)
- context baseline:       argmax_j sim(q, c_j)  (pick a context by similarity to the query alone)
"""
from __future__ import annotations

import torch

METHODS = ("query_only", "concat", "max_fusion", "sum_fusion", "pick_then_retrieve", "pcas")
BASELINES = METHODS[:-1]


def passage_scores(emb: dict[str, torch.Tensor], lam: float) -> dict[str, torch.Tensor]:
    """{method: [E, Nq, Np]} and the PCAS joint table [E, Nq, C, Np]."""
    P = emb["P"].transpose(-1, -2)  # [E, D, Np]
    fused = emb["QC"] @ P[:, None]  # [E, Nq, C, Np]: sim(q + c_j, p)
    q_sim = (emb["Cx"] * emb["Q"][:, :, None]).sum(-1)  # [E, Nq, C]: sim(q, c_j)
    joint = fused + lam * q_sim[..., None]
    picked = torch.gather(fused, 2, q_sim.argmax(-1)[:, :, None, None].expand(-1, -1, 1, fused.shape[-1]))[:, :, 0]
    return {"query_only": emb["Q"] @ P, "concat": emb["QA"] @ P, "max_fusion": fused.max(2).values,
            "sum_fusion": fused.sum(2), "pick_then_retrieve": picked, "pcas": joint.max(2).values, "joint": joint}


def context_picks(emb: dict[str, torch.Tensor], joint: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"pcas": argmax_j max_p joint, "query_sim": argmax_j sim(q, c_j)}: [E, Nq] each."""
    return {"pcas": joint.max(-1).values.argmax(-1), "query_sim": (emb["Cx"] * emb["Q"][:, :, None]).sum(-1).argmax(-1)}


def gold_rank(scores: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """0-based rank of the gold passage [E, Nq] (ties count against it: a passage scoring equal ranks ahead)."""
    g = torch.gather(scores, -1, gold[..., None])  # [E, Nq, 1]
    return (scores >= g).sum(-1) - 1


def recall_at(rank: torch.Tensor, k: int) -> torch.Tensor:
    return (rank < k).float().mean(-1)  # [E]


def mrr_at(rank: torch.Tensor, k: int) -> torch.Tensor:
    return torch.where(rank < k, 1.0 / (rank + 1).float(), 0.0).mean(-1)  # [E]


def joint_reference(emb: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    """The PCAS table one draw, query, context and passage at a time (for tests)."""
    E, Nq, C, _ = emb["QC"].shape
    Np = emb["P"].shape[1]
    out = torch.empty(E, Nq, C, Np)
    for e in range(E):
        for q in range(Nq):
            for j in range(C):
                bonus = lam * float(emb["Q"][e, q] @ emb["Cx"][e, q, j])
                for p in range(Np):
                    out[e, q, j, p] = float(emb["QC"][e, q, j] @ emb["P"][e, p]) + bonus
    return out


def check_forward(cfgs, params: dict[str, torch.Tensor], device) -> float:
    """max |PCAS table - per-example reference| on the indexed embeddings (conformance)."""
    emb = {k: params[k][:, :3] if k != "P" else params[k] for k in ("P", "Q", "QC", "QA", "Cx")}
    lam = float(cfgs[0].lam) or 0.5  # lam = 0 would not exercise the context term
    return float((passage_scores(emb, lam)["joint"] - joint_reference(emb, lam).to(emb["P"].device)).abs().max())
