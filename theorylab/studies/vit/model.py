"""One self-attention layer and a two-layer perceptron (section 1.2, poster eq. (1), with W_O), ensemble-first:

    F(X) = 1/|S| sum_{l in S} a^T ReLU( W_O sum_{s in S} W_V x_s softmax_s( (W_K x_s)^T W_Q x_l ) )

S: the tokens kept by sparsification (all by default). Weights: W_Q, W_K, W_V [E, d, d], W_O [E, m, d], a [E, m]
(fixed, +-1/sqrt(m), the same a_(l) = a for every token l [D]). Probes: attn [E, B, L, L] (query l, key s), F.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.vit.config import ViTConfig
from theorylab.studies.vit.data import IRRELEVANT, RELEVANT, SPURIOUS, Batch

TRAINABLE = ["W_Q", "W_K", "W_V", "W_O"]  # a is fixed at init [M]


def init_params(cfgs: Sequence[ViTConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    """W_V = I + sigma G / sqrt(d), W_K = W_Q = I + delta G / sqrt(d) (a "pre-trained" start within sigma, delta of
    orthonormal embeddings), W_O ~ N(0, 1/d), a uniform on {+-1/sqrt(m)} [D]."""
    E, d, m = len(cfgs), cfgs[0].dim, shared_value(cfgs, "m")
    eye = torch.eye(d, device=device).expand(E, d, d)
    sigma = scalar_tensor(cfgs, "sigma", device)[:, None, None]
    delta = scalar_tensor(cfgs, "delta", device)[:, None, None]
    G = lambda k: rng.normal((d, d), "init", k).to(device) / math.sqrt(d)  # noqa: E731
    return {"W_Q": eye + delta * G("W_Q"), "W_K": eye + delta * G("W_K"), "W_V": eye + sigma * G("W_V"),
            "W_O": rng.normal((m, d), "init", "W_O").to(device) / math.sqrt(d),
            "a": rng.sign((m,), "init", "a").to(device) / math.sqrt(m)}


def attention(params: dict[str, torch.Tensor], X: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """[E, B, L, d] -> attention [E, B, L(query l), L(key s)], softmax over the kept keys s."""
    q = torch.einsum("eij,eblj->ebli", params["W_Q"], X)  # W_Q x_l                          [E, B, L, d]
    k = torch.einsum("eij,ebsj->ebsi", params["W_K"], X)  # W_K x_s                          [E, B, L, d]
    scores = torch.einsum("ebli,ebsi->ebls", q, k)  # (W_K x_s)^T W_Q x_l, eq. (1)            [E, B, L, L]
    if keep is not None:
        scores = scores.masked_fill(~keep[:, :, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1)


def forward(params: dict[str, torch.Tensor], X: torch.Tensor, keep: torch.Tensor | None = None, probes: bool = False):
    """X [E, B, L, d], keep [E, B, L] bool (None: every token) -> F [E, B] (and probes)."""
    attn = attention(params, X, keep)  # [E, B, L, L]
    v = torch.einsum("eij,ebsj->ebsi", params["W_V"], X)  # W_V x_s                           [E, B, L, d]
    mixed = torch.einsum("ebls,ebsi->ebli", attn, v)  # sum_s W_V x_s attn_{s,l}               [E, B, L, d]
    pre = torch.einsum("emi,ebli->eblm", params["W_O"], mixed)  # W_O (...)                   [E, B, L, m]
    out = torch.einsum("eblm,em->ebl", torch.relu(pre), params["a"])  # a^T ReLU(...)        [E, B, L]
    if keep is None:
        F = out.mean(-1)  # 1/|S| sum_{l in S}, eq. (1)                                        [E, B]
    else:
        w = keep.to(out.dtype)
        F = (out * w).sum(-1) / w.sum(-1).clamp_min(1)
    if not probes:
        return F
    return F, {"attn": attn, "F": F}


# The speed path (training step). The profile of the plain forward + backward at the bench config (m = 200, E = 64,
# 1 thread) put two thirds of the step in the W_O layer, the ReLU and the read-out: the read-out a^T ReLU(.) run as a
# 1-wide matrix-vector bmm (10x slower on CPU than the same product with the [., m] operand on the right), the
# outer product g a^T of its backward (a bmm with inner size 1), the ReLU and its backward (two passes each over the
# step's largest tensor [E, B L, m]) and about forty autograd nodes. `Layer` is the same function with its gradient
# written out: W_Q^T W_K and W_O W_V merged (one [d, d] and one [m, d] product per model, which removes two
# [B L, d] x [d, d] products forward and four backward), the read-out as a row vector times the hidden layer, and
# no [., m] tensor formed in the backward but the ReLU mask (made in place from the saved hidden layer). It rounds
# differently from `forward` (merged products): tested equal within 1e-5 relative, forward, gradient, training.


def _token_weights(keep: torch.Tensor | None, L: int, dtype) -> torch.Tensor | float:
    """dF/d(read-out of token l): 1/L, or keep / |S| per example (eq. (1)'s 1/|S| sum over kept tokens)."""
    if keep is None:
        return 1.0 / L
    w = keep.to(dtype)
    return w / w.sum(-1, keepdim=True).clamp_min(1)


class Layer(torch.autograd.Function):
    """F [E, B] of eq. (1) (as `forward`) with one autograd node; inputs W_Q, W_K, W_V, W_O, a, X, keep."""

    @staticmethod
    def forward(ctx, W_Q, W_K, W_V, W_O, a, X, keep):
        E, B, L, d = X.shape
        Xf, Xb = X.reshape(E, B * L, d), X.reshape(E * B, L, d)
        M_QK, M_OV = torch.bmm(W_Q.mT, W_K), torch.bmm(W_O, W_V)  # [E, d, d], [E, m, d]
        scores = torch.bmm(torch.bmm(Xf, M_QK).reshape(E * B, L, d), Xb.mT)  # x_l^T W_Q^T W_K x_s  [E B, L, L]
        if keep is not None:
            scores.masked_fill_(~keep.reshape(E * B, 1, L), float("-inf"))
        attn = torch.softmax(scores, dim=-1)  # query l, key s                                    [E B, L, L]
        Z = torch.bmm(attn, Xb).reshape(E, B * L, d)  # sum_s x_s attn(l, s)                        [E, B L, d]
        act = torch.bmm(Z, M_OV.mT).relu_()  # ReLU(W_O W_V (.))                                  [E, B L, m]
        out = torch.bmm(a[:, None, :], act.mT).reshape(E, B, L)  # a^T ReLU(.) per token          [E, B, L]
        if keep is None:
            F = out.mean(-1)
        else:
            w = keep.to(out.dtype)
            F = (out * w).sum(-1) / w.sum(-1).clamp_min(1)
        ctx.save_for_backward(W_Q, W_K, W_V, W_O, a, X, keep, M_OV, attn, Z, act)
        return F

    @staticmethod
    def backward(ctx, gF):  # gF [E, B] = dLoss/dF
        W_Q, W_K, W_V, W_O, a, X, keep, M_OV, attn, Z, act = ctx.saved_tensors
        E, B, L, d = X.shape
        Xf, Xb = X.reshape(E, B * L, d), X.reshape(E * B, L, d)
        w = _token_weights(keep, L, X.dtype)
        g_tok = (gF[:, :, None] * w).expand(E, B, L).reshape(E, B * L, 1)  # dLoss/d(a^T ReLU) per token  [E, B L, 1]
        g_a = torch.bmm(g_tok.mT, act).squeeze(1) if ctx.needs_input_grad[4] else None  # [E, m]
        # dLoss/dpre = g_tok[t] a[i] 1[pre > 0]: a masked outer product never formed; both products take the mask,
        # made in place from the saved hidden layer (not read after this)
        mask = act.sign_()  # [E, B L, m]
        # sum_t dpre[t, i] Z[t], as (Z^T mask)^T: MKL runs this layout ~1.3x faster than mask^T Z      [E, m, d]
        g_M_OV = a[:, :, None] * torch.bmm((g_tok * Z).mT, mask).mT
        g_Z = (g_tok * torch.bmm(mask, a[:, :, None] * M_OV)).reshape(E * B, L, d)  # dpre M_OV     [E B, L, d]
        g_S = torch._softmax_backward_data(torch.bmm(g_Z, Xb.mT), attn, -1, attn.dtype)  # [E B, L, L]
        g_M_QK = torch.bmm(Xf.mT, torch.bmm(g_S, Xb).reshape(E, B * L, d))  # [E, d, d]
        # M_QK = W_Q^T W_K, M_OV = W_O W_V
        return (torch.bmm(W_K, g_M_QK.mT), torch.bmm(W_Q, g_M_QK), torch.bmm(W_O.mT, g_M_OV),
                torch.bmm(g_M_OV, W_V.mT), g_a, None, None)


def forward_fast(params: dict[str, torch.Tensor], X: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """forward(params, X, keep) (no probes) through `Layer` (the training step's path; tested equal to forward)."""
    return Layer.apply(params["W_Q"], params["W_K"], params["W_V"], params["W_O"], params["a"], X, keep)


def keep_mask(params: dict[str, torch.Tensor], batch: Batch, cfgs: Sequence[ViTConfig], rng: EnsembleRNG,
              *stream) -> torch.Tensor | None:
    """keep [E, B, L]: the config's sparsification drops round(drop_frac L) tokens per example, lowest score first
    (ties broken at random). None when nothing is dropped."""
    how = shared_value(cfgs, "sparsify")
    if how == "none":
        return None
    E, B, L = batch.role.shape
    dev = batch.X.device
    jitter = rng.uniform((B, L), *stream, "sparsify").to(dev)  # in [0, 1): random order inside a score level
    if how == "irrelevant":  # oracle: irrelevant tokens first
        score = (batch.role != IRRELEVANT).float() * 2 + jitter
    elif how == "noisy":  # oracle: the large-noise tokens first
        score = (~batch.noisy).float() * 2 + jitter
    elif how == "spurious":  # oracle: the spurious-correlation tokens first
        score = (batch.role != SPURIOUS).float() * 2 + jitter
    elif how == "random":  # the control: random, except one relevant token per example is never dropped (without
        # it some examples lose every relevant token, ~5% at alpha_* = 0.1, L = 40, half dropped, and zero test
        # error is impossible: the control could never pass)
        rel = batch.role == RELEVANT
        first = torch.where(rel, jitter, -1.0).argmax(-1, keepdim=True)
        protect = torch.zeros_like(rel).scatter_(-1, first, True) & rel
        score = jitter + 2 * protect.float()
    elif how == "norm":  # the largest-norm tokens first (large noise inflates the norm)
        score = -batch.X.norm(dim=-1)
    elif how == "attention":  # the tokens that receive the least attention first (current model, not differentiated)
        with torch.no_grad():
            score = attention(params, batch.X, None).sum(2)  # [E, B, L] attention received by key s
    else:
        raise ValueError(f"field 'sparsify': unknown method {how!r}")
    n_drop = torch.tensor([round(c.drop_frac * L) for c in cfgs], device=dev)[:, None, None]
    rank = score.argsort(-1).argsort(-1)
    return rank >= n_drop


def forward_reference(params: dict[str, torch.Tensor], X: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (1) one model, one example and one query token at a time (for tests)."""
    E, B, L, _ = X.shape
    out = torch.empty(E, B, dtype=X.dtype)
    for e in range(E):
        WQ, WK, WV, WO, a = (params[k][e] for k in ("W_Q", "W_K", "W_V", "W_O", "a"))
        for b in range(B):
            S = [l for l in range(L) if keep is None or bool(keep[e, b, l])]
            total = 0.0
            for l in S:
                s = torch.stack([(WK @ X[e, b, j]) @ (WQ @ X[e, b, l]) for j in S])
                w = torch.softmax(s, 0)
                h = sum(WV @ X[e, b, j] * w[i] for i, j in enumerate(S))
                total = total + a @ torch.relu(WO @ h)
            out[e, b] = total / len(S)
    return out


def check_forward(cfgs: Sequence[ViTConfig], params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on a few test examples, with the config's sparsification."""
    from theorylab.core.ensemble import rng_for
    from theorylab.studies.vit.data import test_batch

    rng = rng_for(cfgs, device)
    batch = test_batch(cfgs, rng, 0, 3, "check")
    keep = keep_mask(params, batch, cfgs, rng, "check")
    return float((forward(params, batch.X, keep) - forward_reference(params, batch.X, keep)).abs().max())
