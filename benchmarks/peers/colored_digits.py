"""The colored_digits study's peer for `theorylab bench colored_digits --peer`: JAX, vmap over models + jit of the
whole fine-tuning run (batch indices drawn inside the step, lax.scan over the steps). Each bench model is one cell,
which fine-tunes one copy of the small ViT per colour task (config.task_ps, 7 by default) from its Psi0, as the study
does: patches -> linear + pos -> depth x [LN, MHSA (no key bias), +res, LN, MLP (exact GELU), +res] -> LN(mean over
tokens) -> frozen 2-way head; cross-entropy on parity; AdamW (lr, weight_decay, torch's defaults otherwise); B images
with replacement from the 1,347 training digits coloured with the task's fixed colours, plus the seed's pixel noise.
Differences: its own random draws (jax.random) and a random Psi0 (bench times the fine-tuning step; the study's
pre-training is set-up there too)."""
from __future__ import annotations

import math

import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, batches drawn inside)"


def build(cfgs, steps: int):
    import jax.numpy as jnp
    import numpy as np

    from theorylab.shared.colored_digits import digits

    cfg, E = cfgs[0], len(cfgs)
    ps = cfg.task_ps
    T, D, H, pt, B = len(ps), cfg.width, cfg.heads, cfg.patch, cfg.B
    img, digit = (np.asarray(t) for t in digits(cfg.test_every)["train"])
    N, n_tok, din = len(digit), (8 // pt) ** 2, 2 * pt * pt
    odd = jnp.asarray(digit % 2 == 1)
    images = jnp.asarray(img)
    key = jax.random.PRNGKey(0)

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * w + b

    def patchify(X):  # [B, 2, 8, 8] -> [B, n_tok, 2 p p]
        x = X.reshape(B, 2, 8 // pt, pt, 8 // pt, pt).transpose(0, 2, 4, 1, 3, 5)
        return x.reshape(B, n_tok, din)

    def logits(w, head, X):
        h = patchify(X) @ w["patch.w"] + w["patch.b"] + w["pos"]
        for l in range(cfg.depth):
            b = f"blocks.{l}."
            a = ln(h, w[b + "ln1.w"], w[b + "ln1.b"])
            qkv = a @ w[b + "attn.qkv.w"] + w[b + "attn.qkv.b"] * jnp.concatenate(
                [jnp.ones(D), jnp.zeros(D), jnp.ones(D)])
            q, k, v = (t.reshape(B, n_tok, H, D // H).transpose(0, 2, 1, 3) for t in jnp.split(qkv, 3, -1))
            A = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(D // H), -1)
            o = (A @ v).transpose(0, 2, 1, 3).reshape(B, n_tok, D)
            h = h + o @ w[b + "attn.proj.w"] + w[b + "attn.proj.b"]
            m = ln(h, w[b + "ln2.w"], w[b + "ln2.b"])
            h = h + jax.nn.gelu(m @ w[b + "mlp.fc1.w"] + w[b + "mlp.fc1.b"], approximate=False) @ w[b + "mlp.fc2.w"] \
                + w[b + "mlp.fc2.b"]
        return ln(h.mean(1), w["norm.w"], w["norm.b"]) @ head

    def loss(w, head, X, y):
        return -jnp.take_along_axis(jax.nn.log_softmax(logits(w, head, X), -1), y[:, None], -1).mean()

    b1, b2, eps, wd, lr = 0.9, 0.999, 1e-8, cfg.weight_decay, cfg.lr

    def train(w, head, red, noise, keys):  # one task-model: red [N] bool, noise [N, 2, 8, 8], keys [steps, 2]
        def step(carry, xs):
            w, m, v = carry
            key, t = xs
            idx = jax.random.randint(key, (B,), 0, N)
            r = red[idx][:, None, None].astype(jnp.float32)
            X = jnp.stack([images[idx] * r, images[idx] * (1 - r)], 1) + noise[idx]
            g = jax.grad(loss)(w, head, X, odd[idx].astype(jnp.int32))
            m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
            c1, c2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)
            w = jax.tree_util.tree_map(lambda p, m, v: p * (1 - lr * wd) - lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
                                       w, m, v)
            return (w, m, v), None
        zeros = jax.tree_util.tree_map(jnp.zeros_like, w)
        return jax.lax.scan(step, (w, zeros, zeros), (keys, jnp.arange(steps, dtype=jnp.float32)))[0][0]

    def init(key):
        ks = iter(jax.random.split(key, 64))
        w = {"patch.w": jax.random.normal(next(ks), (din, D)) / math.sqrt(din), "patch.b": jnp.zeros(D),
             "pos": 0.02 * jax.random.normal(next(ks), (n_tok, D)), "norm.w": jnp.ones(D), "norm.b": jnp.zeros(D)}
        for l in range(cfg.depth):
            b = f"blocks.{l}."
            w.update({b + "ln1.w": jnp.ones(D), b + "ln1.b": jnp.zeros(D), b + "ln2.w": jnp.ones(D),
                      b + "ln2.b": jnp.zeros(D), b + "attn.qkv.b": jnp.zeros(3 * D), b + "attn.proj.b": jnp.zeros(D),
                      b + "mlp.fc1.b": jnp.zeros(cfg.mlp), b + "mlp.fc2.b": jnp.zeros(D),
                      b + "attn.qkv.w": jax.random.normal(next(ks), (D, 3 * D)) / math.sqrt(D),
                      b + "attn.proj.w": jax.random.normal(next(ks), (D, D)) / math.sqrt(D),
                      b + "mlp.fc1.w": jax.random.normal(next(ks), (D, cfg.mlp)) / math.sqrt(D),
                      b + "mlp.fc2.w": jax.random.normal(next(ks), (cfg.mlp, D)) / math.sqrt(cfg.mlp)})
        return w

    k_init, k_red, k_noise, k_steps = jax.random.split(key, 4)
    psi0 = jax.vmap(init)(jax.random.split(k_init, E))
    w0 = jax.tree_util.tree_map(lambda v: jnp.tile(v, (T,) + (1,) * (v.ndim - 1)), psi0)  # task-major, [T*E, ...]
    head = jnp.broadcast_to(jax.random.normal(key, (D, 2)) / math.sqrt(D), (T * E, D, 2))
    p = jnp.repeat(jnp.asarray(ps, dtype=jnp.float32), E)[:, None]
    red = (jax.random.uniform(k_red, (T * E, N)) < p) == odd[None]
    noise = jnp.tile(cfg.noise * jax.random.normal(k_noise, (E, N, 2, 8, 8)), (T, 1, 1, 1, 1))
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(jax.random.split(k_steps, T * E))
    return jax.jit(jax.vmap(train)), (w0, head, red, noise, step_keys)
