"""The icl_gpt2 study's peer for `theorylab bench icl_gpt2 --peer`: JAX, vmap over models + jit of the whole run
(lax.scan over the steps, each step's ICL prompts sampled inside with jax.random), the same data model (section 1.1:
a training task (a, b) per prompt, contexts on a or b with probability alpha/2 each, x = mu + kappa nu, labels +-q),
the same GPT-2 (read-in, right-aligned learned positions, pre-LayerNorm blocks of causal multi-head attention and a
tanh-GELU MLP, final LayerNorm, read-out at the query token; the key bias held at 0), the hinge loss and AdamW with
torch's update (decoupled weight decay, bias correction).

What differs: the random draws (jax.random, not the study's counter-based streams); the init is GPT-2's shape with
plain normal draws; the forward computes every token in every layer, as transformers' Flax GPT-2 does (the study
computes only the query token in the last layer, where nothing else is read)."""
from __future__ import annotations

import math

import jax  # the bench extra: a missing jax is reported when the peer loads

from theorylab.core.bench import load_peer

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, sampler inside)"


def build(cfgs, steps: int):
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    d_X, d_Y, B, L = cfg.d_X, cfg.d_Y, cfg.B, cfg.l_tr
    D, H, layers, m = cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.n_inner_mult * cfg.n_embd
    d, P, N = d_X + d_Y, cfg.n_positions, L + 1
    b1, b2, eps, wd = 0.9, 0.999, 1e-8, cfg.weight_decay

    icl_prompts = load_peer("icl").prompt_sampler(cfg, B, L)  # the icl peer's sampler: the same data model

    def prompts(key):  # one model's batch: X [B, N, d] (contexts then the query), z [B]
        C, Q, z = icl_prompts(key)
        return jnp.concatenate([C, Q[:, None]], 1), z

    def init(key):
        ks = iter(jax.random.split(key, 4 + 4 * layers))
        std, proj_std = cfg.init_std, cfg.init_std / math.sqrt(2 * layers)
        w = {"read_in.w": jax.random.normal(next(ks), (d, D)) / math.sqrt(d), "read_in.b": jnp.zeros(D),
             "wpe": std * jax.random.normal(next(ks), (P, D)), "ln_f.w": jnp.ones(D), "ln_f.b": jnp.zeros(D),
             "read_out.w": jax.random.normal(next(ks), (D, 1)) / math.sqrt(D), "read_out.b": jnp.zeros(1)}
        for l in range(layers):
            w[f"{l}"] = {"ln_1.w": jnp.ones(D), "ln_1.b": jnp.zeros(D), "ln_2.w": jnp.ones(D), "ln_2.b": jnp.zeros(D),
                         "qkv.w": std * jax.random.normal(next(ks), (D, 3 * D)), "q.b": jnp.zeros(D), "v.b": jnp.zeros(D),
                         "proj.w": proj_std * jax.random.normal(next(ks), (D, D)), "proj.b": jnp.zeros(D),
                         "fc1.w": std * jax.random.normal(next(ks), (D, m)), "fc1.b": jnp.zeros(m),
                         "fc2.w": proj_std * jax.random.normal(next(ks), (m, D)), "fc2.b": jnp.zeros(D)}
        return w

    def ln(x, g, b):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * g + b

    causal = jnp.tril(jnp.ones((N, N), bool))

    def forward(w, X):  # X [B, N, d] -> [B]
        h = X @ w["read_in.w"] + w["read_in.b"] + w["wpe"][P - N :]
        for l in range(layers):
            p = w[f"{l}"]
            qkv = ln(h, p["ln_1.w"], p["ln_1.b"]) @ p["qkv.w"]
            qh, kh, vh = (t.reshape(B, N, H, D // H).transpose(0, 2, 1, 3) for t in jnp.split(qkv, 3, -1))
            qh = qh + p["q.b"].reshape(H, 1, D // H)  # no key bias (the study holds it at 0)
            vh = vh + p["v.b"].reshape(H, 1, D // H)
            s = jnp.where(causal, qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(D // H), -jnp.inf)
            o = (jax.nn.softmax(s, -1) @ vh).transpose(0, 2, 1, 3).reshape(B, N, D)
            h = h + o @ p["proj.w"] + p["proj.b"]
            a = jax.nn.gelu(ln(h, p["ln_2.w"], p["ln_2.b"]) @ p["fc1.w"] + p["fc1.b"], approximate=True)
            h = h + a @ p["fc2.w"] + p["fc2.b"]
        return (ln(h[:, -1], w["ln_f.w"], w["ln_f.b"]) @ w["read_out.w"] + w["read_out.b"])[:, 0]

    def loss(w, X, z):
        return jnp.maximum(1 - z * forward(w, X), 0).mean()

    def one_step(state, key):
        w, mo, ve, t = state
        g = jax.grad(loss)(w, *prompts(key))
        t = t + 1
        mo = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b, mo, g)
        ve = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, ve, g)
        step_size, bc2 = cfg.lr / (1 - b1**t), jnp.sqrt(1 - b2**t)
        w = jax.tree_util.tree_map(lambda p, a, b: p * (1 - cfg.lr * wd) - step_size * a / (jnp.sqrt(b) / bc2 + eps),
                                   w, mo, ve)
        return (w, mo, ve, t), None

    def train(w, keys):  # one model, keys [steps, 2]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, w)
        return jax.lax.scan(one_step, (w, zeros, zeros, 0.0), keys)[0][0]

    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.PRNGKey(0), E)
    w0 = jax.vmap(init)(keys)
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(keys)
    return run, (w0, step_keys)
