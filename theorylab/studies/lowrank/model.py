"""The one-layer Transformer of section 3.2, ensemble-first.

    F(X) = (1/L) sum_l a^T ReLU( W_O W_V X softmax_s( x_s^T W_K^T W_Q x_l ) )

Each token l attends over all tokens s; outputs are pooled over l; a is fixed at +-1/m. Weights carry a
leading model axis: W_Q, W_K, W_V [E, d, d], W_O [E, m, d], a [E, m]. With lora_rank r the trained
parameters are A_* [E, r, d] and B_* [E, d, r] and W_* = W_*^(0) + B_* A_* (W_O is trained fully).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.lowrank.config import LowRankConfig

ATTENTION = ("W_Q", "W_K", "W_V")


def trainable(lora_rank: int) -> list[str]:
    if lora_rank == 0:
        return [*ATTENTION, "W_O"]
    return [f"{p}_{w}" for w in ATTENTION for p in ("A", "B")] + ["W_O"]


def init_params(cfgs: Sequence[LowRankConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    """Scaled identities for W_Q, W_K, W_V, Gaussian W_O, balanced fixed read-out a (section 3.2)."""
    E, d, m = len(cfgs), shared_value(cfgs, "d"), shared_value(cfgs, "m")
    eye = torch.eye(d, device=device).expand(E, d, d)
    delta = scalar_tensor(cfgs, "delta", device)[:, None, None]
    xi = torch.tensor([c.xi_value for c in cfgs], device=device)[:, None, None]
    a = torch.full((m,), 1.0 / m, device=device)
    a[m // 2 :] *= -1
    return {"W_Q": delta * eye, "W_K": delta * eye,
            "W_V": scalar_tensor(cfgs, "v_init", device)[:, None, None] * eye,
            "W_O": xi * rng.normal((m, d), "init", "W_O").to(device), "a": a.expand(E, m).clone()}


def init_lora(cfgs: Sequence[LowRankConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    """LoRA factors: A ~ N(0, 1/d) [E, r, d], B = 0 [E, d, r], so training starts at W^(0)."""
    d, r = shared_value(cfgs, "d"), shared_value(cfgs, "lora_rank")
    out = {}
    for w in ATTENTION:
        out[f"A_{w}"] = rng.normal((r, d), "init", f"A_{w}").to(device) / d**0.5
        out[f"B_{w}"] = torch.zeros(len(cfgs), d, r, device=device)
    return out


def compose(params: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Full weights from LoRA factors: W = W^(0) + B A (params without factors pass through)."""
    if "A_W_Q" not in params:
        return params
    out = {"W_O": params["W_O"], "a": params["a"]}
    for w in ATTENTION:
        out[w] = init[w] + params[f"B_{w}"] @ params[f"A_{w}"]
    return out


def forward(params: dict[str, torch.Tensor], X: torch.Tensor, probes: bool = False):
    """X [E, B, L, d] -> F [E, B] (section 3.2); with probes also the attention [E, B, L(l), L(s)] and the
    MLP pre-activations [E, B, L, m]."""
    Q = X @ params["W_Q"].transpose(-1, -2)[:, None]  # W_Q x_l                            [E, B, L, d]
    K = X @ params["W_K"].transpose(-1, -2)[:, None]  # W_K x_s                            [E, B, L, d]
    attn = torch.softmax(Q @ K.transpose(-1, -2), dim=-1)  # softmax_s(x_s^T W_K^T W_Q x_l)  [E, B, L, L]
    Z = attn @ X  # X softmax_s(.) for each query l                                         [E, B, L, d]
    H = Z @ params["W_V"].transpose(-1, -2)[:, None]  # W_V (.)                             [E, B, L, d]
    pre = H @ params["W_O"].transpose(-1, -2)[:, None]  # W_O W_V (.)                       [E, B, L, m]
    F = (torch.relu(pre) @ params["a"][:, None, :, None]).squeeze(-1).mean(-1)  # (1/L) sum_l a^T ReLU(.)  [E, B]
    return (F, {"attn": attn, "pre": pre}) if probes else F


def forward_fast(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """forward(params, X) (no probes) through OneLayer, one autograd node (the speed path; forward is the plain one it
    is tested equal to)."""
    return OneLayer.apply(params["W_Q"], params["W_K"], params["W_V"], params["W_O"], params["a"], X)


def one_layer(W_Q, W_K, W_V, W_O, a, X) -> dict[str, torch.Tensor]:
    """Section 3.2's forward with every weight product one GEMM per model over all B L tokens, and every
    intermediate the gradient reads. forward's X @ W[:, None] broadcasts each model's weight over the batch, which
    torch runs as E B tiny products on an expanded copy of W (and its backward sums that copy back). The weights
    enter through M_QK = W_Q^T W_K and M_OV = W_O W_V (one [d, d] and one [m, d] product per model), so the
    scores are (X M_QK) X^T and the pre-activations Z M_OV^T: two [B L, d] x [d, d] GEMMs fewer forward and four
    fewer backward (about a fifth of the step's FLOPs). The read-out a^T ReLU(.) is a row sum, not a matrix-vector
    product (a 1-wide GEMM output). OneLayer.backward forms no [E, B L, m] temporary but the ReLU mask."""
    E, B, L, d = X.shape
    Xf, Xb = X.reshape(E, B * L, d), X.reshape(E * B, L, d)
    M_QK, M_OV = torch.bmm(W_Q.mT, W_K), torch.bmm(W_O, W_V)  # [E, d, d], [E, m, d]
    U = torch.bmm(Xf, M_QK).reshape(E * B, L, d)  # x_l^T W_Q^T W_K                                [E B, L, d]
    attn = torch.softmax(torch.bmm(U, Xb.mT), dim=-1)  # softmax_s(x_s^T W_K^T W_Q x_l)             [E B, L, L]
    Z = torch.bmm(attn, Xb).reshape(E, B * L, d)  # X softmax_s(.)                                  [E, B L, d]
    act = torch.bmm(Z, M_OV.mT).relu_()  # ReLU(W_O W_V (.))                                      [E, B L, m]
    F = (act * a[:, None, :]).sum(-1).reshape(E, B, L).mean(-1)  # (1/L) sum_l a^T ReLU(.)         [E, B]
    return {"M_OV": M_OV, "attn": attn, "Z": Z, "act": act, "F": F}


class OneLayer(torch.autograd.Function):
    """one_layer's F with its gradient written out: one autograd node instead of about twenty."""

    @staticmethod
    def forward(ctx, W_Q, W_K, W_V, W_O, a, X):
        t = one_layer(W_Q, W_K, W_V, W_O, a, X)
        ctx.save_for_backward(W_Q, W_K, W_V, W_O, a, X, t["M_OV"], t["attn"], t["Z"], t["act"])
        return t["F"]

    @staticmethod
    def backward(ctx, gF):  # gF [E, B] = dLoss/dF
        W_Q, W_K, W_V, W_O, a, X, M_OV, attn, Z, act = ctx.saved_tensors
        E, B, L, d = X.shape
        Xf, Xb = X.reshape(E, B * L, d), X.reshape(E * B, L, d)
        g_tok = (gF / L)[:, :, None].expand(E, B, L).reshape(E, B * L, 1)  # dLoss/d(a^T ReLU) per token
        g_a = (g_tok * act).sum(1) if ctx.needs_input_grad[4] else None  # [E, m]
        # through the ReLU: its derivative is mask = sign(act) (1 where the pre-activation is > 0, else 0), and the
        # gradient at the pre-activations g_tok[t] a[i] mask[t, i] is a masked outer product, never formed: both
        # GEMMs take the mask itself (the [E, B L, m] tensors are the step's largest; each pass over one costs
        # about as much as a GEMM on it)
        mask = torch.sign(act)  # [E, B L, m]
        g_M_OV = a[:, :, None] * torch.bmm(mask.mT, g_tok * Z)  # sum_t g_pre[t, i] Z[t]              [E, m, d]
        g_Z = (g_tok * torch.bmm(mask, a[:, :, None] * M_OV)).reshape(E * B, L, d)  # g_pre M_OV    [E B, L, d]
        g_attn = torch.bmm(g_Z, Xb.mT)  # [E B, L, L]
        g_S = attn * (g_attn - (attn * g_attn).sum(-1, keepdim=True))  # softmax's Jacobian            [E B, L, L]
        g_U = torch.bmm(g_S, Xb).reshape(E, B * L, d)  # [E, B L, d]
        g_M_QK = torch.bmm(Xf.mT, g_U)  # [E, d, d]
        # M_QK = W_Q^T W_K, M_OV = W_O W_V
        return (torch.bmm(W_K, g_M_QK.mT), torch.bmm(W_Q, g_M_QK), torch.bmm(W_O.mT, g_M_OV),
                torch.bmm(g_M_OV, W_V.mT), g_a, None)


def forward_reference(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Section 3.2 one model and one sample at a time, as written (for tests)."""
    E, B, L, _ = X.shape
    out = torch.empty(E, B, dtype=X.dtype)
    for e in range(E):
        WQ, WK, WV, WO, a = (params[k][e] for k in ("W_Q", "W_K", "W_V", "W_O", "a"))
        for b in range(B):
            x = X[e, b]
            total = 0.0
            for l in range(L):
                att = torch.softmax(torch.stack([x[s] @ WK.T @ WQ @ x[l] for s in range(L)]), 0)
                h = sum(WV @ x[s] * att[s] for s in range(L))
                total = total + a @ torch.relu(WO @ h)
            out[e, b] = total / L
    return out


def check_forward(cfgs: Sequence[LowRankConfig], params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on 3 samples per model (the conformance test's forward check)."""
    from theorylab.core.ensemble import rng_for
    from theorylab.studies.lowrank.data import sample

    X = sample(cfgs, rng_for(cfgs, device), 3, "check").X
    p = {k: params[k] for k in (*ATTENTION, "W_O", "a")}
    return float((forward(p, X) - forward_reference(p, X).to(X.device)).abs().max())
