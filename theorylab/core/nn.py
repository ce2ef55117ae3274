"""Ensemble layers: pure functions over one flat parameter dict, every weight with a leading model axis.

Conventions
- A layer's parameters live under a prefix, timm-style with `.w` / `.b` suffixes ("blocks.0.attn.qkv.w"), so a
  model's params form one flat dict that LwPTV groups by name. Weights are [*, E, ...]: E models, and optionally
  more leading axes (a lambda grid [G, E, ...]).
- Activations are [*, E, <data axes>, D]. Raw data ([E, B, ...]) has no grid axes and broadcasts against gridded
  weights; a layer's output carries them. `data_dims` counts the axes between E and the features: 2 for token
  tensors [*, E, B, N, D] (the default), 1 for vectors [*, E, B, D]; it is the one thing a layer cannot infer.
- init_*(rng, name, ...) -> {f"{name}.w": [E, ...], ...}: E and the device come from the EnsembleRNG; draws use
  the stream ("init", parameter name), so a model's init depends only on its key and the names.
- probes: pass a dict and a layer writes named intermediates into it under its prefix ("blocks.0.attn.map").

Batched by hand, not vmapped (benchmarks/nn_layers_bench.py, a ViT block forward+backward, E=64, B=64, N=16, D=32,
on a 2-core AMD EPYC, torch 2.13 CPU): the same per-model block under torch.func.vmap took 1.01-1.05x the CPU time
of these layers with the same explicit softmax at 1 thread (1.5x at 2), and 2.3x with scaled_dot_product_attention,
which has no vmap batching rule; batching by hand keeps that kernel and broadcasts grid axes without nested vmaps.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from theorylab.core.rng import EnsembleRNG

Params = Mapping[str, torch.Tensor]
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}


def _check_models(x: torch.Tensor, E: int, data_dims: int, name: str) -> None:
    if x.dim() < data_dims + 2 or x.shape[-data_dims - 2] not in (1, E):
        raise ValueError(f"{name}: expected x [*, E={E}, <{data_dims} data axes>, features], got {tuple(x.shape)} "
                         "(set data_dims: 2 for [*, E, B, N, D], 1 for [*, E, B, D])")


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, data_dims: int, name: str) -> torch.Tensor:
    _check_models(x, w.shape[-3], data_dims, name)
    data = x.shape[x.dim() - 1 - data_dims : -1]
    y = x.flatten(-data_dims - 1, -2) @ w  # one matmul per model                          [*, E, B*N, o]
    if b is not None:
        y = y + b[..., None, :]
    return y.unflatten(-2, data)


# ---- linear, layer norm, MLP -------------------------------------------------------------------------------------

def init_linear(rng: EnsembleRNG, name: str, d_in: int, d_out: int, bias: bool = True) -> dict[str, torch.Tensor]:
    """{name}.w ~ N(0, 1/d_in) [E, d_in, d_out]; {name}.b = 0 [E, d_out]."""
    out = {f"{name}.w": rng.normal((d_in, d_out), "init", f"{name}.w") / math.sqrt(d_in)}
    if bias:
        out[f"{name}.b"] = torch.zeros(rng.E, d_out, device=rng.device)
    return out


def linear(x: torch.Tensor, p: Params, name: str, data_dims: int = 2) -> torch.Tensor:
    """x [*, E, B, N, i] @ w [*, E, i, o] + b [*, E, o] -> [*, E, B, N, o]; no bias if p has no {name}.b."""
    return _affine(x, p[f"{name}.w"], p.get(f"{name}.b"), data_dims, name)


def init_layer_norm(rng: EnsembleRNG, name: str, d: int) -> dict[str, torch.Tensor]:
    return {f"{name}.w": torch.ones(rng.E, d, device=rng.device), f"{name}.b": torch.zeros(rng.E, d, device=rng.device)}


def layer_norm(x: torch.Tensor, p: Params, name: str, data_dims: int = 2, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the features: x [*, E, B, N, D], w and b [*, E, D]."""
    w, b = p[f"{name}.w"], p[f"{name}.b"]
    _check_models(x, w.shape[-2], data_dims, name)
    per_model = (*w.shape[:-1], *[1] * data_dims, w.shape[-1])  # [*, E, 1, 1, D]
    return F.layer_norm(x, x.shape[-1:], eps=eps) * w.reshape(per_model) + b.reshape(per_model)


def init_mlp(rng: EnsembleRNG, name: str, d_in: int, hidden: int, d_out: int | None = None) -> dict[str, torch.Tensor]:
    return {**init_linear(rng, f"{name}.fc1", d_in, hidden), **init_linear(rng, f"{name}.fc2", hidden, d_out or d_in)}


def mlp(x: torch.Tensor, p: Params, name: str, act: str = "gelu", data_dims: int = 2) -> torch.Tensor:
    """fc2(act(fc1(x))): x [*, E, B, N, i] -> [*, E, B, N, o]."""
    return linear(ACTIVATIONS[act](linear(x, p, f"{name}.fc1", data_dims)), p, f"{name}.fc2", data_dims)


# ---- inputs: patches, token embeddings ---------------------------------------------------------------------------

def patchify(X: torch.Tensor, patch: int) -> torch.Tensor:
    """Images [..., C, H, W] -> [..., N, C*p*p]: patches in row-major order, each flattened (c, i, j) as nn.Unfold
    does, so linear(patchify(X)) is a stride-p Conv2d."""
    *lead, C, H, W = X.shape
    if H % patch or W % patch:
        raise ValueError(f"patch {patch} does not tile {H}x{W} images")
    n = len(lead)
    x = X.reshape(*lead, C, H // patch, patch, W // patch, patch)
    x = x.permute(*range(n), n + 1, n + 3, n, n + 2, n + 4)  # [..., H/p, W/p, C, p, p]
    return x.reshape(*lead, (H // patch) * (W // patch), C * patch * patch)


def init_embedding(rng: EnsembleRNG, name: str, vocab: int, d: int, max_len: int = 0,
                   std: float = 0.02) -> dict[str, torch.Tensor]:
    """{name}.w [E, vocab, d] and, if max_len, learned positions {name}.pos [E, max_len, d]; both N(0, std^2)
    as GPT-2's wte / wpe."""
    out = {f"{name}.w": std * rng.normal((vocab, d), "init", f"{name}.w")}
    if max_len:
        out[f"{name}.pos"] = std * rng.normal((max_len, d), "init", f"{name}.pos")
    return out


def embedding(ids: torch.Tensor, p: Params, name: str) -> torch.Tensor:
    """Token ids [E, B, L] -> w[ids] + pos[l] [*, E, B, L, D] (positions only if p has {name}.pos).
    ids may have any data axes [E, ..., L]; the sequence axis is the last."""
    table = p[f"{name}.w"]  # [*, E, V, D]
    E = table.shape[-3]
    models = torch.arange(E, device=ids.device).reshape(E, *[1] * (ids.dim() - 1))
    x = table[..., models, ids, :]  # row ids[e, b, l] of model e's table                [*, E, B, L, D]
    pos = p.get(f"{name}.pos")
    if pos is not None:
        x = x + pos[(..., *[None] * (ids.dim() - 2), slice(ids.shape[-1]), slice(None))]  # [*, E, 1, L, D]
    return x


# ---- attention ---------------------------------------------------------------------------------------------------

def init_attention(rng: EnsembleRNG, name: str, d: int, heads: int, rel_buckets: int = 0) -> dict[str, torch.Tensor]:
    """qkv [E, d, 3d] and proj [E, d, d] linears; with rel_buckets, a relative bias table {name}.rel_bias
    [E, rel_buckets, heads] (one b_z per bucket z and head), starting at 0 (plain attention)."""
    if d % heads:
        raise ValueError(f"{name}: width {d} is not a multiple of {heads} heads")
    out = {**init_linear(rng, f"{name}.qkv", d, 3 * d), **init_linear(rng, f"{name}.proj", d, d)}
    if rel_buckets:
        out[f"{name}.rel_bias"] = torch.zeros(rng.E, rel_buckets, heads, device=rng.device)
    return out


def relative_positions(n: int, device=None) -> torch.Tensor:
    """[n, n] bucket of the offset j - i between query i and key j, in [0, 2n - 2] (a table of 2n - 1 rows)."""
    i = torch.arange(n, device=device)
    return i[None, :] - i[:, None] + n - 1


def relative_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """b_z gathered per score: table [*, E, Z, H]; index (ints < Z) [N, N] shared, [E, N, N] per model or
    [E, B, N, N] per sample (e.g. shortest-path distances of each graph) -> [*, E, B or 1, H, N, N]."""
    E = table.shape[-3]
    if index.dim() == 3:
        index = index[:, None]
    index = index.reshape((1,) * (4 - index.dim()) + index.shape)  # [E|1, B|1, N, N]
    models = torch.arange(E, device=index.device).reshape(E, 1, 1, 1)
    return table[..., models, index, :].movedim(-1, -3)


def without_key_bias(qkv_b: torch.Tensor) -> torch.Tensor:
    """[*, E, 3D] -> the same with the key third zeroed. A key bias adds q.b_k to every score of a query,
    which softmax ignores: its true gradient is 0, and AdamW would turn the rounding noise there into
    lr-sized steps that differ between an ensemble and a model trained alone. Zeroed, it stays exactly 0."""
    D = qkv_b.shape[-1] // 3
    keep = torch.ones(3 * D, dtype=qkv_b.dtype, device=qkv_b.device)
    keep[D : 2 * D] = 0
    return qkv_b * keep


def _score_bias(p: Params, name: str, N: int, rel_index, key_mask, causal: bool, like: torch.Tensor):
    """Additive score bias broadcastable to [*, E, B, H, N, N], or None: b_z, and -inf on hidden keys."""
    bias = None if rel_index is None else relative_bias(p[f"{name}.rel_bias"], rel_index)
    hidden = None
    if key_mask is not None:
        hidden = ~key_mask[..., None, None, :]  # [*, E, B, 1, 1, N(key)]
    if causal:
        future = torch.ones(N, N, dtype=torch.bool, device=like.device).triu(1)  # key j > query i
        hidden = future if hidden is None else hidden | future
    if hidden is not None:
        minus_inf = torch.zeros(hidden.shape, dtype=like.dtype, device=like.device).masked_fill(hidden, -math.inf)
        bias = minus_inf if bias is None else bias + minus_inf
    return bias


def attention(x: torch.Tensor, p: Params, name: str, heads: int, *, causal: bool = False,
              rel_index: torch.Tensor | None = None, key_mask: torch.Tensor | None = None, key_bias: bool = True,
              probes: dict | None = None) -> torch.Tensor:
    """Multi-head self-attention x [*, E, B, N, D] -> [*, E, B, N, D]:

        A_h = softmax(Q_h K_h^T / sqrt(D/H) + b[rel_index] - inf[key hidden])    [*, E, B, H, N, N]
        out = concat_h(A_h V_h) W_proj + b_proj

    rel_index: bucket per (query, key), see relative_bias (needs {name}.rel_bias). key_mask [*, E, B, N] bool,
    False = the token is dropped as a key (token sparsification; every query must keep one key). causal: query i
    sees keys j <= i. key_bias=False holds the key third of the qkv bias at 0 (see without_key_bias).
    With probes, the attention map A is stored as probes[f"{name}.map"].
    """
    qkv_b = p[f"{name}.qkv.b"] if key_bias else without_key_bias(p[f"{name}.qkv.b"])
    qkv = _affine(x, p[f"{name}.qkv.w"], qkv_b, 2, name)  # [*, E, B, N, 3D]
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(-2, -3) for t in qkv.chunk(3, dim=-1))  # [*, E, B, H, N, dh]
    bias = _score_bias(p, name, x.shape[-2], rel_index, key_mask, causal, q)
    if probes is None:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    else:
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # Q_h K_h^T / sqrt(d_h)      [*, E, B, H, N, N]
        A = torch.softmax(scores if bias is None else scores + bias, dim=-1)
        probes[f"{name}.map"] = A
        o = A @ v
    return linear(o.transpose(-2, -3).flatten(-2), p, f"{name}.proj")  # concat_h(A_h V_h) W_proj + b


def attention_query(x: torch.Tensor, p: Params, name: str, heads: int, *, query: int = 0,
                    rel_index: torch.Tensor | None = None, key_mask: torch.Tensor | None = None,
                    key_bias: bool = True, probes: dict | None = None) -> torch.Tensor:
    """One query row of attention(): the output of token `query` attending to every token of x [*, E, B, N, D]
    -> [*, E, B, D], equal to attention(x, ...)[..., query, :] (tests/core/test_nn.py) at a fraction of the
    cost when only that row is read (a graph transformer's node attending to its sampled neighbourhood):

        u_h = W_K,h (W_Q,h x_q + b_Q,h) / sqrt(D/H)                                          [*, E, B, H, D]
        a_h = softmax(x u_h + q_h.b_K,h + b[rel_index] - inf[key hidden])                   [*, E, B, H, N]
        out = concat_h((a_h x) W_V,h + b_V,h) W_proj + b_proj

    K and V of the N keys are never formed: q_h.(W_K x_s + b_K) = x_s.u_h + q_h.b_K, and as a_h sums to 1,
    a_h (x W_V + b_V) = (a_h x) W_V + b_V. So the cost is O(N D) per query, not O(N D^2 + N^2 D).
    rel_index [E, B, N] (ints < rel buckets): the bucket of each key for this query; key_mask [*, E, B, N]
    (at least one key kept); key_bias=False as in attention(). With probes, the row is stored as
    probes[f"{name}.map"] [*, E, B, H, 1, N] (attention()'s map at this query)."""
    W = p[f"{name}.qkv.w"]  # [*, E, D, 3D]
    qkv_b = p[f"{name}.qkv.b"] if key_bias else without_key_bias(p[f"{name}.qkv.b"])
    D = W.shape[-2]
    dh = D // heads
    W_q, W_k, W_v = (w.unflatten(-1, (heads, dh)) for w in W.chunk(3, dim=-1))  # [*, E, D, H, dh]
    # [*, E, 1, H, dh]: per model, broadcast over the batch axis
    b_q, b_k, b_v = (b.unflatten(-1, (heads, dh)).unsqueeze(-3) for b in qkv_b.chunk(3, dim=-1))
    _check_models(x, W.shape[-3], 2, name)
    q = (x[..., query, :] @ W_q.flatten(-2)).unflatten(-1, (heads, dh)) + b_q  # W_Q x_q + b_Q  [*, E, B, H, dh]
    # u_h = W_K,h q_h / sqrt(dh), one [B, dh] x [dh, D] product per model and head (matmul: einsum's planning
    # costs more than the product at these sizes)
    u = (q.transpose(-2, -3) @ W_k.permute(*range(W_k.dim() - 3), -2, -1, -3)).transpose(-2, -3) / math.sqrt(dh)
    scores = ((q * b_k).sum(-1) / math.sqrt(dh))[..., None]  # q_h . b_K,h (softmax ignores it)  [*, E, B, H, 1]
    # then b_z by bucket, -inf on dropped keys: the score biases                                 [*, E, B, H, N]
    if rel_index is not None:
        table = p[f"{name}.rel_bias"].movedim(-1, -2)  # [*, E, H, Z]
        E, H, (B, N) = table.shape[-3], table.shape[-2], rel_index.shape[-2:]
        # a gather along the buckets (its backward a scatter-add: 3x faster than indexing the table)
        index = rel_index.reshape(E, 1, B * N).expand(*table.shape[:-1], B * N)
        scores = scores + torch.gather(table, -1, index).unflatten(-1, (B, N)).movedim(-3, -2)  # b[bucket(s)]
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[..., None, :], -math.inf)
    # batched [H, D] x [D, N] products (3x faster with their backward than products and sums on CPU at E = 64)
    A = torch.softmax(u @ x.transpose(-1, -2) + scores, dim=-1)  # x_s . u_h + biases -> a_h  [*, E, B, H, N]
    xbar = A @ x  # a_h x                                                                     [*, E, B, H, D]
    if probes is not None:
        probes[f"{name}.map"] = A[..., None, :]
    o = (xbar.transpose(-2, -3) @ W_v.transpose(-2, -3)).transpose(-2, -3) + b_v  # (a_h x) W_V,h + b_V,h  [*, E, B, H, dh]
    return linear(o.flatten(-2), p, f"{name}.proj", data_dims=1)

# ---- selective scan (Mamba's S6) ---------------------------------------------------------------------------------

def init_selective_scan(rng: EnsembleRNG, name: str, d: int, state: int = 16, dt_min: float = 1e-3,
                        dt_max: float = 0.1) -> dict[str, torch.Tensor]:
    """Mamba's init: A = -(1, ..., state) per channel (S4D-real, stored as A_log), D = 1, and the Delta bias
    set so that softplus(bias) is log-uniform on [dt_min, dt_max]; projections N(0, 1/d)."""
    E, dev = rng.E, rng.device
    log_dt = math.log(dt_min) + rng.uniform((d,), "init", f"{name}.dt_proj.b") * (math.log(dt_max) - math.log(dt_min))
    dt = torch.exp(log_dt)
    return {**init_linear(rng, f"{name}.dt_proj", d, d), f"{name}.dt_proj.b": dt + torch.log(-torch.expm1(-dt)),
            **init_linear(rng, f"{name}.B_proj", d, state, bias=False),
            **init_linear(rng, f"{name}.C_proj", d, state, bias=False),
            f"{name}.A_log": torch.log(torch.arange(1, state + 1, dtype=torch.float32, device=dev)).expand(E, d, state).clone(),
            f"{name}.D": torch.ones(E, d, device=dev)}


def _selective_scan_inputs(x: torch.Tensor, p: Params, name: str):
    delta = F.softplus(linear(x, p, f"{name}.dt_proj"))  # Delta_t = softplus(W_dt x_t + b_dt)  [*, E, B, L, D]
    B = linear(x, p, f"{name}.B_proj")  # B_t = W_B x_t                                    [*, E, B, L, n]
    C = linear(x, p, f"{name}.C_proj")  # C_t = W_C x_t                                    [*, E, B, L, n]
    A = -torch.exp(p[f"{name}.A_log"])[..., None, None, :, :]  # diagonal A < 0           [*, E, 1, 1, D, n]
    A_bar = torch.exp(delta[..., None] * A)  # exp(Delta_t A), zero-order hold            [*, E, B, L, D, n]
    Bx_bar = (delta * x)[..., None] * B[..., None, :]  # Delta_t B_t x_t                  [*, E, B, L, D, n]
    return delta, A_bar, Bx_bar, C


def selective_scan(x: torch.Tensor, p: Params, name: str, probes: dict | None = None,
                   parallel: bool | None = None) -> torch.Tensor:
    """Mamba's selective SSM (S6; Gu & Dao 2023, Alg. 2), x [*, E, B, L, D] -> y [*, E, B, L, D]: each channel
    has a state of n numbers; Delta, B and C depend on the input (the selection). The scan h_t = A_bar_t h_{t-1} +
    Bx_bar_t runs step by step (`selective_scan_sequential`) or in its associative form (`selective_scan_parallel`);
    parallel=None picks the parallel form on CUDA only: on CPU the step-by-step loop is 3x (L = 20) to 7x (L = 128)
    faster (benchmarks/mamba_scan_bench.py: the doubling does O(L log L) work in whole-tensor passes, each a trip to
    memory, while L Python steps cost little next to them). Both give the same numbers (tests). With probes, Delta
    is stored as probes[f"{name}.delta"]."""
    use_parallel = x.is_cuda if parallel is None else parallel
    return (selective_scan_parallel if use_parallel else selective_scan_sequential)(x, p, name, probes)


def selective_scan_parallel(x: torch.Tensor, p: Params, name: str, probes: dict | None = None) -> torch.Tensor:
    """`selective_scan` by Hillis-Steele doubling: ceil(log2 L) whole-tensor steps instead of L Python steps. It
    multiplies decays in (0, 1] and never divides by them, so a long product underflows to the 0 it is, where a
    closed form through cumulative sums of log A_bar would overflow."""
    delta, a, h, C = _selective_scan_inputs(x, p, name)
    L, k = x.shape[-2], 1
    while k < L:  # after this step h_t = sum over the last 2k inputs, a_t = the product of the last 2k decays
        h = torch.cat([h[..., :k, :, :], h[..., k:, :, :] + a[..., k:, :, :] * h[..., :-k, :, :]], -3)
        if 2 * k < L:
            a = torch.cat([a[..., :k, :, :], a[..., k:, :, :] * a[..., :-k, :, :]], -3)
        k *= 2
    if probes is not None:
        probes[f"{name}.delta"] = delta
    y = (h @ C[..., :, :, None]).squeeze(-1)  # C_t h_t                                      [*, E, B, L, D]
    return y + p[f"{name}.D"][..., None, None, :] * x  # y_t = C_t h_t + D x_t


def selective_scan_sequential(x: torch.Tensor, p: Params, name: str, probes: dict | None = None) -> torch.Tensor:
    """`selective_scan` with the scan run step by step over L (the reference)."""
    delta, A_bar, Bx_bar, C = _selective_scan_inputs(x, p, name)
    # unbind, not x[..., t, :, :]: each indexed step would back-propagate through a full-size zero tensor,
    # making the backward O(L^2) (measured: 190 -> 31 ms per model-step at L = 128)
    A_t, Bx_t, C_t = A_bar.unbind(-3), Bx_bar.unbind(-3), C.unbind(-2)
    h = Bx_t[0]  # h_0 = A_bar_0 h_{-1} + Bx_bar_0 with h_{-1} = 0                          [*, E, B, D, n]
    ys = [h @ C_t[0][..., :, None]]
    for a, bx, c in zip(A_t[1:], Bx_t[1:], C_t[1:]):
        h = a * h + bx  # h_t = A_bar_t h_{t-1} + B_bar_t x_t
        ys.append(h @ c[..., :, None])  # C_t h_t                                          [*, E, B, D, 1]
    if probes is not None:
        probes[f"{name}.delta"] = delta
    return torch.cat(ys, -1).transpose(-1, -2) + p[f"{name}.D"][..., None, None, :] * x  # y_t = C_t h_t + D x_t


# ---- graph aggregation -------------------------------------------------------------------------------------------

def normalized_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """A [..., n, n] -> D^-1/2 (A + I) D^-1/2 with D the degree matrix of A + I (Kipf & Welling 2017)."""
    a = adj + torch.eye(adj.shape[-1], dtype=adj.dtype, device=adj.device)
    d = a.sum(-1).rsqrt()  # D^-1/2                                                      [..., n]
    return d[..., :, None] * a * d[..., None, :]


def graph_aggregate(x: torch.Tensor, adj: torch.Tensor, p: Params, name: str) -> torch.Tensor:
    """GCN aggregation D^-1/2 (A + I) D^-1/2 X W + b: node features x [*, E, B, n, i] -> [*, E, B, n, o].
    adj [n, n] shared, [E, n, n] per model or [E, B, n, n] per graph. Params are a linear's (init_linear)."""
    a = normalized_adjacency(adj.to(x.dtype))
    if a.dim() == 3:
        a = a[:, None]  # [E, 1, n, n]
    return linear(a @ x, p, name)  # (A_hat X) W + b


def neighbour_lists(adj: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The sparse form of normalized_adjacency: adj [n, n] or [E, n, n] -> (index, weight) [(E,) n, K], row r's
    nonzero entries of D^-1/2 (A + I) D^-1/2 (columns ascending) in its first slots, then padding (index r,
    weight 0). K = width, or the largest row count (degree + 1). The weights are the dense ones, entry for entry."""
    if adj.dim() == 3:
        eye = torch.eye(adj.shape[-1], dtype=adj.dtype, device=adj.device)
        K = width or int(max(((a + eye) != 0).sum(-1).max() for a in adj))  # one K for every model: the largest
        lists = [neighbour_lists(a, K) for a in adj]
        return torch.stack([i for i, _ in lists]), torch.stack([w for _, w in lists])
    n = adj.shape[-1]
    a_hat = normalized_adjacency(adj)
    r, c = torch.nonzero(a_hat, as_tuple=True)  # row-major: rows ascending, columns ascending within a row
    counts = torch.bincount(r, minlength=n)
    K = width or int(counts.max())
    if int(counts.max()) > K:
        raise ValueError(f"neighbour_lists: a row has {int(counts.max())} entries, more than width {K}")
    slot = torch.arange(len(r), device=adj.device) - (torch.cumsum(counts, 0) - counts)[r]  # rank within its row
    index = torch.arange(n, device=adj.device)[:, None].repeat(1, K)
    weight = torch.zeros(n, K, dtype=a_hat.dtype, device=adj.device)
    index[r, slot] = c
    weight[r, slot] = a_hat[r, c]
    return index, weight


def neighbour_sum(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_j weight[e, r, j] x[e, index[e, r, j]]: x [*, E, n, i], index and weight [E, m, K] (m rows: every node,
    or a batch of them) -> [*, E, m, i]. With neighbour_lists' (index, weight) this is A_hat x, O(n K) not O(n^2)."""
    E, n = x.shape[-3:-1]
    flat = index + n * torch.arange(E, device=index.device)[:, None, None]  # row of x.flatten(-3, -2)
    rows = x.flatten(-3, -2).index_select(-2, flat.flatten()).unflatten(-2, index.shape)  # [*, E, m, K, i]
    return (weight.to(x.dtype).unsqueeze(-2) @ rows).squeeze(-2)  # [1, K] x [K, i] per row (matmul: 3x a product + sum)


def graph_aggregate_sparse(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, p: Params, name: str) -> torch.Tensor:
    """graph_aggregate from neighbour lists: x [*, E, n, i] (one graph per model, no batch axis), (index, weight)
    [E, m, K] from neighbour_lists (rows of A_hat) -> (A_hat x)[rows] W + b [*, E, m, o]. Equal to the dense
    graph_aggregate up to summation order (tests/core/test_nn.py)."""
    return linear(neighbour_sum(x, index, weight), p, name, data_dims=1)
