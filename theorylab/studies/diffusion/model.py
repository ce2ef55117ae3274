"""The one-layer softmax-attention denoiser of section 4.4, one parameter set per noise level of t_grid:

    eps_hat(X_t)_n = a_t x_{t,n} + W_V,t sum_m softmax_m(x_{t,m}^T W_t x_{t,n}) x_{t,m}

Weights W, V [E, G, d, d], a [E, G] (G = len(t_grid)); init W = 0 (uniform attention = the global token mean),
V = 0, a = 0 (spec 4.4). Inputs X_t [E, G, B, N, d].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import shared_value


def trainable(cfgs: Sequence) -> list[str]:
    return ["V", "a"] if shared_value(cfgs, "freeze_attention") else ["W", "V", "a"]


def init_params(cfgs: Sequence, device) -> dict[str, torch.Tensor]:
    E, G, d = len(cfgs), len(shared_value(cfgs, "t_grid")), shared_value(cfgs, "d")
    z = torch.zeros(E, G, d, d, device=device)
    return {"W": z.clone(), "V": z.clone(), "a": torch.zeros(E, G, device=device)}


def forward(params: dict[str, torch.Tensor], X: torch.Tensor, probes: bool = False):
    """X [E, G, B, N, d] -> eps_hat [E, G, B, N, d]; with probes also the attention A [E, G, B, N(n), N(m)]."""
    W, V, a = params["W"], params["V"], params["a"]
    E, G, B, N, d = X.shape
    XW = torch.einsum("egbnd,egdf->egbnf", X, W.transpose(-1, -2))  # (W x_n)^T for every query n [E, G, B, N, d]
    S = XW @ X.transpose(-1, -2)  # S[n, m] = x_m^T W x_n                                        [E, G, B, N, N]
    A = torch.softmax(S, dim=-1)  # softmax over the keys m, one row per query n                  [E, G, B, N, N]
    Z = A @ X  # sum_m softmax_m(.) x_m                                                           [E, G, B, N, d]
    out = a[:, :, None, None, None] * X + torch.einsum("egbnd,egfd->egbnf", Z, V)  # a x_n + W_V z_n (section 4.4)
    return (out, A) if probes else out


def forward_reference(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Section 4.4's formula, one model, noise level, data point and token at a time (for tests)."""
    E, G, B, N, d = X.shape
    out = torch.empty_like(X)
    for e in range(E):
        for g in range(G):
            W, V, a = params["W"][e, g], params["V"][e, g], params["a"][e, g]
            for b in range(B):
                x = X[e, g, b]
                for n in range(N):
                    w = torch.softmax(torch.stack([x[m] @ W @ x[n] for m in range(N)]), 0)
                    out[e, g, b, n] = a * x[n] + V @ sum(w[m] * x[m] for m in range(N))
    return out


def check_forward(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on 2 data points per noise level, trained weights (conformance)."""
    from theorylab.studies.diffusion.data import sample

    X = sample(cfgs, 2, "check", device=device).xt
    return float((forward(params, X) - forward_reference(params, X)).abs().max())
