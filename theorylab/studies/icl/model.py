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
from theorylab.studies.icl.eq1_fast import Eq1, eq1_layers

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


def forward(params: dict[str, torch.Tensor], C: torch.Tensor, Q: torch.Tensor, attend_query: bool = False,
            probes: bool = False):
    """C [E, B, L, D] contexts, Q [E, B, D] query -> F [E, B] (and a dict of named probes). Computes eq. (1)
    through the speed path (eq1_fast), which equals forward_equation below."""
    if attend_query:
        C = torch.cat([C, Q[:, :, None, :]], dim=2)
    weights = [params[k] for k in ("W_Q", "W_K", "W_V", "W_O", "a")]
    if not probes:
        return Eq1.apply(*weights, C, Q)
    t = eq1_layers(*weights, C, Q, probes=True)
    E, B, L, _ = C.shape
    return t["F"], {"attn": t["attn"].reshape(E, B, L), "query_proj": t["u"], "hidden": t["hidden"],
                    "preact": t["preact"], "F": t["F"]}


def forward_equation(params: dict[str, torch.Tensor], C: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Eq. (1) as plain einsums, differentiated by autograd: the equation-level version the speed path is tested
    against."""
    u = torch.einsum("eij,ebj->ebi", params["W_Q"], Q)  # W_Q p_query
    w = torch.einsum("eij,ebi->ebj", params["W_K"], u)  # W_K^T W_Q p_query
    attn = torch.softmax(torch.einsum("ebld,ebd->ebl", C, w), dim=-1)  # softmax_i (W_K p_i)^T W_Q p_query, eq. (1)
    hidden = torch.einsum("evd,ebd->ebv", params["W_V"], torch.einsum("ebl,ebld->ebd", attn, C))  # sum_i W_V p_i attn_i
    preact = torch.einsum("emv,ebv->ebm", params["W_O"], hidden)  # W_O (...)
    return torch.einsum("ebm,em->eb", torch.relu(preact), params["a"])  # a^T ReLU(...), eq. (1)


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
