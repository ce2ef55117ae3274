"""The one-layer, single-head Transformer of eq. (1), ensemble-first.

    F(Psi; P) = a^T ReLU( W_O sum_i W_V p_i attn_i ),   attn_i = softmax_i( (W_K p_i)^T W_Q p_query )

Weights carry a leading model axis: W_Q, W_K, W_V [E, d, d], W_O [E, m, d], a [E, m] (fixed).
Named probes (run with `probes=True`): attn [E, B, L], query_proj [E, B, d] (W_Q p_query),
hidden [E, B, d] (sum_i W_V p_i attn_i), preact [E, B, m], F [E, B].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.icl.config import ICLConfig

TRAINABLE = ["W_Q", "W_K", "W_V", "W_O"]  # a is fixed at init (section 1.2)


def init_params(cfgs: Sequence[ICLConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    E, d, m = len(cfgs), shared_value(cfgs, "d_X") + shared_value(cfgs, "d_Y"), shared_value(cfgs, "m")
    eye = torch.eye(d, device=device).expand(E, d, d)
    delta = scalar_tensor(cfgs, "delta", device)[:, None, None]
    a = torch.full((m,), 1.0 / m, device=device)
    a[m // 2 :] *= -1  # half +1/m, half -1/m; W_O rows are i.i.d., so the order is immaterial
    return {
        "W_Q": delta * eye,  # small scaled identity (IIT slide 11)
        "W_K": delta * eye,
        "W_V": scalar_tensor(cfgs, "v_init", device)[:, None, None] * eye,
        "W_O": scalar_tensor(cfgs, "xi", device)[:, None, None] * rng.normal((m, d), "init", "W_O").to(device),
        "a": a.expand(E, m).clone(),
    }


def _eq1(W_Q, W_K, W_V, W_O, a, C, Q, probes: bool = False) -> dict[str, torch.Tensor]:
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


class _Eq1(torch.autograd.Function):
    """Eq. (1) with its gradient written out: one autograd node instead of about twenty, the backward's context
    contractions in the fast layout too, and nothing computed for inputs that need no gradient."""

    @staticmethod
    def forward(ctx, W_Q, W_K, W_V, W_O, a, C, Q):
        t = _eq1(W_Q, W_K, W_V, W_O, a, C, Q)
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


def forward(params: dict[str, torch.Tensor], C: torch.Tensor, Q: torch.Tensor, attend_query: bool = False,
            probes: bool = False):
    """C [E, B, L, D] contexts, Q [E, B, D] query -> F [E, B] (and a dict of named probes)."""
    if attend_query:
        C = torch.cat([C, Q[:, :, None, :]], dim=2)
    weights = [params[k] for k in ("W_Q", "W_K", "W_V", "W_O", "a")]
    if not probes:
        return _Eq1.apply(*weights, C, Q)
    t = _eq1(*weights, C, Q, probes=True)
    E, B, L, _ = C.shape
    return t["F"], {"attn": t["attn"].reshape(E, B, L), "query_proj": t["u"], "hidden": t["hidden"],
                    "preact": t["preact"], "F": t["F"]}


def forward_autograd(params: dict[str, torch.Tensor], C: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Eq. (1) as plain einsums, differentiated by autograd: the reference the hand-written gradient is tested
    against (and the engine's path before issue 17)."""
    u = torch.einsum("eij,ebj->ebi", params["W_Q"], Q)
    w = torch.einsum("eij,ebi->ebj", params["W_K"], u)
    attn = torch.softmax(torch.einsum("ebld,ebd->ebl", C, w), dim=-1)
    hidden = torch.einsum("evd,ebd->ebv", params["W_V"], torch.einsum("ebl,ebld->ebd", attn, C))
    preact = torch.einsum("emv,ebv->ebm", params["W_O"], hidden)
    return torch.einsum("ebm,em->eb", torch.relu(preact), params["a"])


def forward_reference(params: dict[str, torch.Tensor], C: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Eq. (1) one model and one prompt at a time, written as the paper writes it (for tests)."""
    E, B, L, _ = C.shape
    out = torch.empty(E, B, dtype=C.dtype)
    for e in range(E):
        WQ, WK, WV, WO, a = (params[k][e] for k in ("W_Q", "W_K", "W_V", "W_O", "a"))
        for b in range(B):
            s = torch.stack([(WK @ C[e, b, i]) @ (WQ @ Q[e, b]) for i in range(L)])
            attn = torch.softmax(s, 0)
            h = sum(WV @ C[e, b, i] * attn[i] for i in range(L))
            out[e, b] = a @ torch.relu(WO @ h)
    return out


def check_forward(cfgs: Sequence[ICLConfig], params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on a few prompts (the conformance test's forward check)."""
    from theorylab.core.ensemble import rng_for
    from theorylab.shared.icl_prompts import in_domain_world, sample_prompts, split_tasks

    world = in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])
    pr = sample_prompts(world, rng_for(cfgs, device), scalar_tensor(cfgs, "alpha", device), 3, cfgs[0].l_tr, "check")
    C = torch.cat([pr.C, pr.Q[:, :, None, :]], dim=2) if cfgs[0].attend_query else pr.C  # the query as a context
    return float((forward(params, C, pr.Q) - forward_reference(params, C, pr.Q)).abs().max())
