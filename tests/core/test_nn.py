"""core.nn: each ensemble layer against a per-model torch.nn reference (or a per-model, per-step loop written as
the paper writes it), on E = 3 models, and with a lambda grid [G, E, ...] of parameters against one data batch."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from theorylab.core import nn
from theorylab.core.rng import EnsembleRNG

E, B, N, D, HEADS = 3, 2, 5, 8, 2
TOL = dict(atol=1e-5, rtol=0)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def rng(models: int = E) -> EnsembleRNG:
    return EnsembleRNG(list(range(101, 101 + models)))


def jitter(p: dict) -> dict:
    """Init with every parameter moved off its init value (biases, LN, b_z nonzero)."""
    return {k: v + 0.3 * torch.randn(v.shape) for k, v in p.items()}


def on_grid(p: dict, G: int = 2) -> dict:
    """[E, ...] -> [G, E, ...]: G different parameter sets per model."""
    return {k: v + 0.1 * torch.randn(G, *v.shape) for k, v in p.items()}


def assert_grid_matches(fn, p: dict) -> None:
    """fn on gridded params [G, E, ...] equals fn on each grid point's [E, ...] params."""
    pg = on_grid(p)
    out = fn(pg)
    for g in range(out.shape[0]):
        torch.testing.assert_close(out[g], fn({k: v[g] for k, v in pg.items()}), **TOL)


def torch_linear(p: dict, name: str, e: int) -> torch.nn.Linear:
    w = p[f"{name}.w"][e]
    m = torch.nn.Linear(*w.shape, bias=f"{name}.b" in p)
    with torch.no_grad():
        m.weight.copy_(w.T)
        if m.bias is not None:
            m.bias.copy_(p[f"{name}.b"][e])
    return m


# ---- linear, layer norm, MLP, patches, embedding ------------------------------------------------------------------

@pytest.mark.parametrize("data", [(B,), (B, N), (B, 2, N)])
def test_linear_is_per_model_nn_linear(data):
    p = jitter(nn.init_linear(rng(), "fc", D, 4))
    x = torch.randn(E, *data, D)
    y = nn.linear(x, p, "fc", data_dims=len(data))
    assert y.shape == (E, *data, 4)
    for e in range(E):
        torch.testing.assert_close(y[e], torch_linear(p, "fc", e)(x[e]), **TOL)
    assert_grid_matches(lambda q: nn.linear(x, q, "fc", data_dims=len(data)), p)
    no_bias = nn.init_linear(rng(), "fc", D, 4, bias=False)
    torch.testing.assert_close(nn.linear(x, no_bias, "fc", len(data)), x @ no_bias["fc.w"].reshape(E, *[1] * (len(data) - 1), D, 4))


def test_a_wrong_data_dims_is_refused():
    p = nn.init_linear(rng(), "fc", D, 4)
    with pytest.raises(ValueError, match="data_dims"):
        nn.linear(torch.randn(E, B, D), p, "fc")  # a vector batch read as tokens
    with pytest.raises(ValueError, match="data_dims"):
        nn.layer_norm(torch.randn(E, B, N, D), nn.init_layer_norm(rng(), "ln", D), "ln", data_dims=3)


def test_layer_norm_is_per_model_nn_layer_norm():
    p = jitter(nn.init_layer_norm(rng(), "ln", D))
    x = torch.randn(E, B, N, D)
    y = nn.layer_norm(x, p, "ln")
    for e in range(E):
        ref = torch.nn.LayerNorm(D)
        with torch.no_grad():
            ref.weight.copy_(p["ln.w"][e]), ref.bias.copy_(p["ln.b"][e])
        torch.testing.assert_close(y[e], ref(x[e]), **TOL)
    assert_grid_matches(lambda q: nn.layer_norm(x, q, "ln"), p)
    torch.testing.assert_close(nn.layer_norm(x[:, :, 0], p, "ln", data_dims=1), y[:, :, 0], **TOL)


@pytest.mark.parametrize("act, module", [("relu", torch.nn.ReLU), ("gelu", torch.nn.GELU)])
def test_mlp_is_per_model_linear_act_linear(act, module):
    p = jitter(nn.init_mlp(rng(), "mlp", D, 16, 3))
    x = torch.randn(E, B, N, D)
    y = nn.mlp(x, p, "mlp", act)
    for e in range(E):
        ref = torch.nn.Sequential(torch_linear(p, "mlp.fc1", e), module(), torch_linear(p, "mlp.fc2", e))
        torch.testing.assert_close(y[e], ref(x[e]), **TOL)
    assert_grid_matches(lambda q: nn.mlp(x, q, "mlp", act), p)


def test_patch_embedding_is_a_per_model_strided_conv():
    C, H, W, P = 2, 8, 4, 2
    p = jitter(nn.init_linear(rng(), "patch", C * P * P, D))
    X = torch.randn(E, B, C, H, W)
    tokens = nn.patchify(X, P)  # [E, B, N, C*p*p]
    assert tokens.shape == (E, B, (H // P) * (W // P), C * P * P)
    torch.testing.assert_close(tokens, F.unfold(X.flatten(0, 1), P, stride=P).transpose(1, 2).unflatten(0, (E, B)))
    y = nn.linear(tokens, p, "patch")
    for e in range(E):
        conv = torch.nn.Conv2d(C, D, P, stride=P)
        with torch.no_grad():
            conv.weight.copy_(p["patch.w"][e].T.reshape(D, C, P, P)), conv.bias.copy_(p["patch.b"][e])
        torch.testing.assert_close(y[e], conv(X[e]).flatten(2).transpose(1, 2), **TOL)  # [B, N, D], row-major
    with pytest.raises(ValueError):
        nn.patchify(X, 3)


def test_embedding_is_per_model_nn_embedding_plus_positions():
    V, L = 11, 4
    p = jitter(nn.init_embedding(rng(), "embed", V, D, max_len=6))
    ids = torch.randint(V, (E, B, L))
    y = nn.embedding(ids, p, "embed")
    assert y.shape == (E, B, L, D)
    for e in range(E):
        tok, pos = torch.nn.Embedding(V, D), torch.nn.Embedding(6, D)
        with torch.no_grad():
            tok.weight.copy_(p["embed.w"][e]), pos.weight.copy_(p["embed.pos"][e])
        torch.testing.assert_close(y[e], tok(ids[e]) + pos(torch.arange(L)), **TOL)
    assert_grid_matches(lambda q: nn.embedding(ids, q, "embed"), p)
    no_pos = {"embed.w": p["embed.w"]}
    torch.testing.assert_close(nn.embedding(ids, no_pos, "embed"), y - p["embed.pos"][:, None, :L], **TOL)


# ---- attention ----------------------------------------------------------------------------------------------------

def mha_reference(p: dict, name: str, x: torch.Tensor, e: int, score_bias: torch.Tensor | None = None,
                  key_mask: torch.Tensor | None = None, causal: bool = False, key_bias: bool = True):
    """Model e through torch.nn.MultiheadAttention with its weights: output [B, N, D] and map [B, H, N, N].
    score_bias [B, H, N, N] is added to the scores (MHA's float attn_mask, one [N, N] per sample and head)."""
    Bx, Nx, Dx = x.shape[-3:]
    m = torch.nn.MultiheadAttention(Dx, HEADS, batch_first=True)
    in_bias = p[f"{name}.qkv.b"][e].clone()
    if not key_bias:
        in_bias[Dx : 2 * Dx] = 0
    with torch.no_grad():
        m.in_proj_weight.copy_(p[f"{name}.qkv.w"][e].T), m.in_proj_bias.copy_(in_bias)
        m.out_proj.weight.copy_(p[f"{name}.proj.w"][e].T), m.out_proj.bias.copy_(p[f"{name}.proj.b"][e])
    mask = torch.zeros(Bx, HEADS, Nx, Nx) if score_bias is None else score_bias.clone()
    if causal:
        mask = mask.masked_fill(torch.ones(Nx, Nx, dtype=torch.bool).triu(1), -math.inf)
    if key_mask is not None:
        mask = mask.masked_fill(~key_mask[:, None, None, :], -math.inf)
    out, A = m(x, x, x, attn_mask=mask.flatten(0, 1), need_weights=True, average_attn_weights=False)
    return out, A


@pytest.mark.parametrize("probes", [None, {}])  # scaled_dot_product_attention, or the explicit softmax
@pytest.mark.parametrize("causal", [False, True])
def test_attention_is_per_model_multihead_attention(causal, probes):
    p = jitter(nn.init_attention(rng(), "attn", D, HEADS))
    x = torch.randn(E, B, N, D)
    y = nn.attention(x, p, "attn", HEADS, causal=causal, probes=probes)
    for e in range(E):
        ref, A = mha_reference(p, "attn", x[e], e, causal=causal)
        torch.testing.assert_close(y[e], ref, **TOL)
        if probes is not None:
            torch.testing.assert_close(probes["attn.map"][e], A, **TOL)
    assert_grid_matches(lambda q: nn.attention(x, q, "attn", HEADS, causal=causal), p)


@pytest.mark.parametrize("index_axes", ["shared", "per model", "per sample"])
def test_attention_with_relative_bias_and_key_mask(index_axes):
    """b_z by an integer distance per (query, key), as the graph transformer's shortest-path b_z, plus dropped
    key tokens (token sparsification)."""
    Z = 4
    p = jitter(nn.init_attention(rng(), "attn", D, HEADS, rel_buckets=Z))
    x = torch.randn(E, B, N, D)
    shape = {"shared": (N, N), "per model": (E, N, N), "per sample": (E, B, N, N)}[index_axes]
    dist = torch.randint(Z, shape)
    key_mask = torch.rand(E, B, N) < 0.7
    key_mask[..., 0] = True  # every query keeps a key
    probes = {}
    y = nn.attention(x, p, "attn", HEADS, rel_index=dist, key_mask=key_mask, probes=probes)
    torch.testing.assert_close(nn.attention(x, p, "attn", HEADS, rel_index=dist, key_mask=key_mask), y, **TOL)
    per_sample = dist.expand(E, B, N, N) if dist.dim() != 3 else dist[:, None].expand(E, B, N, N)
    for e in range(E):
        b_z = torch.stack([p["attn.rel_bias"][e][per_sample[e, b]] for b in range(B)])  # b_{dist(i,j)}  [B, N, N, H]
        ref, A = mha_reference(p, "attn", x[e], e, b_z.permute(0, 3, 1, 2), key_mask[e])
        torch.testing.assert_close(y[e], ref, **TOL)
        torch.testing.assert_close(probes["attn.map"][e], A, **TOL)
    assert (probes["attn.map"].transpose(-1, -2)[~key_mask[:, :, None].expand(E, B, HEADS, N)] == 0).all()
    assert_grid_matches(lambda q: nn.attention(x, q, "attn", HEADS, rel_index=dist, key_mask=key_mask), p)


def test_relative_positions_index_the_offset():
    idx = nn.relative_positions(4)
    assert idx.min() == 0 and idx.max() == 6 and idx[0, 3] == 6 and idx[3, 0] == 0
    assert all(idx[i, j] == idx[i + 1, j + 1] for i in range(3) for j in range(3))  # depends on j - i only


def test_key_bias_off_is_attention_with_a_zero_key_bias_and_no_gradient_there():
    p = jitter(nn.init_attention(rng(), "attn", D, HEADS))
    p["attn.qkv.b"].requires_grad_()
    x = torch.randn(E, B, N, D)
    y = nn.attention(x, p, "attn", HEADS, key_bias=False)
    for e in range(E):
        torch.testing.assert_close(y[e], mha_reference(p, "attn", x[e], e, key_bias=False)[0], **TOL)
    y.square().sum().backward()
    grad = p["attn.qkv.b"].grad
    assert (grad[:, D : 2 * D] == 0).all() and (grad[:, :D] != 0).any()


# ---- selective scan, graph aggregation ----------------------------------------------------------------------------

def selective_scan_reference(p: dict, x: torch.Tensor) -> torch.Tensor:
    """S6 one model, one sequence, one step at a time (Gu & Dao 2023, Alg. 2)."""
    Em, Bm, L, Dm = x.shape
    y = torch.empty_like(x)
    for e in range(Em):
        W_dt, b_dt, W_B, W_C = (p[f"ssm.{k}"][e] for k in ("dt_proj.w", "dt_proj.b", "B_proj.w", "C_proj.w"))
        A, Dskip = -torch.exp(p["ssm.A_log"][e]), p["ssm.D"][e]  # [D, n], [D]
        for b in range(Bm):
            h = torch.zeros(A.shape)
            for t in range(L):
                x_t = x[e, b, t]
                delta = F.softplus(x_t @ W_dt + b_dt)
                B_t, C_t = x_t @ W_B, x_t @ W_C
                h = torch.exp(delta[:, None] * A) * h + (delta * x_t)[:, None] * B_t[None, :]
                y[e, b, t] = h @ C_t + Dskip * x_t
    return y


def test_selective_scan_is_the_per_step_recurrence():
    p = jitter(nn.init_selective_scan(rng(), "ssm", D, state=4))
    p["ssm.A_log"] = p["ssm.A_log"].abs().log1p()  # keep A < 0 and of order 1
    x = torch.randn(E, B, 6, D)
    probes = {}
    y = nn.selective_scan(x, p, "ssm", probes)
    assert y.shape == x.shape and probes["ssm.delta"].shape == x.shape and (probes["ssm.delta"] > 0).all()
    torch.testing.assert_close(y, selective_scan_reference(p, x), **TOL)
    assert_grid_matches(lambda q: nn.selective_scan(x, q, "ssm"), p)


@pytest.mark.parametrize("L", [1, 2, 5, 8, 13])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_parallel_selective_scan_equals_the_sequential_one_forward_and_gradient(L, dtype):
    p = {k: v.to(dtype).requires_grad_() for k, v in jitter(nn.init_selective_scan(rng(), "ssm", D, state=4)).items()}
    x = torch.randn(E, B, L, D, dtype=dtype, requires_grad=True)
    up = torch.randn(E, B, L, D, dtype=dtype)  # a generic upstream gradient
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    got = []
    for scan in (nn.selective_scan_parallel, nn.selective_scan_sequential):
        y = scan(x, p, "ssm")
        grads = torch.autograd.grad((y * up).sum(), [x, *p.values()], allow_unused=True)  # L = 1: A unused
        got.append((y, *(torch.zeros_like(t) if g is None else g for g, t in zip(grads, [x, *p.values()]))))
    for what, fast, ref in zip(["y", "x", *p], *got):
        torch.testing.assert_close(fast, ref, **tol, msg=lambda m: f"{what}: {m}")


def test_the_parallel_selective_scan_survives_long_products_of_decays():
    """Strong decays over a long sequence: products of A_bar underflow to 0, nothing overflows or becomes NaN."""
    p = jitter(nn.init_selective_scan(rng(), "ssm", D, state=4))
    p["ssm.dt_proj.b"] = p["ssm.dt_proj.b"] + 5.0  # Delta ~ 5: A_bar <= e^-5 per step
    x = torch.randn(E, B, 200, D)
    y, ref = nn.selective_scan_parallel(x, p, "ssm"), nn.selective_scan_sequential(x, p, "ssm")
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_the_selective_scan_on_cuda_is_the_parallel_form_and_equals_the_cpu_one():
    p = jitter(nn.init_selective_scan(rng(), "ssm", D, state=4))
    x = torch.randn(E, B, 13, D)
    y = nn.selective_scan(x.cuda(), {k: v.cuda() for k, v in p.items()}, "ssm")
    torch.testing.assert_close(y.cpu(), nn.selective_scan_sequential(x, p, "ssm"), rtol=1e-4, atol=1e-5)


def test_selective_scan_init_follows_mamba():
    p = nn.init_selective_scan(rng(), "ssm", D, state=4, dt_min=1e-3, dt_max=0.1)
    dt = F.softplus(p["ssm.dt_proj.b"])
    assert ((dt >= 1e-3 * 0.999) & (dt <= 0.1 * 1.001)).all() and dt.std() > 0
    torch.testing.assert_close(-torch.exp(p["ssm.A_log"][1, 2]), -torch.arange(1.0, 5.0))
    assert set(p) == {"ssm.dt_proj.w", "ssm.dt_proj.b", "ssm.B_proj.w", "ssm.C_proj.w", "ssm.A_log", "ssm.D"}


@pytest.mark.parametrize("adj_axes", [(), (E,), (E, B)])
def test_graph_aggregate_is_the_gcn_rule_per_graph(adj_axes):
    n = 5
    p = jitter(nn.init_linear(rng(), "gcn", D, 4))
    x = torch.randn(E, B, n, D)
    adj = (torch.rand(*adj_axes, n, n) < 0.4).float()
    adj = ((adj + adj.transpose(-1, -2)) > 0).float() * (1 - torch.eye(n))
    y = nn.graph_aggregate(x, adj, p, "gcn")
    graphs = (adj[:, None] if adj.dim() == 3 else adj).expand(E, B, n, n)  # one graph per (model, sample)
    for e in range(E):
        for b in range(B):
            A_tilde = graphs[e, b] + torch.eye(n)  # self-loops
            D_inv_sqrt = torch.diag(A_tilde.sum(1) ** -0.5)
            ref = D_inv_sqrt @ A_tilde @ D_inv_sqrt @ x[e, b] @ p["gcn.w"][e] + p["gcn.b"][e]
            torch.testing.assert_close(y[e, b], ref, **TOL)
    assert_grid_matches(lambda q: nn.graph_aggregate(x, adj, q, "gcn"), p)


# ---- gradients, shapes --------------------------------------------------------------------------------------------

def test_gradients_match_finite_differences():
    """Autograd through the masked, biased attention (scaled_dot_product_attention path, whose bias b_z must get
    its gradient) and the scan, against central differences in float64."""
    Em, n = 2, 3
    att = {k: v.double() for k, v in jitter(nn.init_attention(rng(Em), "attn", 4, HEADS, rel_buckets=3)).items()}
    ssm = {k: v.double() for k, v in jitter(nn.init_selective_scan(rng(Em), "ssm", 4, state=2)).items()}
    x = torch.randn(Em, 1, n, 4, dtype=torch.float64)
    dist = torch.randint(3, (n, n))
    key_mask = torch.tensor([True, False, True]).expand(Em, 1, n)

    def f(qkv_w, rel_bias, A_log, dt_w):
        h = nn.attention(x, {**att, "attn.qkv.w": qkv_w, "attn.rel_bias": rel_bias}, "attn", HEADS, causal=True,
                         rel_index=dist, key_mask=key_mask)
        return nn.selective_scan(h, {**ssm, "ssm.A_log": A_log, "ssm.dt_proj.w": dt_w}, "ssm")

    inputs = tuple(t.clone().requires_grad_() for t in (att["attn.qkv.w"], att["attn.rel_bias"], ssm["ssm.A_log"],
                                                       ssm["ssm.dt_proj.w"]))
    assert torch.autograd.gradcheck(f, inputs)


@settings(max_examples=15, deadline=None)
@given(models=st.integers(1, 4), grid=st.integers(0, 2), data=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       d_in=st.integers(1, 5), d_out=st.integers(1, 5))
def test_linear_and_layer_norm_over_shapes(models, grid, data, d_in, d_out):
    p = {**jitter(nn.init_linear(rng(models), "fc", d_in, d_out)), **jitter(nn.init_layer_norm(rng(models), "ln", d_out))}
    if grid:
        p = on_grid(p, grid)
    x = torch.randn(models, *data, d_in)
    y = nn.layer_norm(nn.linear(x, p, "fc", len(data)), p, "ln", len(data))
    assert y.shape == (*[grid] * bool(grid), models, *data, d_out)
    for idx in [(g, e) for g in range(grid) for e in range(models)] if grid else [(e,) for e in range(models)]:
        w, b, lw, lb = (p[k][idx] for k in ("fc.w", "fc.b", "ln.w", "ln.b"))
        torch.testing.assert_close(y[idx], F.layer_norm(x[idx[-1]] @ w + b, (d_out,), lw, lb), **TOL)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 6), heads=st.sampled_from([1, 2, 4]), causal=st.booleans())
def test_attention_over_token_counts_and_heads(n, heads, causal):
    d = 8
    p = jitter(nn.init_attention(rng(), "attn", d, heads))
    x = torch.randn(E, B, n, d)
    y = nn.attention(x, p, "attn", heads, causal=causal)
    for e in range(E):
        m = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        with torch.no_grad():
            m.in_proj_weight.copy_(p["attn.qkv.w"][e].T), m.in_proj_bias.copy_(p["attn.qkv.b"][e])
            m.out_proj.weight.copy_(p["attn.proj.w"][e].T), m.out_proj.bias.copy_(p["attn.proj.b"][e])
        mask = torch.ones(n, n, dtype=torch.bool).triu(1) if causal else None
        torch.testing.assert_close(y[e], m(x[e], x[e], x[e], attn_mask=mask, need_weights=False)[0], **TOL)


# ---- one query row, sparse graph aggregation (speed paths, equal to the plain layers) -----------------------------

def _grads(out: torch.Tensor, p: dict) -> dict:
    return dict(zip(p, torch.autograd.grad(out.square().sum(), list(p.values()))))


@pytest.mark.parametrize("key_bias", [True, False])
@pytest.mark.parametrize("query", [0, 3])
def test_attention_query_is_the_row_of_attention_forward_and_gradients(query, key_bias):
    """attention_query never forms K or V (reassociated through the query); it equals attention()'s row `query`,
    with relative bias and dropped keys, on the output, the map and the gradients of every parameter and of x
    (through the output and through the map), in float64."""
    Z = 4
    p = {k: v.double().requires_grad_() for k, v in jitter(nn.init_attention(rng(), "attn", D, HEADS, rel_buckets=Z)).items()}
    x = torch.randn(E, B, N, D, dtype=torch.float64, requires_grad=True)
    dist = torch.randint(Z, (E, B, N, N))
    key_mask = torch.rand(E, B, N) < 0.6
    key_mask[..., 1] = True
    full_probes, row_probes = {}, {}
    full = nn.attention(x, p, "attn", HEADS, rel_index=dist, key_mask=key_mask, key_bias=key_bias,
                        probes=full_probes)[..., query, :]
    row = nn.attention_query(x, p, "attn", HEADS, query=query, rel_index=dist[..., query, :], key_mask=key_mask,
                             key_bias=key_bias, probes=row_probes)
    torch.testing.assert_close(row, full, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(row_probes["attn.map"][..., 0, :], full_probes["attn.map"][..., query, :],
                               atol=1e-12, rtol=1e-12)
    # gradients of every weight and of x, through the output and through the map (a loss on the probes)
    loss = lambda y, probes: y.square().sum() + probes["attn.map"][..., 0, :].sin().sum()  # noqa: E731
    wrt = {**p, "x": x}
    g_full = dict(zip(wrt, torch.autograd.grad(loss(full, {"attn.map": full_probes["attn.map"][..., query:query + 1, :]}),
                                               list(wrt.values()))))
    g_row = dict(zip(wrt, torch.autograd.grad(loss(row, row_probes), list(wrt.values()))))
    for k in wrt:
        torch.testing.assert_close(g_row[k], g_full[k], atol=1e-12, rtol=1e-10, msg=k)
    assert (g_row["attn.rel_bias"] != 0).any() and (g_row["x"] != 0).any()
    x = x.detach()
    assert_grid_matches(lambda q: nn.attention_query(x.float(), {k: v.float() for k, v in q.items()}, "attn", HEADS,
                                                     query=query, rel_index=dist[..., query, :], key_mask=key_mask),
                        {k: v.detach() for k, v in p.items()})


def test_attention_query_in_float32_is_the_plain_row_within_1e5():
    p = jitter(nn.init_attention(rng(), "attn", 16, 1, rel_buckets=4))
    x = torch.randn(E, 32, 37, 16)
    dist = torch.randint(4, (E, 32, 37))
    full = nn.attention(x, p, "attn", 1, rel_index=dist[..., None, :].expand(E, 32, 37, 37), key_bias=False)[..., 0, :]
    row = nn.attention_query(x, p, "attn", 1, rel_index=dist, key_bias=False)
    assert float((row - full).abs().max() / full.abs().max()) < 1e-5  # relative to the outputs' scale


@pytest.mark.parametrize("weighted", [False, True])
def test_neighbour_lists_aggregate_as_the_dense_normalized_adjacency(weighted):
    """The sparse GCN rule (padded neighbour lists + gather) equals the dense D^-1/2 (A + I) D^-1/2 X W + b, on
    graphs of unequal degree (padding), on every node and on a subset of rows, forward and gradients (float64)."""
    n = 9
    adj = ((torch.rand(E, n, n) < 0.35).double())
    adj = ((adj + adj.transpose(-1, -2)) > 0).double() * (1 - torch.eye(n, dtype=torch.float64))
    adj[0, 0, :] = adj[0, :, 0] = 0  # an isolated node: its list is itself alone
    if weighted:
        w = torch.rand(E, n, n, dtype=torch.float64).triu(1)
        adj = adj * (1 + w + w.transpose(-1, -2))  # symmetric edge weights in (1, 2)
    index, weight = nn.neighbour_lists(adj)
    K = int(((adj + torch.eye(n)) != 0).sum(-1).max())
    assert index.shape == (E, n, K) and (weight[0, 0, 1:] == 0).all() and index[0, 0, 0] == 0
    dense = nn.normalized_adjacency(adj)
    rebuilt = torch.zeros_like(dense).scatter_add_(-1, index, weight)
    assert torch.equal(rebuilt, dense)  # entry for entry, padding adds 0
    p = {k: v.double().requires_grad_() for k, v in jitter(nn.init_linear(rng(), "gcn", D, 4)).items()}
    x = torch.randn(E, n, D, dtype=torch.float64, requires_grad=True)
    y_dense = nn.graph_aggregate(x[:, None], adj, p, "gcn")[:, 0]
    y_sparse = nn.graph_aggregate_sparse(x, index, weight, p, "gcn")
    torch.testing.assert_close(y_sparse, y_dense, atol=1e-12, rtol=1e-12)
    both = list(p.values()) + [x]
    for a, b in zip(torch.autograd.grad(y_sparse.square().sum(), both), torch.autograd.grad(y_dense.square().sum(), both)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    rows = torch.randint(n, (E, 4))
    pick = lambda t: torch.gather(t, 1, rows[..., None].expand(-1, -1, K))  # noqa: E731
    torch.testing.assert_close(nn.graph_aggregate_sparse(x, pick(index), pick(weight), p, "gcn"),
                               torch.gather(y_dense, 1, rows[..., None].expand(-1, -1, 4)), atol=1e-12, rtol=1e-12)
