"""The attention variants' training loss with its gradient written out by hand (issue 26: the step's speed path).

At E = 64 the step is small (B = 32 nodes of L ~ 30 tokens of d = 16 features per model), and eager autograd's
per-op cost is most of it: the generic forward (core.nn.attention_query, linear, hinge) records ~60 ops and its
backward ~90 more, with views, expands and reductions that the maths does not need. Here the forward is 14 ops and
the backward 20, the same algebra as attention_query (u = W_K q / sqrt(d): keys and values never formed):

    q = x_n W_Q + b_Q,   u = q W_K^T / sqrt(d),   a = softmax_s(x_s . u + beta[bucket_s])   (beta: b_z, -inf masked)
    o = (a x) W_V + b_V,   h = o W_proj + b_proj,   z = h W_1 + c,   f = a_out . ReLU(z)
    loss = mean_b max(0, 1 - y f)

and the gradient, by hand (dl/df = -y [1 - y f >= 0] / B, as torch's clamp backward):

    dz = dl/df a_out [z > 0];  dW_1 = h^T dz;  dh = dz W_1^T;  dW_proj = o^T dh;  do = dh W_proj^T
    dW_V = (a x)^T do;  d(a x) = do W_V^T;  da_s = x_s . d(a x);  ds = a (da - sum_s a da)   (softmax backward)
    dbeta = sum of ds by bucket;  du = sum_s ds_s x_s;  dq = du W_K / sqrt(d);  dW_K = du^T q / sqrt(d);  dW_Q = x_n^T dq

The token features come transposed, xt [E, B, d, L] (GraphBatch.x_tok_t): every product over the tokens is then a
row vector times a contiguous matrix ([1, d] x [d, L] or [1, L] x [L, d]), the form CPU bmm runs 4-6x faster than
a matrix times a column at these sizes. Same numbers as the autograd path up to float rounding (the order of the
sums differs): tests/studies/graph/test_graph_fused.py holds loss, gradients and training steps equal to it.
"""
from __future__ import annotations

import math

import torch

from theorylab.studies.graph.data import GraphBatch

# the weights HingeLoss reads after its data, in its order
WEIGHTS = ("attn.qkv.w", "attn.qkv.b", "attn.proj.w", "attn.proj.b", "fc1.w", "fc1.b", "a")


def score_buckets(g: GraphBatch, variant: str, Z: int) -> torch.Tensor:
    """[E, N, L] long: each token's entry in its model's score-bias row beta [E, K] (K = Z + 2 for gt: b_0..b_Z,
    then -inf for empty slots; K = 2 for no_pe: 0, then -inf), flattened over models (e K + entry). Data: computed
    once, so a step gathers one index per token instead of a distance and a mask."""
    K = Z + 2 if variant == "gt" else 2
    entry = torch.where(g.tok_mask, g.tok_dist if variant == "gt" else torch.zeros_like(g.tok_dist), K - 1)
    return entry + K * torch.arange(g.E, device=entry.device).reshape(g.E, 1, 1)


class HingeLoss(torch.autograd.Function):
    """(rel_bias [E, Z + 1, 1] or None, xt [E, B, d, L], x_n [E, B, d], bucket [E, B, L] (score_buckets at the
    nodes), y [E, B], qkv.w, qkv.b, proj.w, proj.b, fc1.w, fc1.b, a) -> (loss [E], f [E, B]); f carries no
    gradient (it is read for the batch error). The weights are [E, ...] as core.nn keeps them."""

    @staticmethod
    def forward(ctx, table, xt, xn, bucket, y, W, qkv_b, proj_w, proj_b, fc1_w, fc1_b, a_out):
        E, B, d, L = xt.shape
        Wq, Wk, Wv = W[..., :d], W[..., d : 2 * d], W[..., 2 * d :]
        kept = table[..., 0] if table is not None else xt.new_zeros(E, 1)
        beta = torch.cat([kept, kept.new_full((E, 1), -math.inf)], 1)  # score bias per entry               [E, K]
        q = torch.baddbmm(qkv_b[:, None, :d], xn, Wq)  # x_n W_Q + b_Q                                   [E, B, d]
        u = torch.bmm(q, Wk.transpose(1, 2)) / math.sqrt(d)  # W_K q / sqrt(d)                          [E, B, d]
        s = torch.matmul(u[:, :, None, :], xt)[:, :, 0]  # x_s . u                                      [E, B, L]
        s += beta.view(-1).index_select(0, bucket.flatten()).view_as(s)  # + b_dist, -inf on empty slots
        att = torch.softmax(s, -1)
        xbar = torch.matmul(att[:, :, None, :], xt.transpose(-1, -2))[:, :, 0]  # a x                  [E, B, d]
        o = torch.baddbmm(qkv_b[:, None, 2 * d :], xbar, Wv)  # (a x) W_V + b_V
        h = torch.baddbmm(proj_b[:, None], o, proj_w)
        z = torch.baddbmm(fc1_b[:, None], h, fc1_w)  # W_1 h + c                                      [E, B, m]
        f = torch.bmm(a_out[:, None, :], torch.relu(z).transpose(1, 2))[:, 0]  # a . ReLU(z)            [E, B]
        margin = 1 - y * f
        loss = margin.clamp_min(0).mean(-1)
        ctx.save_for_backward(xt, xn, bucket, y, W, proj_w, fc1_w, a_out, q, att, xbar, o, h, z, margin)
        ctx.entries = beta.shape[1]
        ctx.mark_non_differentiable(f)
        return loss, f

    @staticmethod
    def backward(ctx, g_loss, _g_f):
        xt, xn, bucket, y, W, proj_w, fc1_w, a_out, q, att, xbar, o, h, z, margin = ctx.saved_tensors
        need = ctx.needs_input_grad
        E, B, d, L = xt.shape
        Wk, Wv = W[..., d : 2 * d], W[..., 2 * d :]
        grad = [None] * 12
        # dl/df = -y [margin >= 0] g / B (torch's clamp backward passes the gradient at 0), then a . ReLU(z)
        df = y * (g_loss[:, None] / -B) * (margin >= 0)  # [E, B]
        # ReLU's backward as autograd runs it (threshold_backward: 20x faster than torch.where on CPU)
        dz = torch.ops.aten.threshold_backward(df[:, :, None] * a_out[:, None, :], z, 0)  # [E, B, m]
        if need[9]:
            grad[9] = torch.bmm(h.transpose(1, 2), dz)
        if need[10]:
            grad[10] = dz.sum(1)
        dh = torch.bmm(dz, fc1_w.transpose(1, 2))  # [E, B, d]
        if need[7]:
            grad[7] = torch.bmm(o.transpose(1, 2), dh)
        if need[8]:
            grad[8] = dh.sum(1)
        if not (need[0] or need[5] or need[6]):
            return tuple(grad)
        do = torch.bmm(dh, proj_w.transpose(1, 2))
        dxbar = torch.bmm(do, Wv.transpose(1, 2))  # [E, B, d]
        datt = torch.matmul(dxbar[:, :, None, :], xt)[:, :, 0]  # x_s . d(a x)                             [E, B, L]
        ds = torch._softmax_backward_data(datt, att, -1, att.dtype)  # d(scores)
        if need[0]:  # b_z: the score gradients summed by entry (empty slots carry a = 0, so ds = 0 there)
            K = ctx.entries
            dbeta = ds.new_zeros(E * K).index_add_(0, bucket.flatten(), ds.flatten())
            grad[0] = dbeta.view(E, K)[:, : K - 1, None]
        du = torch.matmul(ds[:, :, None, :], xt.transpose(-1, -2))[:, :, 0] / math.sqrt(d)  # sum_s ds_s x_s / sqrt(d)
        dq = torch.bmm(du, Wk)
        if need[5]:
            grad[5] = torch.cat([torch.bmm(xn.transpose(1, 2), dq), torch.bmm(du.transpose(1, 2), q),
                                 torch.bmm(xbar.transpose(1, 2), do)], -1)
        if need[6]:
            # the key third stays 0: a key bias shifts every score of a query alike (core.nn.without_key_bias)
            grad[6] = torch.cat([dq.sum(1), torch.zeros_like(dq[:, 0]), do.sum(1)], -1)
        return tuple(grad)


def hinge_loss(params: dict[str, torch.Tensor], g: GraphBatch, rows: torch.Tensor, y: torch.Tensor, variant: str,
               buckets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge loss [E], f [E, B]) of the nodes with labels y [E, B]: core.losses.hinge of model.forward's, by
    HingeLoss. rows [E B]: the nodes as rows of the flattened node tables (e N + node, model-major), so each table
    is read by one index_select. buckets: score_buckets(g, variant, Z). no_pe reads no b_z (held at 0)."""
    E, B = y.shape
    (N, d), L = g.X.shape[1:], buckets.shape[-1]
    take = lambda table, *shape: table.reshape(E * N, -1).index_select(0, rows).view(E, B, *shape)  # noqa: E731
    table = params["attn.rel_bias"] if variant == "gt" else None
    return HingeLoss.apply(table, take(g.x_tok_t, d, L), take(g.X, d), take(buckets, L), y,
                           *(params[k] for k in WEIGHTS))
