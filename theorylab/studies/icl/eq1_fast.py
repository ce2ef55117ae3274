"""The speed path of eq. (1) (issue 17): the same equation in the layout CPU GEMM runs fastest, with its gradient
written out as one autograd node. `model.forward_equation` is the plain einsum version it is tested equal to
(gradcheck in float64, 300 SGD steps within 1e-5: tests/studies/icl/test_model.py)."""
from __future__ import annotations

import torch


def eq1_layers(W_Q, W_K, W_V, W_O, a, C, Q, probes: bool = False) -> dict[str, torch.Tensor]:
    """Eq. (1) on the whole ensemble; every intermediate the gradient or a probe reads, by name.

    The query enters through M = W_K^T W_Q, one [D, D] product per model instead of two per prompt (7% fewer
    FLOPs per step). Each context contraction is a row vector times a matrix (bmm of [1, D] by [D, L] or [1, L]
    by [L, D]): CPU GEMM runs that layout about 6x faster than the matrix-vector form einsum picks (0.46 vs
    3.1 ms at E = 64, B = 64, L = 21, D = 40, one core; BENCHMARKS.md)."""
    E, B, L, D = C.shape
    Cf = C.reshape(E * B, L, D)
    M = torch.bmm(W_K.mT, W_Q)  # W_K^T W_Q                                                      [E, D, D]
    w = torch.bmm(Q, M.mT)  # W_K^T W_Q p_query                                                  [E, B, D]
    scores = torch.bmm(w.reshape(E * B, 1, D), Cf.mT)  # (W_K p_i)^T (W_Q p_query), eq. (1)   [E*B, 1, L]
    attn = torch.softmax(scores, dim=-1)  # softmax over contexts i                            [E*B, 1, L]
    mixed = torch.bmm(attn, Cf).reshape(E, B, D)  # sum_i p_i attn_i                           [E, B, D]
    hidden = torch.bmm(mixed, W_V.mT)  # sum_i W_V p_i attn_i                                   [E, B, D]
    preact = torch.bmm(hidden, W_O.mT)  # W_O (...)                                              [E, B, m]
    act = torch.relu(preact)
    F = torch.bmm(a[:, None, :], act.mT)[:, 0]  # a^T ReLU(...), eq. (1)                          [E, B]
    out = {"M": M, "w": w, "attn": attn, "mixed": mixed, "hidden": hidden, "preact": preact, "act": act, "F": F}
    if probes:
        out["u"] = torch.bmm(Q, W_Q.mT)  # W_Q p_query                                          [E, B, D]
    return out


class Eq1(torch.autograd.Function):
    """Eq. (1) with its gradient written out: one autograd node instead of about twenty, the backward's context
    contractions in the fast layout too, and nothing computed for inputs that need no gradient."""

    @staticmethod
    def forward(ctx, W_Q, W_K, W_V, W_O, a, C, Q):
        t = eq1_layers(W_Q, W_K, W_V, W_O, a, C, Q)
        ctx.save_for_backward(W_Q, W_K, W_V, W_O, a, C, Q, t["M"], t["w"], t["attn"], t["mixed"], t["hidden"],
                              t["act"])
        return t["F"]

    @staticmethod
    def backward(ctx, gF):  # gF [E, B] = dLoss/dF
        W_Q, W_K, W_V, W_O, a, C, Q, M, w, attn, mixed, hidden, act = ctx.saved_tensors
        E, B, L, D = C.shape
        Cf = C.reshape(E * B, L, D)
        need = ctx.needs_input_grad
        g_a = torch.bmm(gF[:, None, :], act)[:, 0] if need[4] else None  # [E, m]
        # through the ReLU: sign(act) is its derivative, 1 where preact > 0, else 0 (several times faster on CPU
        # than a boolean mask)
        g_pre = (gF[..., None] * a[:, None, :]).mul_(torch.sign(act))  # [E, B, m]
        g_W_O = torch.bmm(g_pre.mT, hidden)  # [E, m, D]
        g_hidden = torch.bmm(g_pre, W_O)  # [E, B, D]
        g_W_V = torch.bmm(g_hidden.mT, mixed)  # [E, D, D]
        g_mixed = torch.bmm(g_hidden, W_V)  # [E, B, D]
        g_attn = torch.bmm(g_mixed.reshape(E * B, 1, D), Cf.mT)  # [E*B, 1, L]
        g_scores = attn * (g_attn - (attn * g_attn).sum(-1, keepdim=True))  # softmax's Jacobian   [E*B, 1, L]
        g_w = torch.bmm(g_scores, Cf).reshape(E, B, D)  # [E, B, D]
        g_M = torch.bmm(g_w.mT, Q)  # [E, D, D]
        g_W_K = torch.bmm(W_Q, g_M.mT)  # M = W_K^T W_Q                                         [E, D, D]
        g_W_Q = torch.bmm(W_K, g_M)  # [E, D, D]
        g_C = g_Q = None
        if need[5]:  # p_i enters through the scores and through the mixture
            g_C = (attn.mT * g_mixed.reshape(E * B, 1, D) + g_scores.mT * w.reshape(E * B, 1, D)).reshape(C.shape)
        if need[6]:
            g_Q = torch.bmm(g_w, M)
        return g_W_Q, g_W_K, g_W_V, g_W_O, g_a, g_C, g_Q
