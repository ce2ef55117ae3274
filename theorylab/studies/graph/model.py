"""The graph transformer of section 2.2 and its two variants, ensemble-first (core.nn layers).

    gt:    F(x_n) = a^T ReLU( W_1 proj( sum_{s in T^n} W_V x_s softmax_s( (W_K x_s)^T W_Q x_n / sqrt(d)
                                                                         + b_{dist(s, n)} ) ) + c_1 )
    no_pe: the same with b frozen at 0
    gcn:   F(x_n) = a^T ReLU( W_1 [H^(L)]_n + c_1 ),  H^(l) = A_hat H^(l-1) W_l + c_l (ReLU between layers),
           A_hat = D^-1/2 (A + I) D^-1/2, H^(0) = X

The spec's W_O is proj followed by W_1 (core.nn.attention keeps its output projection; the product spans the
same maps). a = +-1/sqrt(m) is fixed (section 2.2); one head; b = (b_0..b_Z) starts at 0.
init = paper (the default, spec sections 1.2 / 2.2): W_Q, W_K, W_V start near the identity (I + sigma G/sqrt(d)),
proj is held at I (so W_O = W_1 ~ N(0, 1/d)), and no bias vector is trained unless biases = True (the paper's
model has none; held at 0 they change nothing). init = gaussian: every weight N(0, 1/fan_in), proj trained.
Weights [E, ...]; node batches nodes [E, B] index each model's own graph.

Speed (embed's fast path, the default; fast=False is the plain form, tested equal): node n's output is the one
attention row it reads (core.nn.attention_query: no L x L map, keys and values never formed), over its tokens'
features stored per node (GraphBatch.x_tok_t); the GCN runs over neighbour lists from the precomputed A_hat X,
only at the batch's neighbourhood (gcn_rows).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from theorylab.core import nn
from theorylab.core.batch import gather_rows, take_rows
from theorylab.core.ensemble import shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.graph.config import GraphConfig
from theorylab.studies.graph.data import GraphBatch, graphs

def trainable(cfgs: Sequence[GraphConfig]) -> list[str]:
    variant, biases, paper = shared_value(cfgs, "variant"), shared_value(cfgs, "biases"), shared_value(cfgs, "init") == "paper"
    with_bias = lambda *names: [f"{n}.{p}" for n in names for p in (("w", "b") if biases else ("w",))]  # noqa: E731
    head = with_bias("fc1")
    if variant == "gcn":
        return with_bias(*(f"gcn.{l}" for l in range(cfgs[0].layers))) + head
    attn = with_bias("attn.qkv") + ([] if paper else with_bias("attn.proj")) + (["attn.proj.b"] if paper and biases else [])
    return attn + (["attn.rel_bias"] if variant == "gt" else []) + head


def near_identity(rng: EnsembleRNG, name: str, d: int, error: float) -> torch.Tensor:
    """I + error G / sqrt(d) [E, d, d]: a "pre-trained" embedding within `error` of orthonormal (spec 1.2)."""
    return torch.eye(d, device=rng.device) + error * rng.normal((d, d), "init", name) / math.sqrt(d)


def init_params(cfgs: Sequence[GraphConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    d, m, Z = (shared_value(cfgs, f) for f in ("d", "m", "Z"))
    p: dict[str, torch.Tensor] = {}
    if shared_value(cfgs, "variant") == "gcn":
        for l in range(cfgs[0].layers):
            p.update(nn.init_linear(rng, f"gcn.{l}", d, d))
    else:
        p.update(nn.init_attention(rng, "attn", d, 1, rel_buckets=Z + 1))  # rel_bias [E, Z+1, 1] = 0: b^(0) = 0
        if shared_value(cfgs, "init") == "paper":
            err = shared_value(cfgs, "init_error")
            p["attn.qkv.w"] = torch.cat([near_identity(rng, f"attn.{w}", d, err) for w in ("W_Q", "W_K", "W_V")], -1)
            p["attn.proj.w"] = torch.eye(d, device=rng.device).expand(len(cfgs), d, d).clone()
    p.update(nn.init_linear(rng, "fc1", d, m))
    a = torch.full((m,), 1 / math.sqrt(m), device=device)
    a[m // 2:] *= -1
    p["a"] = a.expand(len(cfgs), m).clone()  # fixed output layer                                 [E, m]
    return {k: v.to(device) for k, v in p.items()}


def embed(params: dict[str, torch.Tensor], g: GraphBatch, nodes: torch.Tensor, variant: str,
          probes: dict | None = None, fast: bool = True) -> torch.Tensor:
    """The aggregated representation of each node in nodes [E, B] -> [E, B, d].

    fast (the default) computes only what is read: the query node's own attention row (nn.attention_query:
    no L x L map, no keys or values formed), and the GCN rule over neighbour lists (O(deg) per node, not a dense
    N x N product) at the batch's neighbourhood only (gcn_rows). fast=False is the plain form (full L x L
    self-attention of T^n read at row 0; dense normalized adjacency over every node); tests hold them equal."""
    if variant == "gcn":
        layers = sum(1 for k in params if k.startswith("gcn.") and k.endswith(".w"))
        if not fast:
            H = g.X[:, None]  # H^(0) = X                                                    [E, 1, N, d]
            for l in range(layers):
                H = nn.graph_aggregate(H, g.adj, params, f"gcn.{l}")  # A_hat H W_l + c_l
                if l < layers - 1:
                    H = torch.relu(H)
            return gather_rows(H[:, 0], nodes)
        return gcn_rows(params, g, nodes, layers)
    if fast and g.x_tok_t is not None:
        x = take_rows(g.x_tok_t, nodes).transpose(-1, -2)  # x_s for s in T^n (a view)               [E, B, L, d]
    else:
        x = take_rows(g.X, take_rows(g.tok, nodes))  # T^n [E, B, L], then their features       [E, B, L, d]
    dist = take_rows(g.tok_dist, nodes) if variant == "gt" else None  # dist(s, n)                 [E, B, L]
    mask = take_rows(g.tok_mask, nodes)
    if fast:  # softmax_s(x_s^T W_K^T W_Q x_n / sqrt(d) + b_dist) W_V x_s, proj: node n's row only  [E, B, d]
        return nn.attention_query(x, params, "attn", 1, query=0, rel_index=dist, key_mask=mask, key_bias=False,
                                  probes=probes)
    L = x.shape[-2]
    rel = dist[..., None, :].expand(*x.shape[:-1], L) if dist is not None else None
    out = nn.attention(x, params, "attn", 1, rel_index=rel, key_mask=mask, key_bias=False,
                       probes=probes)  # every token's row                                       [E, B, L, d]
    return out[..., 0, :]  # the query node's own output (token 0 is n)


def gcn_rows(params: dict[str, torch.Tensor], g: GraphBatch, rows: torch.Tensor, l: int) -> torch.Tensor:
    """H^(l) at rows [E, R] -> [E, R, d] over neighbour lists: H^(1) = (A_hat X) W_0 + c_0 from the precomputed
    A_hat X; H^(l) = A_hat ReLU(H^(l-1)) W_l-1 + c_l-1 from H^(l-1) at the rows' neighbours, or at every node
    once those are as many (a batch's neighbourhood is small: B (deg + 1) rows, not N)."""
    name = f"gcn.{l - 1}"
    if l == 1:
        return nn.linear(take_rows(g.ax, rows), params, name, data_dims=1)
    E, N = g.X.shape[:2]
    if rows.shape[1] * g.nbr.shape[-1] < N:  # the rows' neighbours: [E, R K] -> aggregate per row
        nbr, w = take_rows(g.nbr, rows), take_rows(g.nbr_w, rows)  # [E, R, K]
        prev = torch.relu(gcn_rows(params, g, nbr.flatten(1), l - 1)).unflatten(1, nbr.shape[1:])  # [E, R, K, d]
        return nn.linear((w.to(prev.dtype).unsqueeze(-2) @ prev).squeeze(-2), params, name, data_dims=1)
    every = torch.arange(N, device=rows.device).expand(E, N)
    prev = torch.relu(gcn_rows(params, g, every, l - 1))  # every node                        [E, N, d]
    return nn.graph_aggregate_sparse(prev, take_rows(g.nbr, rows), take_rows(g.nbr_w, rows), params, name)


def forward(params: dict[str, torch.Tensor], g: GraphBatch, nodes: torch.Tensor, variant: str,
            probes: dict | None = None, fast: bool = True) -> torch.Tensor:
    """F(x_n) for nodes [E, B] -> [E, B] (section 2.2); fast: see embed."""
    h = embed(params, g, nodes, variant, probes, fast)
    hidden = torch.relu(nn.linear(h, params, "fc1", data_dims=1))  # ReLU(W_O h)               [E, B, m]
    return (hidden * params["a"][:, None, :]).sum(-1)  # a^T ReLU(.)                              [E, B]


def forward_reference(params: dict[str, torch.Tensor], g: GraphBatch, nodes: torch.Tensor, variant: str) -> torch.Tensor:
    """Section 2.2 one model and one node at a time, as written above (for tests)."""
    E, B = nodes.shape
    out = torch.empty(E, B, dtype=g.X.dtype)
    for e in range(E):
        P = {k: v[e] for k, v in params.items()}
        X = g.X[e]
        d = X.shape[1]
        if variant == "gcn":
            A = g.adj[e]
            N = A.shape[0]
            deg = A.sum(1) + 1
            H = X
            layers = sum(1 for k in P if k.startswith("gcn.") and k.endswith(".w"))
            for l in range(layers):
                new = torch.stack([sum(H[s] * (1.0 if s == n else float(A[n, s])) / math.sqrt(deg[n] * deg[s])
                                       for s in range(N) if s == n or A[n, s] > 0) for n in range(N)])
                H = new @ P[f"gcn.{l}.w"] + P[f"gcn.{l}.b"]
                if l < layers - 1:
                    H = torch.relu(H)
        for b in range(B):
            n = int(nodes[e, b])
            if variant == "gcn":
                h = H[n]
            else:
                Wq, Wk, Wv = P["attn.qkv.w"][:, :d], P["attn.qkv.w"][:, d:2 * d], P["attn.qkv.w"][:, 2 * d:]
                bq, bv = P["attn.qkv.b"][:d], P["attn.qkv.b"][2 * d:]
                q = X[n] @ Wq + bq
                scores, values = [], []
                for slot in range(g.tok.shape[2]):
                    if not g.tok_mask[e, n, slot]:
                        continue
                    s = int(g.tok[e, n, slot])
                    bz = P["attn.rel_bias"][int(g.tok_dist[e, n, slot]), 0] if variant == "gt" else 0.0
                    scores.append((X[s] @ Wk) @ q / math.sqrt(d) + bz)
                    values.append(X[s] @ Wv + bv)
                att = torch.softmax(torch.stack(scores), 0)
                h = sum(w * v for w, v in zip(att, values)) @ P["attn.proj.w"] + P["attn.proj.b"]
            out[e, b] = P["a"] @ torch.relu(h @ P["fc1.w"] + P["fc1.b"])
    return out


def check_forward(cfgs: Sequence[GraphConfig], params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on 4 labelled nodes per model (conformance)."""
    g = graphs(cfgs, device)
    nodes = g.order[:, :4]
    variant = shared_value(cfgs, "variant")
    p = {k: v.double() for k, v in params.items()}
    g64 = g.double()
    return float((forward(p, g64, nodes, variant) - forward_reference(p, g64, nodes, variant)).abs().max())
