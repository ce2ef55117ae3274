"""The Q-network Q(s, .; omega) = W2^T ReLU(W1^T phi(s) + b1) + b2, one output per action, ensemble-first.

omega = (W1 [E, d, m], b1 [E, m], W2 [E, m, A], b2 [E, A]) (core.nn names "fc1", "fc2"); phi [E, S, d].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.nn import init_linear, linear
from theorylab.core.rng import EnsembleRNG

TRAINABLE = ["fc1.w", "fc1.b", "fc2.w", "fc2.b"]


def init_params(rng: EnsembleRNG, d: int, m: int, A: int) -> dict[str, torch.Tensor]:
    return {**init_linear(rng, "fc1", d, m), **init_linear(rng, "fc2", m, A)}


def q_values(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x [E, B, d] -> Q [E, B, A]."""
    h = torch.relu(linear(x, p, "fc1", data_dims=1))  # ReLU(W1^T phi + b1)                    [E, B, m]
    return linear(h, p, "fc2", data_dims=1)  # W2^T h + b2                                       [E, B, A]


def q_table(p: dict[str, torch.Tensor], phi: torch.Tensor) -> torch.Tensor:
    """Q(s, a) for every state: [E, S, A]."""
    return q_values(p, phi)


def q_reference(p: dict[str, torch.Tensor], phi: torch.Tensor) -> torch.Tensor:
    """Q one model, one state, one action at a time (for tests)."""
    E, S, _ = phi.shape
    A = p["fc2.w"].shape[-1]
    out = torch.empty(E, S, A, dtype=phi.dtype)
    for e in range(E):
        for s in range(S):
            h = torch.relu(phi[e, s] @ p["fc1.w"][e] + p["fc1.b"][e])
            for a in range(A):
                out[e, s, a] = h @ p["fc2.w"][e][:, a] + p["fc2.b"][e][a]
    return out


def check_forward(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> float:
    """max |q_table - q_reference| on the trained weights (conformance)."""
    from theorylab.core.ensemble import rng_for
    from theorylab.studies.dqn.mdp import features

    phi = features(cfgs, rng_for(cfgs, device), device)
    p = {k: params[k] for k in TRAINABLE}
    return float((q_table(p, phi) - q_reference(p, phi).to(phi.device)).abs().max())
