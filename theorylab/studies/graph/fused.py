"""The attention variants' training loss with its gradient written out by hand (issue 26: the step's speed path).

At E = 64 the step is small (B = 32 nodes of L ~ 30 tokens of d = 16 features per model), and eager autograd's
per-op cost is most of it: the generic forward (core.nn.attention_query, linear, hinge) records ~60 ops and its
backward ~90 more, with views, expands and reductions that the maths does not need. Here the forward is 14 ops and
the backward 20, the same algebra as attention_query (u = W_K q / sqrt(d): keys and values never formed):

    q = x_n W_Q + b_Q,   u = q W_K^T / sqrt(d),   a = softmax_s(x_s . u + b_dist(s) + mask_s)   (mask: -inf, empty)
    o = (a x) W_V + b_V,   h = o W_proj + b_proj,   z = h W_1 + c,   f = a_out . ReLU(z)
    loss = mean_b max(0, 1 - y f)

and the gradient, by hand (dl/df = -y [1 - y f >= 0] / B, as torch's clamp backward):

    dz = dl/df a_out [z > 0];  dW_1 = h^T dz;  dh = dz W_1^T;  dW_proj = o^T dh;  do = dh W_proj^T
    dW_V = (a x)^T do;  d(a x) = do W_V^T;  da_s = x_s . d(a x);  ds = a (da - sum_s a da)   (softmax backward)
    db_z = sum of ds over slots at distance z;  du = sum_s ds_s x_s;  dq = du W_K / sqrt(d);  dW_K = du^T q / sqrt(d);  dW_Q = x_n^T dq

The token features come transposed, xt [E, B, d, L] (GraphBatch.x_tok_t): every product over the tokens is then a
row vector times a contiguous matrix ([1, d] x [d, L] or [1, L] x [L, d]), the form CPU bmm runs 4-6x faster than
a matrix times a column at these sizes. Same numbers as the autograd path up to float rounding (the order of the
sums differs): tests/studies/graph/test_graph_fused.py holds loss, gradients and training steps equal to it.

A filled slot's distance is fixed by its position in T^n (the node itself, then k slots per distance: Tokens), so
the score bias is b[slot_dist] [E, L] broadcast over the batch plus a 0 / -inf row per node (read only where some
slot is empty), and db_z sums the score gradients over the batch, then over the slots at distance z: no per-token
distance gather and no per-token index_add (session 5; the same forward bit for bit, db_z rounds differently). A
projection held at I and biases held at 0 (the paper init: not trained, so they stay so) are left out (`held`):
x I + 0 is x exactly, so the numbers do not change (tested bit for bit).
"""
from __future__ import annotations

import math

import torch

from theorylab.studies.graph.data import GraphBatch

# the weights HingeLoss reads after its data, in its order
WEIGHTS = ("attn.qkv.w", "attn.qkv.b", "attn.proj.w", "attn.proj.b", "fc1.w", "fc1.b", "a")


class Tokens:
    """What the step reads about the nodes it can draw, computed once (data): their token features transposed
    x_t [R, d L] (GraphBatch.x_tok_t's rows), features X [R, d], and mask [R, L] (0 kept, -inf empty slot; None
    when every slot is filled), with row_of [E N] mapping a node row e N + n to its row here (-1: not kept); and
    slot_dist [L] long, the distance of each slot (0 for the node itself; a filled slot's distance is its
    position's, sample_tokens). nodes [E, n]: the nodes kept (default all). The trainer keeps only the labelled
    ones: at E = 64 of the quick config the table is then 19 MB instead of 59 MB and stays in the last-level cache,
    so the step's gather of B token blocks reads it from there (session 5)."""

    def __init__(self, g: GraphBatch, variant: str, nodes: torch.Tensor | None = None):
        E, N, L = g.tok_dist.shape
        d = g.X.shape[-1]
        kept = torch.where(g.tok_mask, g.tok_dist, -1).amax((0, 1))  # a slot's distance wherever it is filled
        if bool((g.tok_mask & (g.tok_dist != kept)).any()):
            raise ValueError("graph tokens: a filled slot's distance differs from its position's (sample_tokens)")
        self.slot_dist = kept.clamp_min(0)
        self.variant = variant
        dev = g.X.device
        keep = torch.arange(N, device=dev).expand(E, N) if nodes is None else nodes
        keep = (keep + N * torch.arange(E, device=dev)[:, None]).flatten()
        self.row_of = torch.full((E * N,), -1, dtype=torch.long, device=dev)
        self.row_of[keep] = torch.arange(keep.numel(), device=dev)
        self.x_t = g.x_tok_t.reshape(E * N, d * L).index_select(0, keep)
        self.X = g.X.reshape(E * N, d).index_select(0, keep)
        self.mask = None if bool(g.tok_mask.all()) else torch.zeros(E * N, L, dtype=g.X.dtype, device=dev).masked_fill_(
            ~g.tok_mask.reshape(E * N, L), -math.inf).index_select(0, keep)


def held(params: dict[str, torch.Tensor], trainable) -> frozenset[str]:
    """The weights HingeLoss may leave out: "attn.proj.w" held at I, the biases held at 0 (not in trainable, so
    they keep their values for the whole run; the paper init). Leaving them out changes no number: x I + 0 = x."""
    out = set()
    w = params["attn.proj.w"]
    if "attn.proj.w" not in trainable and torch.equal(w, torch.eye(w.shape[-1], device=w.device).expand_as(w)):
        out.add("attn.proj.w")
    out.update(k for k in ("attn.qkv.b", "attn.proj.b", "fc1.b") if k not in trainable and not bool(params[k].any()))
    return frozenset(out)


class HingeLoss(torch.autograd.Function):
    """(rel_bias [E, Z + 1, 1] or None, xt [E, B, d, L], x_n [E, B, d], mask [E, B, L] or None (Tokens.mask at the
    nodes), y [E, B], slot_dist [L], qkv.w, qkv.b, proj.w, proj.b, fc1.w, fc1.b, a) -> (loss [E], f [E, B]); f
    carries no gradient (it is read for the batch error). The weights are [E, ...] as core.nn keeps them; qkv.b,
    proj.w, proj.b and fc1.b may be None: held at 0 (biases) or I (proj.w), so left out."""

    @staticmethod
    def forward(ctx, table, xt, xn, mask, y, slot_dist, W, qkv_b, proj_w, proj_b, fc1_w, fc1_b, a_out):
        E, B, d, L = xt.shape
        Wq, Wk, Wv = W[..., :d], W[..., d : 2 * d], W[..., 2 * d :]
        q = torch.bmm(xn, Wq) if qkv_b is None else torch.baddbmm(qkv_b[:, None, :d], xn, Wq)  # x_n W_Q + b_Q
        u = torch.bmm(q, Wk.transpose(1, 2)) / math.sqrt(d)  # W_K q / sqrt(d)                          [E, B, d]
        s = torch.matmul(u[:, :, None, :], xt)[:, :, 0]  # x_s . u                                      [E, B, L]
        if mask is not None:
            s += mask  # -inf on empty slots (+0 elsewhere: exact)
        if table is not None:
            s += table[:, :, 0].index_select(1, slot_dist)[:, None, :]  # + b_dist(s)
        att = torch.softmax(s, -1)
        xbar = torch.matmul(att[:, :, None, :], xt.transpose(-1, -2))[:, :, 0]  # a x                  [E, B, d]
        o = torch.bmm(xbar, Wv) if qkv_b is None else torch.baddbmm(qkv_b[:, None, 2 * d :], xbar, Wv)  # (a x) W_V
        if proj_w is not None:
            h = torch.bmm(o, proj_w) if proj_b is None else torch.baddbmm(proj_b[:, None], o, proj_w)
        else:
            h = o if proj_b is None else o + proj_b[:, None]
        z = torch.bmm(h, fc1_w) if fc1_b is None else torch.baddbmm(fc1_b[:, None], h, fc1_w)  # W_1 h + c  [E, B, m]
        f = torch.bmm(a_out[:, None, :], torch.relu(z).transpose(1, 2))[:, 0]  # a . ReLU(z)            [E, B]
        margin = 1 - y * f
        loss = margin.clamp_min(0).mean(-1)
        ctx.save_for_backward(xt, xn, y, slot_dist, W, proj_w, fc1_w, a_out, q, att, xbar, o, h, z, margin)
        ctx.entries = None if table is None else table.shape[1]
        ctx.mark_non_differentiable(f)
        return loss, f

    @staticmethod
    def backward(ctx, g_loss, _g_f):
        xt, xn, y, slot_dist, W, proj_w, fc1_w, a_out, q, att, xbar, o, h, z, margin = ctx.saved_tensors
        need = ctx.needs_input_grad
        E, B, d, L = xt.shape
        Wk, Wv = W[..., d : 2 * d], W[..., 2 * d :]
        grad = [None] * 13
        # dl/df = -y [margin >= 0] g / B (torch's clamp backward passes the gradient at 0), then a . ReLU(z)
        df = y * (g_loss[:, None] / -B) * (margin >= 0)  # [E, B]
        # ReLU's backward as autograd runs it (threshold_backward: 20x faster than torch.where on CPU)
        dz = torch.ops.aten.threshold_backward(df[:, :, None] * a_out[:, None, :], z, 0)  # [E, B, m]
        if need[10]:
            grad[10] = torch.bmm(h.transpose(1, 2), dz)
        if need[11]:
            grad[11] = dz.sum(1)
        dh = torch.bmm(dz, fc1_w.transpose(1, 2))  # [E, B, d]
        if need[8]:
            grad[8] = torch.bmm(o.transpose(1, 2), dh)
        if need[9]:
            grad[9] = dh.sum(1)
        if not (need[0] or need[6] or need[7]):
            return tuple(grad)
        do = dh if proj_w is None else torch.bmm(dh, proj_w.transpose(1, 2))
        dxbar = torch.bmm(do, Wv.transpose(1, 2))  # [E, B, d]
        datt = torch.matmul(dxbar[:, :, None, :], xt)[:, :, 0]  # x_s . d(a x)                             [E, B, L]
        ds = torch._softmax_backward_data(datt, att, -1, att.dtype)  # d(scores)
        if need[0]:  # b_z: the score gradients summed over the batch, then over the slots at distance z
            # (empty slots carry a = 0, so ds = 0 there)
            grad[0] = ds.new_zeros(E, ctx.entries).index_add_(1, slot_dist, ds.sum(1))[:, :, None]
        du = torch.matmul(ds[:, :, None, :], xt.transpose(-1, -2))[:, :, 0] / math.sqrt(d)  # sum_s ds_s x_s / sqrt(d)
        dq = torch.bmm(du, Wk)
        if need[6]:
            grad[6] = torch.cat([torch.bmm(xn.transpose(1, 2), dq), torch.bmm(du.transpose(1, 2), q),
                                 torch.bmm(xbar.transpose(1, 2), do)], -1)
        if need[7]:
            # the key third stays 0: a key bias shifts every score of a query alike (core.nn.without_key_bias)
            grad[7] = torch.cat([dq.sum(1), torch.zeros_like(dq[:, 0]), do.sum(1)], -1)
        return tuple(grad)


def hinge_loss(params: dict[str, torch.Tensor], g: GraphBatch, rows: torch.Tensor, y: torch.Tensor, tokens: Tokens,
               held: frozenset[str] = frozenset()) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge loss [E], f [E, B]) of the nodes with labels y [E, B]: core.losses.hinge of model.forward's, by
    HingeLoss. rows [E B]: the nodes as rows of the flattened node tables (e N + node, model-major), so each table
    is read by one index_select (of Tokens' tables). tokens: Tokens(g, variant[, nodes]); no_pe reads no b_z (held
    at 0). held: the weights left out (held(params, trainable)), none by default."""
    E, B = y.shape
    d, L = g.X.shape[-1], tokens.slot_dist.shape[0]
    rows = tokens.row_of.index_select(0, rows)  # -1 (a node not kept) fails the gathers below
    xt = tokens.x_t.index_select(0, rows).view(E, B, d, L)
    mask = None if tokens.mask is None else tokens.mask.index_select(0, rows).view(E, B, L)
    table = params["attn.rel_bias"] if tokens.variant == "gt" else None
    xn = tokens.X.index_select(0, rows).view(E, B, d)
    weights = (None if k in held else params[k] for k in WEIGHTS)
    return HingeLoss.apply(table, xt, xn, mask, y, tokens.slot_dist, *weights)
