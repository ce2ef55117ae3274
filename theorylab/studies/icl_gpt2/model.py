"""A small GPT-2 reading the ICL prompts (spec section 1.4), ensemble-first, written with core.nn layers.

    tokens   t_1..t_L = p_1..p_L (context columns), t_{L+1} = p_query             [E, B, L+1, d]
    h^0      = t W_in + b_in + wpe[P-L-1 .. P-1]   (right-aligned: the query always at the last position)
    h^l      = h^{l-1} + Attn_l(LN_1(h^{l-1})) ;  h^l <- h^l + W_2 gelu_tanh(W_1 LN_2(h^l) + b_1) + b_2   (GPT-2 block)
    F(P)     = LN_f(h^n)[query] w_out + b_out                                        [E, B]

Causal multi-head attention with learned positions, pre-LayerNorm, GELU (tanh form, GPT-2's `gelu_new`), as
transformers' GPT2Model (tests/studies/icl_gpt2/test_model.py checks equality to 1e-5). The key third of each qkv
bias is held at 0 (core.nn.without_key_bias: softmax ignores it; it only adds AdamW noise between ensembles).
Parameter names: read_in.{w,b} [E, d, D]; wpe [E, P, D]; h.{l}.ln_1 / attn.qkv / attn.proj / ln_2 / mlp.fc1 /
mlp.fc2; ln_f; read_out.{w,b} [E, D, 1]. "Neuron i of layer l" = column i of h.{l}.mlp.fc1.w (a row of W_O).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from theorylab.core import nn
from theorylab.core.ensemble import shared_value
from theorylab.core.rng import EnsembleRNG


def shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Per-model parameter shapes (without the leading E)."""
    D, d, P, m = cfg.n_embd, cfg.d, cfg.n_positions, cfg.n_inner_mult * cfg.n_embd
    out = {"read_in.w": (d, D), "read_in.b": (D,), "wpe": (P, D)}
    for l in range(cfg.n_layer):
        b = f"h.{l}."
        out.update({b + "ln_1.w": (D,), b + "ln_1.b": (D,), b + "attn.qkv.w": (D, 3 * D), b + "attn.qkv.b": (3 * D,),
                    b + "attn.proj.w": (D, D), b + "attn.proj.b": (D,), b + "ln_2.w": (D,), b + "ln_2.b": (D,),
                    b + "mlp.fc1.w": (D, m), b + "mlp.fc1.b": (m,), b + "mlp.fc2.w": (m, D), b + "mlp.fc2.b": (D,)})
    out.update({"ln_f.w": (D,), "ln_f.b": (D,), "read_out.w": (D, cfg.d_out), "read_out.b": (cfg.d_out,)})
    return out


def init_params(cfgs: Sequence, rng: EnsembleRNG, device) -> dict[str, torch.Tensor]:
    """GPT-2's init (GPT2PreTrainedModel._init_weights): weights N(0, init_std^2), the two output projections
    N(0, init_std^2 / (2 n_layer)), biases 0, LayerNorm (1, 0), wpe N(0, init_std^2). Read-in and read-out
    (not part of GPT-2): N(0, 1/fan_in), bias 0."""
    cfg, E = cfgs[0], len(cfgs)
    for k in ("task", "n_layer", "n_head", "n_embd", "n_inner_mult", "init_std", "d_X", "d_Y", "l_tr", "l_ts", "K"):
        shared_value(cfgs, k)
    std = cfg.init_std
    out = {}
    for k, shp in shapes(cfg).items():
        if ".ln_" in k or k.startswith("ln_"):
            out[k] = (torch.ones if k.endswith(".w") else torch.zeros)(E, *shp, device=device)
        elif k.endswith(".b"):
            out[k] = torch.zeros(E, *shp, device=device)
        elif k.startswith(("read_in", "read_out")):
            out[k] = rng.normal(shp, "init", k).to(device) / math.sqrt(shp[0])
        elif k.endswith(("attn.proj.w", "mlp.fc2.w")):
            out[k] = std / math.sqrt(2 * cfg.n_layer) * rng.normal(shp, "init", k).to(device)
        else:
            out[k] = std * rng.normal(shp, "init", k).to(device)
    return out


def n_layers(params: dict[str, torch.Tensor]) -> int:
    return sum(1 for k in params if k.endswith("attn.qkv.w"))


def gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")  # GPT-2's gelu_new


def forward(params: dict[str, torch.Tensor], C: torch.Tensor, Q: torch.Tensor, heads: int, probes: bool = False,
            mask: torch.Tensor | None = None, query_only: bool = True):
    """C [E, B, L, d] contexts, Q [E, B, d] query -> F [E, B] (icl; [E, B, d_out] when the read-out has d_out > 1),
    and probes: attn.{l} [E, B, H, L+1] the query row of layer l's attention; mlp.{l} [E, B, m] layer l's MLP
    activations at the query token. mask [E, B, L] (cot): False = an absent column, never attended to.
    query_only: the last layer computes the query token's row only (core.nn.attention_query at the last token; the read-out and
    every probe read nothing else there): the same function, a 1/n_layer share of the block work saved
    (tests/studies/icl_gpt2/test_icl_gpt2_speed.py holds it equal to query_only=False)."""
    p = params
    X = torch.cat([C, Q[:, :, None, :]], dim=2)  # columns p_1..p_L, p_query as tokens           [E, B, L+1, d]
    keys = None if mask is None else torch.cat([mask, torch.ones_like(mask[..., :1])], dim=2)  # [E, B, L+1]
    N, P = X.shape[2], p["wpe"].shape[-2]
    h = nn.linear(X, p, "read_in") + p["wpe"][:, None, P - N :]  # read-in + learned positions    [E, B, N, D]
    found: dict[str, torch.Tensor] = {}
    layers = n_layers(p)
    for l in range(layers):
        b = f"h.{l}."
        maps = {} if probes else None
        if query_only and l == layers - 1:  # from here on only the query token's row is read   [E, B, 1, D]
            # causal attention's last row sees every key: core's one-query attention at query -1
            h = h[..., -1:, :] + nn.attention_query(nn.layer_norm(h, p, b + "ln_1"), p, b + "attn", heads, query=-1,
                                                    key_bias=False, key_mask=keys, probes=maps)[..., None, :]
        else:
            h = h + nn.attention(nn.layer_norm(h, p, b + "ln_1"), p, b + "attn", heads, causal=True, key_bias=False,
                                 key_mask=keys, probes=maps)  # causal self-attention                             [E, B, N, D]
        act = gelu(nn.linear(nn.layer_norm(h, p, b + "ln_2"), p, b + "mlp.fc1"))  # MLP neurons     [E, B, N, m]
        h = h + nn.linear(act, p, b + "mlp.fc2")
        if probes:
            found[f"attn.{l}"] = maps[b + "attn.map"][..., -1, :]  # the query's attention row     [E, B, H, N]
            found[f"mlp.{l}"] = act[..., -1, :]
    out = nn.linear(nn.layer_norm(h[..., -1, :], p, "ln_f", data_dims=1), p, "read_out", data_dims=1)  # [E, B, d_out]
    out = out[..., 0] if out.shape[-1] == 1 else out
    return (out, found) if probes else out


def forward_reference(params: dict[str, torch.Tensor], C: torch.Tensor, Q: torch.Tensor, heads: int,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same network one model and one prompt at a time, token by token, absent columns skipped as keys."""
    E, B, L, _ = C.shape
    d_out = params["read_out.w"].shape[-1]
    out = torch.empty(E, B, d_out, dtype=C.dtype)

    def ln(x, w, b):
        mu, var = x.mean(), x.var(unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * w + b

    for e in range(E):
        p = {k: v[e] for k, v in params.items()}
        D = p["wpe"].shape[-1]
        dh, P = D // heads, p["wpe"].shape[0]
        for bi in range(B):
            toks = [C[e, bi, i] for i in range(L)] + [Q[e, bi]]
            present = [True if mask is None else bool(mask[e, bi, i]) for i in range(L)] + [True]
            N = len(toks)
            h = [t @ p["read_in.w"] + p["read_in.b"] + p["wpe"][P - N + i] for i, t in enumerate(toks)]
            for l in range(n_layers(p)):
                b = f"h.{l}."
                qkv = [ln(x, p[b + "ln_1.w"], p[b + "ln_1.b"]) @ p[b + "attn.qkv.w"] + p[b + "attn.qkv.b"] * torch.cat(
                    [torch.ones(D), torch.zeros(D), torch.ones(D)]) for x in h]
                new = []
                for i in range(N):
                    heads_out = []
                    for hd in range(heads):
                        sl = slice(hd * dh, (hd + 1) * dh)
                        q = qkv[i][:D][sl]
                        seen = [j for j in range(i + 1) if present[j]]
                        s = torch.stack([q @ qkv[j][D : 2 * D][sl] / math.sqrt(dh) for j in seen])
                        a = torch.softmax(s, 0)
                        heads_out.append(sum(a[n] * qkv[j][2 * D :][sl] for n, j in enumerate(seen)))
                    x = h[i] + torch.cat(heads_out) @ p[b + "attn.proj.w"] + p[b + "attn.proj.b"]
                    z = gelu(ln(x, p[b + "ln_2.w"], p[b + "ln_2.b"]) @ p[b + "mlp.fc1.w"] + p[b + "mlp.fc1.b"])
                    new.append(x + z @ p[b + "mlp.fc2.w"] + p[b + "mlp.fc2.b"])
                h = new
            out[e, bi] = ln(h[-1], p["ln_f.w"], p["ln_f.b"]) @ p["read_out.w"] + p["read_out.b"]
    return out[..., 0] if d_out == 1 else out


def neuron_embeddings(params: dict[str, torch.Tensor], d_X: int) -> list[dict[str, torch.Tensor]]:
    """Per layer l, "neuron i" in prompt coordinates (spec E5 [I/D]): w_i = W_in W_V W_proj (W_1)_{:, i} [E, m, d],
    i.e. a row of (MLP input weight)(attention value/out-projection), read back through the read-in (LayerNorm gains
    left out). Its label part w_i[d_X:] is compared with q = e_1; a_i = sign of the neuron's direct contribution to
    the read-out, (W_2)_{i,:} diag(ln_f.w) w_out. Returns [{"label_norm", "label_angle", "feature_norm", "a_sign",
    "in_norm"} each [E, m]] (in_norm: the norm of (W_1)_{:, i}, the magnitude pruning ranks by)."""
    out = []
    D = params["wpe"].shape[-1]
    for l in range(n_layers(params)):
        b = f"h.{l}."
        W_V = params[b + "attn.qkv.w"][..., 2 * D :]  # [E, D, D]
        path = params["read_in.w"] @ W_V @ params[b + "attn.proj.w"] @ params[b + "mlp.fc1.w"]  # [E, d, m]
        rows = path.transpose(-1, -2)  # [E, m, d]
        lab = rows[..., d_X:]
        cos = lab[..., 0] / lab.norm(dim=-1).clamp_min(1e-12)
        a = (params[b + "mlp.fc2.w"] * params["ln_f.w"][:, None, :]) @ params["read_out.w"]  # [E, m, 1]
        out.append({"label_norm": lab.norm(dim=-1), "label_angle": torch.arccos(cos.clamp(-1, 1)),
                    "feature_norm": rows[..., :d_X].norm(dim=-1), "a_sign": torch.sign(a[..., 0]),
                    "in_norm": params[b + "mlp.fc1.w"].norm(dim=-2)})
    return out


def prune_neurons(params: dict[str, torch.Tensor], keep: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove MLP neuron i of layer l where keep[l] [E, m] is False (its output row of W_2 zeroed)."""
    out = dict(params)
    for l, k in enumerate(keep):
        key = f"h.{l}.mlp.fc2.w"
        out[key] = params[key] * k[..., None].to(params[key].dtype)
    return out


def check_forward(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> float:
    """max |forward - forward_reference| on a few prompts (the conformance test's forward check)."""
    from theorylab.core.ensemble import rng_for, scalar_tensor
    from theorylab.shared.icl_prompts import in_domain_world, sample_prompts, split_tasks

    if cfgs[0].task == "cot":
        from theorylab.shared.cot_reasoning import eval_reasoning, step_prompts
        r = eval_reasoning(cfgs, rng_for(cfgs, device), 2, min(cfgs[0].l_tr, 3), "check")
        pr = step_prompts(r, 2 if cfgs[0].K > 1 else 1)
        h = cfgs[0].n_head
        return float((forward(params, pr.C, pr.Q, h, mask=pr.mask) - forward_reference(params, pr.C, pr.Q, h, pr.mask))
                     .abs().max())
    world = in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])
    pr = sample_prompts(world, rng_for(cfgs, device), scalar_tensor(cfgs, "alpha", device), 2, min(cfgs[0].l_tr, 6),
                        "check")
    heads = cfgs[0].n_head
    return float((forward(params, pr.C, pr.Q, heads) - forward_reference(params, pr.C, pr.Q, heads)).abs().max())
