"""The one-layer softmax-attention denoiser of section 4.4, one parameter set per noise level of t_grid:

    eps_hat(X_t)_n = a_t x_{t,n} + W_V,t sum_m softmax_m(x_{t,m}^T W_t x_{t,n}) x_{t,m}

Weights W, V [E, G, d, d], a [E, G] (G = len(t_grid)); init W = 0 (uniform attention = the global token mean),
V = 0, a = 0 (spec 4.4). Inputs X_t [E, G, B, N, d].

The W = 0 control (freeze_attention) keeps W at its zero init, where every score is 0 and the softmax is 1/N: its
output is a_t x_n + W_V (token mean), computed as such by `forward_uniform` in O(N d) instead of O(N^2 d).
`denoise` picks it for a frozen ensemble whose W is zero, `forward` otherwise.
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


def forward_uniform(params: dict[str, torch.Tensor], X: torch.Tensor, probes: bool = False):
    """forward(params, X, probes) at W = 0: uniform attention, so z_n = (1/N) sum_m x_m for every query n (equal to
    forward to rounding, tests/studies/diffusion/test_diffusion_speed.py). The probe A is the uniform map."""
    V, a = params["V"], params["a"]
    E, G, B, N, d = X.shape
    Z = X.mean(-2, keepdim=True)  # the global token mean                                  [E, G, B, 1, d]
    out = a[:, :, None, None, None] * X + torch.einsum("egbnd,egfd->egbnf", Z, V)  # a x_n + W_V z (section 4.4)
    return (out, torch.full((1,), 1.0 / N, dtype=X.dtype, device=X.device).expand(E, G, B, N, N)) if probes else out


def denoise(cfgs: Sequence, params: dict[str, torch.Tensor], X: torch.Tensor, probes: bool = False):
    """The denoiser of these configs: forward_uniform for the W = 0 control (W frozen and zero), else forward."""
    uniform = shared_value(cfgs, "freeze_attention") and not bool(params["W"].any())
    return (forward_uniform if uniform else forward)(params, X, probes)


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
