"""The selective SSM + MLP of section 3.2 (reconstruction, tagged [I] there), and a one-layer Transformer
baseline with the same MLP; ensemble-first.

SSM (arch = "ssm"), X = (x_1..x_L) [L, d]:
    z_l = w^T x_l                                                     the gating vector's score
    g_l = sigmoid(z_l)   (gain = "sigmoid")  or  Delta_l = softplus(z_l)   (gain = "softplus", the S6 form)
    h_l = (1 - g_l) h_{l-1} + g_l W_B x_l,  h_0 = 0                   (S6 form: exp(-Delta_l) h_{l-1} + Delta_l W_B x_l)
    read-out (config pool): last: F(X) = sum_i a_i ReLU(v_i^T W_C h_L);
                            mean: F(X) = (1/L) sum_l sum_i a_i ReLU(v_i^T W_C h_l)  (this group's (1/L) sum)
With the last state only, a sigmoid gate that opens on relevant tokens keeps mostly the last relevant token, so
majority voting stays at the last-token error (measured: 0.25-0.35 at alpha_r, alpha_c = 0.3, 0.1); the mean
read-out votes over positions and learns it. pool = auto takes mean for majority voting, last for locality.
The decay is the same in both forms: 1 - sigmoid(z) = exp(-softplus(z)). Unrolled,
    h_L = W_B sum_l c_l x_l,   c_l = gain_l prod_{k>l} decay_k = gain_l exp(-sum_{k>l} softplus(z_k)),
so the scan's last state is computed in parallel over l (a reversed cumulative sum in log space); the
sequential recurrence is `forward_reference`. At w = 0, c_l = (1/2)^(L-l+1): the (1/2)^dl factor of the bounds.
Trained: w and the rows v_i; W_B = W_B^(0), W_C = W_C^(0) and a are fixed (section 3.2 [R reviewers]).

Transformer (arch = "transformer"): x_l + p_l (learned positions, tf_pos), one single-head softmax attention layer
(core.nn.attention: qkv and output projections), then the same MLP on the last position's output (pool last)
or on every position's, averaged (pool mean).
Trained: attention, positions, v_i.

Weights: w [E, d], V [E, m, d], a [E, m], W_B, W_C [E, d, d]; transformer: attn.* (core.nn), pos [E, L, d].
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from theorylab.core import nn
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.mamba.config import MambaConfig

POS_STD = 0.1  # learned positions start at N(0, POS_STD^2) per entry [D]


def trainable(arch: str, train_gate: bool = True) -> list[str]:
    if arch == "ssm":
        return ["w", "V"] if train_gate else ["V"]
    return ["attn.qkv.w", "attn.qkv.b", "attn.proj.w", "attn.proj.b", "pos", "V"]


def init_params(cfgs: Sequence[MambaConfig], rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    E, d, m, L = len(cfgs), *(shared_value(cfgs, k) for k in ("d", "m", "L"))
    a = torch.full((m,), 1.0 / m if shared_value(cfgs, "a_scale") == "1/m" else 1.0 / math.sqrt(m), device=device)
    a[m // 2:] *= -1  # half +, half -
    v_init = scalar_tensor(cfgs, "v_init", device)[:, None, None]
    p = {"V": v_init * rng.normal((m, d), "init", "V").to(device) / math.sqrt(d),  # v_i ~ N(0, v_init^2/d)
         "a": a.expand(E, m).clone()}
    if shared_value(cfgs, "arch") == "ssm":
        w_init = scalar_tensor(cfgs, "w_init", device)[:, None]
        p["w"] = w_init * rng.normal((d,), "init", "w").to(device) / math.sqrt(d)  # w = 0: g_l = 1/2
        if shared_value(cfgs, "bc") == "identity":
            p["W_B"] = p["W_C"] = torch.eye(d, device=device).expand(E, d, d).clone()
        else:
            p["W_B"] = rng.normal((d, d), "init", "W_B").to(device) / math.sqrt(d)
            p["W_C"] = rng.normal((d, d), "init", "W_C").to(device) / math.sqrt(d)
        return p
    p.update({k: v.to(device) for k, v in nn.init_attention(rng, "attn", d, 1).items()})
    pos = POS_STD * rng.normal((L, d), "init", "pos").to(device)
    p["pos"] = pos if shared_value(cfgs, "tf_pos") == "learned" else torch.zeros_like(pos)
    return p


def gate_scores(w: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """z_l = w^T x_l [E, B, L], the gating vector's score of every token."""
    return torch.einsum("ebld,ed->ebl", X, w)


def scan_weights(w: torch.Tensor, X: torch.Tensor, gain: str, z: torch.Tensor | None = None) -> torch.Tensor:
    """c_l = gain_l prod_{k>l} decay_k [E, B, L], the weight of token l in the last state h_L (z: the scores
    gate_scores(w, X), when already computed)."""
    z = gate_scores(w, X) if z is None else z  # z_l = w^T x_l                                        [E, B, L]
    g = torch.sigmoid(z) if gain == "sigmoid" else F.softplus(z)  # g_l, or Delta_l (S6 form)
    log_decay = -F.softplus(z)  # log(1 - g_l) = -Delta_l                                           [E, B, L]
    after = log_decay.flip(-1).cumsum(-1).flip(-1) - log_decay  # sum_{k>l} log decay_k            [E, B, L]
    return g * torch.exp(after)


def all_scan_weights(w: torch.Tensor, X: torch.Tensor, gain: str, z: torch.Tensor | None = None) -> torch.Tensor:
    """C[l, j] = gain_j prod_{j<k<=l} decay_k for j <= l, else 0 [E, B, L, L]: h_l = W_B sum_j C[l, j] x_j (z as
    in scan_weights)."""
    z = gate_scores(w, X) if z is None else z  # z_l = w^T x_l                                        [E, B, L]
    g = torch.sigmoid(z) if gain == "sigmoid" else F.softplus(z)
    P = (-F.softplus(z)).cumsum(-1)  # sum_{k<=l} log decay_k                                        [E, B, L]
    L = X.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool, device=X.device).tril()  # j <= l
    log_c = torch.where(causal, P[..., :, None] - P[..., None, :], -math.inf)  # sum_{j<k<=l} log decay_k
    return g[..., None, :] * torch.exp(log_c)


def readout(p: dict[str, torch.Tensor], o: torch.Tensor, probes: dict | None = None) -> torch.Tensor:
    """F = sum_i a_i ReLU(v_i^T o): o [E, B, d] -> [E, B]; o [E, B, L, d] (every position) -> the mean over
    positions (1/L) sum_l sum_i a_i ReLU(v_i^T o_l)."""
    if o.dim() == 4:
        pre = torch.einsum("emd,ebld->eblm", p["V"], o)  # v_i^T o_l                                  [E, B, L, m]
        return torch.einsum("eblm,em->eb", torch.relu(pre), p["a"]) / o.shape[-2]
    pre = torch.einsum("emd,ebd->ebm", p["V"], o)  # v_i^T o                                            [E, B, m]
    if probes is not None:
        probes["preact"] = pre
    return torch.einsum("ebm,em->eb", torch.relu(pre), p["a"])


# The read-out's hidden layer [E, B, (L,) m] is the step's largest tensor (42 MB at E = 64 on the bench config):
# run over the whole ensemble at once, every pass over it (matmul, ReLU, its backward, the outer product of the
# upstream gradient with a) goes to main memory, and the ensemble ran slower than a loop over models (0.83x).
# The fused read-out below visits it in blocks of whole models that fit in cache, keeps no hidden layer between
# the forward and the backward (it recomputes the block's pre-activations, one small matmul), and builds the
# hidden layer's gradient in one pass. `readout` stays as the plain reference (tests: equal forward and gradient).
BLOCK_BYTES = 1 << 20  # a block's hidden layer: about one core's L2 cache


def _blocks(E: int, B: int, per_sequence: int) -> list[tuple[slice, slice]]:
    """(models, sequences) blocks whose hidden layer (per_sequence bytes a sequence) fits in BLOCK_BYTES: whole
    models while one fits, else one model at a time in runs of sequences (the full size's 21 MB a model)."""
    if B * per_sequence <= BLOCK_BYTES:
        size = BLOCK_BYTES // (B * per_sequence)
        return [(slice(s, min(E, s + size)), slice(None)) for s in range(0, E, size)]
    size = max(1, BLOCK_BYTES // per_sequence)
    return [(slice(e, e + 1), slice(s, min(B, s + size))) for e in range(E) for s in range(0, B, size)]


class _FusedReadout(torch.autograd.Function):
    """F = (1/L) sum_l sum_i a_i ReLU(v_i^T o_l) (o [E, B, L, d]) or sum_i a_i ReLU(v_i^T o) (o [E, B, d])."""

    @staticmethod
    def forward(ctx, V: torch.Tensor, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(V, o, a)
        out = o.new_empty(o.shape[:2])
        for se, sb in _blocks(*o.shape[:2], o[0, 0].numel() // o.shape[-1] * V.shape[1] * o.element_size()):
            out[se, sb] = readout({"V": V[se], "a": a[se]}, o[se, sb])
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        V, o, a = ctx.saved_tensors
        mean = o.dim() == 4
        scale = g / o.shape[-2] if mean else g  # dF/dpre = a_i 1[pre > 0] g (/ L)                       [E, B]
        gV = torch.zeros_like(V) if ctx.needs_input_grad[0] else None  # summed over a model's blocks
        go = torch.empty_like(o) if ctx.needs_input_grad[1] else None
        ga = torch.zeros_like(a) if ctx.needs_input_grad[2] else None
        for se, sb in _blocks(*o.shape[:2], o[0, 0].numel() // o.shape[-1] * V.shape[1] * o.element_size()):
            ob, Vb, ab, gb = o[se, sb], V[se], a[se], scale[se, sb]
            if mean:
                pre = torch.einsum("emd,ebld->eblm", Vb, ob)  # recomputed: cheaper than keeping it  [e, b, L, m]
                up = gb[:, :, None, None] * ab[:, None, None, :]  # [e, b, 1, m]
            else:
                pre = torch.einsum("emd,ebd->ebm", Vb, ob)  # [e, b, m]
                up = gb[:, :, None] * ab[:, None, :]  # [e, b, m]
            if ga is not None:
                per_row = gb.reshape(gb.shape + (1,) * (pre.dim() - 2))  # [e, b, (1,) 1]
                ga[se] += (torch.relu(pre) * per_row).flatten(1, -2).sum(1)  # sum over rows of ReLU(pre) g
            # the hidden layer's gradient 1[pre > 0] up, in place (torch.where with a broadcast operand is
            # several times slower on CPU than these three contiguous passes over a block held in cache)
            gpre = pre.clamp_(min=0).sign_().mul_(up)
            flat_g, flat_o = gpre.flatten(1, -2), ob.flatten(1, -2)  # [e, rows, m], [e, rows, d]
            if gV is not None:
                gV[se] += flat_g.transpose(1, 2) @ flat_o  # sum over rows of gpre_i o                 [e, m, d]
            if go is not None:
                go[se, sb] = (flat_g @ Vb).view_as(ob)  # sum_i gpre_i v_i                            [e, rows, d]
        return gV, go, ga


def fused_readout(p: dict[str, torch.Tensor], o: torch.Tensor) -> torch.Tensor:
    """`readout` without probes, through the cache-blocked fused form (same values; gradients equal to rounding)."""
    return _FusedReadout.apply(p["V"], o, p["a"])


def forward(p: dict[str, torch.Tensor], X: torch.Tensor, cfg: MambaConfig, probes: dict | None = None,
            fast: bool = True) -> torch.Tensor:
    """X [E, B, L, d] -> F [E, B]. probes (a dict): the SSM writes "c" (token weights in h_L) and "gate" (g_l);
    the transformer writes "attn.map" [E, B, 1, L, L]. fast (the default): W_C W_B folded into the rows v_i, and
    without probes the fused read-out; fast=False is the plain reference (tests: equal)."""
    if cfg.arch == "ssm":
        if probes is not None or cfg.readout == "last":  # the mean read-out reads every state, not these
            c = scan_weights(p["w"], X, cfg.gain)  # c_l                                                 [E, B, L]
        if probes is not None:
            probes["c"] = c
            probes["gate"] = torch.sigmoid(torch.einsum("ebld,ed->ebl", X, p["w"]))
        if cfg.readout == "last":
            u = torch.einsum("ebl,ebld->ebd", c, X)  # sum_l c_l x_l                                     [E, B, d]
        else:
            u = all_scan_weights(p["w"], X, cfg.gain) @ X  # every state: sum_j C[l, j] x_j             [E, B, L, d]
        if fast:  # v_i^T W_C W_B u: the frozen W_C W_B folded into the rows v_i ([E, m, d], not [E, B, L, d];
            # exact when they are the identity, the default)
            p = {**p, "V": p["V"] @ p["W_C"] @ p["W_B"]}
            o = u
        else:
            h = torch.einsum("eij,eb...j->eb...i", p["W_B"], u)  # h_L = W_B sum_l c_l x_l (or every h_l)
            o = torch.einsum("eij,eb...j->eb...i", p["W_C"], h)  # o = W_C h                            [E, B, (L,) d]
    else:
        x = X + p["pos"][:, None]  # x_l + p_l                                                        [E, B, L, d]
        o = nn.attention(x, p, "attn", heads=1, probes=probes)  # every position's output             [E, B, L, d]
        if cfg.readout == "last":
            o = o[..., -1, :]
    return readout(p, o, probes) if probes is not None or not fast else fused_readout(p, o)


def forward_probed(p: dict[str, torch.Tensor], X: torch.Tensor, cfg: MambaConfig) -> tuple[torch.Tensor, dict]:
    """F [E, B] and the probes of forward(p, X, cfg, probes) (SSM: "c", "gate"; transformer: "attn.map") from one
    pass: the scores z_l once, and the fused read-out (forward with probes runs the plain one, whose hidden layer
    [E, B, L, m] goes to memory). For the probes along training; equal to forward(p, X, cfg) and
    forward(p, X, cfg, probes) (tests/studies/mamba/test_mamba_probes.py). No "preact": no probe reads it."""
    probes: dict = {}
    if cfg.arch == "ssm":
        z = gate_scores(p["w"], X)  # z_l = w^T x_l, shared by the gate, the last-state weights and the scan [E, B, L]
        probes["c"] = c = scan_weights(p["w"], X, cfg.gain, z)  # c_l                                   [E, B, L]
        probes["gate"] = torch.sigmoid(z)
        if cfg.readout == "last":
            o = torch.einsum("ebl,ebld->ebd", c, X)  # sum_l c_l x_l                                     [E, B, d]
        else:
            o = all_scan_weights(p["w"], X, cfg.gain, z) @ X  # every state                           [E, B, L, d]
        p = {**p, "V": p["V"] @ p["W_C"] @ p["W_B"]}  # W_C W_B folded into the rows v_i, as forward's fast path
    else:
        # the explicit softmax (forward without probes takes scaled_dot_product_attention: equal to rounding)
        o = nn.attention(X + p["pos"][:, None], p, "attn", heads=1, probes=probes)  #               [E, B, L, d]
        if cfg.readout == "last":
            o = o[..., -1, :]
    return fused_readout(p, o), probes


def forward_reference(p: dict[str, torch.Tensor], X: torch.Tensor, cfg: MambaConfig) -> torch.Tensor:
    """One model and one sequence at a time, the recurrence run step by step (for tests)."""
    E, B, L, d = X.shape
    out = torch.empty(E, B, dtype=X.dtype)
    for e in range(E):
        for b in range(B):
            x = X[e, b]
            outs = []
            if cfg.arch == "ssm":
                h = torch.zeros(d, dtype=X.dtype)
                for l in range(L):
                    z = p["w"][e] @ x[l]
                    if cfg.gain == "sigmoid":
                        g = torch.sigmoid(z)
                        h = (1 - g) * h + g * (p["W_B"][e] @ x[l])  # h_l = (1 - g_l) h_{l-1} + g_l W_B x_l
                    else:
                        delta = F.softplus(z)
                        h = torch.exp(-delta) * h + delta * (p["W_B"][e] @ x[l])  # S6 form
                    outs.append(p["W_C"][e] @ h)  # o_l = W_C h_l
            else:
                xs = x + p["pos"][e]
                q, k, v = (xs @ p["attn.qkv.w"][e] + p["attn.qkv.b"][e]).chunk(3, dim=-1)
                for l in range(L):
                    att = torch.softmax(k @ q[l] / math.sqrt(d), dim=0)  # position l's query over all keys
                    outs.append((att @ v) @ p["attn.proj.w"][e] + p["attn.proj.b"][e])
            heads = [p["a"][e] @ torch.relu(p["V"][e] @ o) for o in outs]
            out[e, b] = heads[-1] if cfg.readout == "last" else sum(heads) / L
    return out


def check_forward(cfgs: Sequence[MambaConfig], params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on a few sequences of every arch/gain (the conformance forward check)."""
    from theorylab.core.ensemble import rng_for
    from theorylab.studies.mamba.data import sample

    worst = 0.0
    for arch, gain in (("ssm", "sigmoid"), ("ssm", "softplus"), ("transformer", "sigmoid")):
        cs = [c.replace(arch=arch, gain=gain) for c in cfgs]
        if (arch, gain) == (cfgs[0].arch, cfgs[0].gain):
            p = params  # the trained weights
        else:  # a fresh model of the other form, with a nonzero gating vector
            p = init_params([c.replace(w_init=1.0) for c in cs], rng_for(cs, device), device)
        X = sample(cs, rng_for(cs, device), 3, "check").X
        worst = max(worst, float((forward(p, X, cs[0]) - forward_reference(p, X, cs[0])).abs().max()))
    return worst
