"""The one-layer Transformer of eq. (7), ensemble-first.

    f(X; Psi) = (1/P) sum_l a^T ReLU( sum_s V x_s softmax_l(x_s^T W x_l) ),   Psi = (W, V); a fixed

Weights W [*, E, d, d], V [*, E, m, d], a [*, E, m]: a leading model axis E, and optionally more leading
axes (e.g. a lambda grid [G, E, ...]) that broadcast against one data batch X [E, B, P, d].
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.task_vectors.config import TaskVectorConfig

TRAINABLE = ["W", "V"]  # a is fixed (section 1.2)


def readout(cfgs: Sequence[TaskVectorConfig], device) -> torch.Tensor:
    """[E, m]: a_i = +s for i < m/2, -s otherwise; s = 1/m or 1/sqrt(m)."""
    m = shared_value(cfgs, "m")
    s = 1.0 / m if shared_value(cfgs, "a_scale") == "1/m" else 1.0 / math.sqrt(m)
    a = torch.full((m,), s, device=device)
    a[m // 2 :] *= -1
    return a.expand(len(cfgs), m).clone()


def init_params(cfgs: Sequence[TaskVectorConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    """Random Psi0 (option A): W ~ w_init N(0, 1), V ~ v_init N(0, 1)."""
    d, m = shared_value(cfgs, "d"), shared_value(cfgs, "m")
    w0 = scalar_tensor(cfgs, "w_init", device)[:, None, None]
    v0 = scalar_tensor(cfgs, "v_init", device)[:, None, None]
    return {"W": w0 * rng.normal((d, d), "init", "W").to(device),
            "V": v0 * rng.normal((m, d), "init", "V").to(device),
            "a": readout(cfgs, device)}


def forward(params: dict[str, torch.Tensor], X: torch.Tensor, probes: bool = False):
    """X [E, B, P, d] -> f [*, E, B] (eq. 7); with probes also the attention [*, E, B, P(s), P(l)]."""
    W, V, a = params["W"], params["V"], params["a"]
    E, B, P, d = X.shape
    lead = W.shape[:-3]
    XW = (X.reshape(E, B * P, d) @ W).reshape(*lead, E, B, P, d)  # x_s^T W                  [*, E, B, P, d]
    S = XW @ X.transpose(-1, -2)  # S[s, l] = x_s^T W x_l                                      [*, E, B, P, P]
    A = torch.softmax(S, dim=-2)  # softmax_l over s, one column per query l                   [*, E, B, P, P]
    Z = A.transpose(-1, -2) @ X  # sum_s x_s softmax_l(.)                                      [*, E, B, P, d]
    H = torch.relu(Z.reshape(*lead, E, B * P, d) @ V.transpose(-1, -2))  # ReLU(V z_l)          [*, E, B*P, m]
    f = (H @ a[..., None]).reshape(*lead, E, B, P).sum(-1) / P  # (1/P) sum_l a^T ReLU(.), eq. (7)  [*, E, B]
    return (f, A) if probes else f


def forward_reference(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Eq. (7) one model and one sequence at a time, written as the paper writes it (for tests)."""
    E, B, P, _ = X.shape
    out = torch.empty(E, B, dtype=X.dtype)
    for e in range(E):
        W, V, a = params["W"][e], params["V"][e], params["a"][e]
        for b in range(B):
            x = X[e, b]
            total = 0.0
            for l in range(P):
                att = torch.softmax(torch.stack([x[s] @ W @ x[l] for s in range(P)]), 0)
                h = sum(V @ x[s] * att[s] for s in range(P))
                total = total + a @ torch.relu(h)
            out[e, b] = total / P
    return out


def check_forward(cfgs: Sequence[TaskVectorConfig], params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on 3 sequences of T1 per model, for the fine-tuned Psi*_T1 (conformance)."""
    from theorylab.core.ensemble import rng_for
    from theorylab.studies.task_vectors.data import sample, task_pattern

    p = {"W": params["W_T1"], "V": params["V_T1"], "a": params["a"]}
    X = sample(cfgs, task_pattern(cfgs, "T1", device), rng_for(cfgs, device), 3, "check").X
    return float((forward(p, X) - forward_reference(p, X).to(X.device)).abs().max())


MERGE_BLOCK_ELEMENTS = 1 << 17  # floats of the largest activation per block of forward_merged (a few hundred kB)


def forward_merged(parts: Sequence[dict[str, torch.Tensor]], coefs: torch.Tensor, a: torch.Tensor, X: torch.Tensor,
                   block_elements: int = MERGE_BLOCK_ELEMENTS) -> torch.Tensor:
    """f [G, E, B] of every merge W = sum_k c_k W_k, V = sum_k c_k V_k (eq. 6 with parts = [Psi0, dPsi_1, ...] and
    c = [1, coefs[g]]) on X [E, B, P, d]; equal to forward(merged weights, X) up to rounding (tested).

    Why it is faster: the scores x_s^T W x_l are linear in W, so each part's scores are formed once per block of
    sequences and every merge only combines them (K P^2 per sequence instead of P d^2 + P^2 d); V is merged before
    use (it is [m, d], nothing to save). Blocks of sequences x merges keep every activation small: the plain path's
    [E, n, P, m] activations (26 MB at the full size) are slowed by fresh pages on every allocation."""
    E, B, P, d = X.shape
    G, K = coefs.shape[0], len(parts)
    c = torch.cat([torch.ones(G, 1, dtype=coefs.dtype), coefs.cpu()], 1).to(X.device, X.dtype)  # [G, K]
    Ws = torch.stack([p["W"] for p in parts])  # [K, E, d, d]
    Vm = torch.tensordot(c, torch.stack([p["V"] for p in parts]), 1).transpose(-1, -2)  # merged V^T [G, E, d, m]
    m = Vm.shape[-1]
    a_row = a.reshape(1, E, 1, m)
    per_seq = E * P * max(P, m)  # floats of one merge on one sequence
    nb = max(1, min(B, block_elements // per_seq))  # sequences per block
    gc = max(1, min(G, block_elements // (per_seq * nb)))  # merges per block
    f = X.new_empty(G, E, B)
    for i in range(0, B, nb):
        x = X[:, i:i + nb]  # [E, b, P, d]
        b = x.shape[1]
        S = (x.reshape(1, E, b * P, d) @ Ws).reshape(K, E, b, P, d) @ x.transpose(-1, -2)  # x_s^T W_k x_l [K,E,b,s,l]
        # s outermost (once per block): the softmax over s then runs along long contiguous rows (~6x faster than
        # torch's softmax over a short axis) and the attention enters the next matmul as a strided view
        S = S.permute(0, 1, 3, 2, 4).reshape(K, -1)  # [K, E*s*b*l]
        for j in range(0, G, gc):
            g = slice(j, min(j + gc, G))
            n = g.stop - g.start
            A = torch.softmax((c[g] @ S).reshape(n, E, P, b * P), dim=2).reshape(n, E, P, b, P)  # [n, E, s, b, l]
            Z = A.permute(0, 1, 3, 4, 2) @ x  # z_l = sum_s x_s softmax_l(.)                          [n, E, b, l, d]
            H = torch.relu_(Z.reshape(n, E, b * P, d) @ Vm[g])  # ReLU(V z_l)                           [n, E, b*P, m]
            f[g, :, i:i + b] = (H.reshape(n, E, b, P, m).sum(-2) * a_row).sum(-1) / P  # (1/P) sum_l a^T ReLU(.)
    return f
