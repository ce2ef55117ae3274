"""The one-layer, single-head, attention-only Transformer of section 2.2, ensemble-first.

    F(Psi; P) = sum_i W_V p_i softmax_i( (W_K p_i)^T W_Q p_query )   in R^{d_X}

The sum runs over the prompt's columns except the query's (absent columns masked out). Weights carry a
leading model axis: W_Q, W_K [E, m, 2 d_X] with m = 2 d_X, W_V [E, d_X, 2 d_X] (frozen [0, I] by default).
Named probes (probes=True): attn [E, B, N], scores [E, B, N], F [E, B, d_X].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.shared.cot_reasoning import BasisColumns, ColumnIds, Reasoning


def trainable(cfgs: Sequence) -> list[str]:
    return ["W_Q", "W_K", "W_V"] if shared_value(cfgs, "train_W_V") else ["W_Q", "W_K"]


def init_params(cfgs: Sequence, device) -> dict[str, torch.Tensor]:
    """W_Q = W_K = delta I (near-uniform attention at the start), W_V = [0, I] (reads a column's output half)."""
    E, d_X = len(cfgs), shared_value(cfgs, "d_X")
    eye = torch.eye(2 * d_X, device=device).expand(E, 2 * d_X, 2 * d_X)
    delta = scalar_tensor(cfgs, "delta", device)[:, None, None]
    W_V = torch.zeros(E, d_X, 2 * d_X, device=device)
    W_V[:, :, d_X:] = torch.eye(d_X, device=device)
    return {"W_Q": delta * eye, "W_K": delta * eye, "W_V": W_V}


def forward(params: dict[str, torch.Tensor], C: torch.Tensor, mask: torch.Tensor, Q: torch.Tensor,
            probes: bool = False):
    """C [E, B, N, 2 d_X] columns, mask [E, B, N], Q [E, B, 2 d_X] query column -> F [E, B, d_X].
    A prompt with no columns at all gives F = 0."""
    u = torch.einsum("emj,ebj->ebm", params["W_Q"], Q)  # W_Q p_query                       [E, B, m]
    w = torch.einsum("emi,ebm->ebi", params["W_K"], u)  # W_K^T W_Q p_query                  [E, B, 2 d_X]
    scores = torch.einsum("ebni,ebi->ebn", C, w)  # (W_K p_i)^T W_Q p_query, section 2.2     [E, B, N]
    scores = scores.masked_fill(~mask, float("-inf"))
    attn = torch.softmax(scores, dim=-1)  # softmax over the columns i                       [E, B, N]
    attn = torch.where(mask.any(-1, keepdim=True), attn, 0.0)  # no column: no output (not NaN)
    mixed = torch.einsum("ebn,ebni->ebi", attn, C)  # sum_i p_i attn_i                        [E, B, 2 d_X]
    F = torch.einsum("edi,ebi->ebd", params["W_V"], mixed)  # sum_i W_V p_i attn_i           [E, B, d_X]
    if not probes:
        return F
    return F, {"attn": attn, "scores": scores, "F": F}


def forward_columns(params: dict[str, torch.Tensor], cols: ColumnIds) -> torch.Tensor:
    """forward() on prompts given as pattern indices (shared.cot_reasoning.ColumnIds), without the [E, B, N, 2 d_X]
    context: a column's score (W_K p_i)^T w, w = W_K^T W_Q p_query, is a sum of three table entries, patterns[in] . w_in
    + pos[step] . w_in + patterns[out] . w_out; and sum_i attn_i p_i is the attention mass binned by pattern (and by
    step) times the M patterns (and K positions). O(B N + B M d_X) per model instead of O(B N d_X); the same
    function (tests/studies/cot/test_cot_speed.py: equal to forward within float rounding, forward and gradient)."""
    P, pos = cols.patterns, cols.pos  # [E, M, d_X], [K, d_X]
    E, M, d_X = P.shape
    u = torch.einsum("emj,ebj->ebm", params["W_Q"], cols.Q)  # W_Q p_query                    [E, B, m]
    w = torch.einsum("emi,ebm->ebi", params["W_K"], u)  # W_K^T W_Q p_query                    [E, B, 2 d_X]
    w_in, w_out = w[..., :d_X], w[..., d_X:]
    in_table = torch.einsum("ekd,ebd->ebk", P, w_in)  # patterns . w_in                         [E, B, M]
    out_table = torch.einsum("ekd,ebd->ebk", P, w_out)  # patterns . w_out                      [E, B, M]
    pos_table = w_in @ pos.T  # pos . w_in                                                       [E, B, K]
    scores = (torch.gather(in_table, 2, cols.in_ids) + pos_table[..., cols.col_step]) \
        + torch.gather(out_table, 2, cols.out_ids)  # (W_K p_i)^T W_Q p_query                   [E, B, N]
    scores = scores.masked_fill(~cols.mask, float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    attn = torch.where(cols.mask.any(-1, keepdim=True), attn, 0.0)
    E_, B, N = attn.shape
    by_in = attn.new_zeros(E, B, M).scatter_add(2, cols.in_ids, attn)  # attention mass per input pattern
    by_out = attn.new_zeros(E, B, M).scatter_add(2, cols.out_ids, attn)  # ... per output pattern
    by_step = attn.new_zeros(E, B, pos.shape[0]).index_add(2, cols.col_step, attn)  # ... per position
    mixed = torch.cat([by_in @ P + by_step @ pos, by_out @ P], -1)  # sum_i attn_i p_i               [E, B, 2 d_X]
    return torch.einsum("edi,ebi->ebd", params["W_V"], mixed)  # sum_i W_V p_i attn_i          [E, B, d_X]


def forward_basis(params: dict[str, torch.Tensor], cols: BasisColumns) -> torch.Tensor:
    """forward_columns for the training geometry (patterns mu_j = e_j, positions c_j = e_{M+j}; a batch from
    shared.cot_reasoning.training_basis) with W_V frozen at [0, I]: the tables patterns . w_in, pos . w_in and
    patterns . w_out are then entries of w itself (one gather of every column's three), and sum_i W_V p_i attn_i is
    the attention mass per output pattern, so the [E, B, M] table products, the input and position bins and the W_V
    product are skipped. Every value skipped is a sum with exact zeros (a one-hot dot product, an empty bin), so
    forward and gradient are forward_columns' bit for bit (tests/studies/cot/test_cot_speed.py)."""
    E, M, d_X = cols.patterns.shape
    _, B, N = cols.in_w.shape
    u = torch.einsum("emj,ebj->ebm", params["W_Q"], cols.Q)  # W_Q p_query                    [E, B, m]
    w = torch.einsum("emi,ebm->ebi", params["W_K"], u)  # W_K^T W_Q p_query                    [E, B, 2 d_X]
    scores = (torch.gather(w, 2, cols.in_w) + torch.gather(w, 2, cols.pos_w.expand(E, B, N))) \
        + torch.gather(w, 2, cols.out_w)  # w_in[in] + w_in[M + step] + w_out[out], forward_columns' order  [E, B, N]
    n_ex = N - cols.valid.shape[2]  # example columns: always present; only the query prefix is masked
    scores[..., n_ex:].masked_fill_(~cols.valid, float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    if n_ex == 0:  # no example columns: a prompt may have no column at all (forward gives F = 0 there)
        attn = torch.where(cols.valid.any(-1, keepdim=True), attn, 0.0)
    # attention mass per output pattern, binned at d_X + out_id: the upper half is W_V mixed = mixed's output half
    return attn.new_zeros(E, B, 2 * d_X).scatter_add(2, cols.out_w, attn)[..., d_X:]  #             [E, B, d_X]


def forward_step(params: dict[str, torch.Tensor], r: Reasoning, k: int, query_tokens: torch.Tensor) -> torch.Tensor:
    """forward(step_prompts(r, k, query_tokens)) read straight from the tokens [E, B, l, K+1, d_X] (any tokens: noisy
    test prompts too), without writing the [E, B, N, 2 d_X] context: a column (y_j + c_j; y_{j+1}) scores
    y_j . w_in + c_j . w_in + y_{j+1} . w_out, so one pass over the tokens gives every score, and one more gives
    sum_i attn_i p_i. query_tokens [E, B, K, d_X]: the query chain z_0..z_{K-1} (entries from k on are not read).
    Absent prefix slots are left out rather than masked (the same softmax). [E, B, d_X]; within float rounding of
    forward (tests/studies/cot/test_cot_speed.py)."""
    E, B, l, K1, d_X = r.tokens.shape
    K, pos = K1 - 1, r.pos
    qt = query_tokens
    Q = torch.cat([qt[:, :, k - 1] + pos[k - 1], torch.zeros_like(qt[:, :, 0])], -1)  # (z_{k-1} + c_{k-1}; 0)
    u = torch.einsum("emj,ebj->ebm", params["W_Q"], Q)  # W_Q p_query                          [E, B, m]
    w = torch.einsum("emi,ebm->ebi", params["W_K"], u)  # W_K^T W_Q p_query                     [E, B, 2 d_X]
    w_in, w_out = w[..., :d_X], w[..., d_X:]
    tok = r.tokens.reshape(E, B, l * K1, d_X)
    s = (tok @ torch.stack([w_in, w_out], -1)).view(E, B, l, K1, 2)  # y . w_in, y . w_out  [E, B, l, K+1, 2]
    pw = w_in @ pos.T  # c_j . w_in                                                              [E, B, K]
    ex = ((s[..., :K, 0] + pw[:, :, None, :]) + s[..., 1:, 1]).reshape(E, B, l * K)  # example columns' scores
    pre = (torch.einsum("ebjd,ebd->ebj", qt[:, :, : k - 1], w_in) + pw[..., : k - 1]) + \
        torch.einsum("ebjd,ebd->ebj", qt[:, :, 1:k], w_out)  # the query's k-1 earlier columns         [E, B, k-1]
    attn = torch.softmax(torch.cat([ex, pre], -1), dim=-1)
    a_ex, a_pre = attn[..., : l * K].view(E, B, l, K), attn[..., l * K :]
    zero = a_ex.new_zeros(E, B, l, 1)
    a2 = torch.stack([torch.cat([a_ex, zero], -1), torch.cat([zero, a_ex], -1)], 2)  # weight on y_j as input / output
    mixed = a2.view(E, B, 2, l * K1) @ tok  # sum over example columns of attn_i (y_j; y_{j+1})   [E, B, 2, d_X]
    m_in = mixed[:, :, 0] + a_ex.sum(2) @ pos + torch.einsum("ebj,ebjd->ebd", a_pre, qt[:, :, : k - 1] + pos[: k - 1])
    m_out = mixed[:, :, 1] + torch.einsum("ebj,ebjd->ebd", a_pre, qt[:, :, 1:k])
    return torch.einsum("edi,ebi->ebd", params["W_V"], torch.cat([m_in, m_out], -1))  # [E, B, d_X]


def forward_icl(params: dict[str, torch.Tensor], r: Reasoning) -> torch.Tensor:
    """forward(icl_prompts(r)) read from the tokens: example i's columns are (x_i + c_0; y_{i,K}) and (c_j; 0) for
    0 < j < K, the query (z_0 + c_0; 0), so a score is x_i . w_in + c_0 . w_in + y_{i,K} . w_out or c_j . w_in.
    [E, B, d_X]; within float rounding of forward (tests/studies/cot/test_cot_speed.py)."""
    E, B, l, K1, d_X = r.tokens.shape
    K, pos = K1 - 1, r.pos
    Q = torch.cat([r.query_tokens[:, :, 0] + pos[0], torch.zeros_like(r.query_tokens[:, :, 0])], -1)
    u = torch.einsum("emj,ebj->ebm", params["W_Q"], Q)
    w = torch.einsum("emi,ebm->ebi", params["W_K"], u)  # W_K^T W_Q p_query                     [E, B, 2 d_X]
    w_in, w_out = w[..., :d_X], w[..., d_X:]
    x, y = r.tokens[:, :, :, 0], r.tokens[:, :, :, K]  # [E, B, l, d_X]
    pw = w_in @ pos.T  # c_j . w_in                                                              [E, B, K]
    first = (torch.einsum("ebid,ebd->ebi", x, w_in) + pw[..., :1]) + torch.einsum("ebid,ebd->ebi", y, w_out)
    scores = torch.cat([first[..., None], pw[:, :, None, 1:].expand(E, B, l, K - 1)], -1)  # [E, B, l, K]
    attn = torch.softmax(scores.reshape(E, B, l * K), -1).view(E, B, l, K)
    a0 = attn[..., 0]  # [E, B, l]
    m_in = torch.einsum("ebi,ebid->ebd", a0, x) + attn.sum(2) @ pos
    m_out = torch.einsum("ebi,ebid->ebd", a0, y)
    return torch.einsum("edi,ebi->ebd", params["W_V"], torch.cat([m_in, m_out], -1))


def forward_reference(params: dict[str, torch.Tensor], C: torch.Tensor, mask: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Section 2.2's sum one model and one prompt at a time, over the present columns (for tests)."""
    E, B, N, _ = C.shape
    out = torch.zeros(E, B, params["W_V"].shape[1], dtype=C.dtype)
    for e in range(E):
        WQ, WK, WV = (params[k][e] for k in ("W_Q", "W_K", "W_V"))
        for b in range(B):
            cols = [C[e, b, i] for i in range(N) if mask[e, b, i]]
            if not cols:
                continue
            s = torch.stack([(WK @ p) @ (WQ @ Q[e, b]) for p in cols])
            a = torch.softmax(s, 0)
            out[e, b] = sum(WV @ p * a_i for p, a_i in zip(cols, a))
    return out


def decode(F: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Greedy output v = argmin_u 1/2 ||F - u||^2 over the patterns Y: F [E, B, d_X], patterns [E, M, d_X] -> [E, B].
    A non-finite F decodes to -1 (never correct)."""
    dist = torch.cdist(F, patterns)  # [E, B, M]
    v = dist.argmin(-1)
    return torch.where(torch.isfinite(F).all(-1), v, -1)


def half_squared_loss(F: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """[E, B, d_X] -> [E]: mean over prompts of 1/2 ||z - F||^2 (section 2.3)."""
    return 0.5 * ((F - z) ** 2).sum(-1).mean(-1)


def check_forward(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on a few test prompts at every step (the conformance test's check)."""
    from theorylab.core.ensemble import rng_for
    from theorylab.shared.cot_reasoning import eval_reasoning, icl_prompts, step_prompts

    r = eval_reasoning(cfgs, rng_for(cfgs, device), 3, min(cfgs[0].l_tr, 4), "check")
    gap = 0.0
    K = shared_value(cfgs, "K")
    for pr in [step_prompts(r, k) for k in range(1, K + 1)] + [icl_prompts(r)]:
        gap = max(gap, float((forward(params, pr.C, pr.mask, pr.Q) - forward_reference(params, pr.C, pr.mask, pr.Q))
                             .abs().max()))
    return gap
