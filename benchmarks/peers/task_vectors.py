"""The task_vectors study's peer for `theorylab bench task_vectors --peer`: JAX, vmap over models + jit of the whole
run (the section 1.1 sampler inside the step, lax.scan over the steps). Each bench model is one cell, which
fine-tunes two copies of the eq. (7) Transformer (tasks T1 and T2, from one Psi0) as the study does: hinge loss,
plain SGD at lr, B fresh sequences per step. Differences: its own random draws (jax.random, not the study's
counter-based streams); token noise (config noise, 0 by default) is drawn only when the config sets it, as the study."""
from __future__ import annotations

import math

import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, sampler inside)"


def build(cfgs, steps: int):
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    d, P, m, B = cfg.d, cfg.P, cfg.m, cfg.B
    lo, hi, h = cfg.n_star_min, cfg.n_star_max, cfg.n_hash_max
    eye = jnp.eye(d)
    irr = eye[3 : d - 1]  # v_j
    s = 1.0 / m if cfg.a_scale == "1/m" else 1.0 / math.sqrt(m)
    a = jnp.concatenate([jnp.full(m // 2, s), jnp.full(m - m // 2, -s)])
    alpha = cfg.alpha
    mus = jnp.stack([eye[0], alpha * eye[0] + math.sqrt(1 - alpha**2) * eye[1]])  # T1, T2

    def batch(key, mu):  # X [B, P, d], y [B]
        k = jax.random.split(key, 7)
        y = jnp.where(jax.random.bernoulli(k[0], 0.5, (B,)), 1.0, -1.0)
        n_star = lo + jax.random.randint(k[1], (B,), 0, hi - lo + 1)
        n_hash = jax.random.randint(k[2], (B,), 0, h + 1)
        slot = jnp.argsort(jax.random.uniform(k[3], (B, P)), axis=-1)
        kind = jnp.where(slot < n_star[:, None], 1, jnp.where(slot < (n_star + n_hash)[:, None], -1, 0))
        tok = irr[jax.random.randint(k[4], (B, P), 0, irr.shape[0])]
        if cfg.irrelevant_sign == "random":
            tok = tok * jnp.where(jax.random.bernoulli(k[5], 0.5, (B, P)), 1.0, -1.0)[..., None]
        X = jnp.where((kind != 0)[..., None], (kind * y[:, None])[..., None] * mu, tok)
        if cfg.noise > 0:
            X = X + cfg.noise * jax.random.normal(k[6], (B, P, d)) / math.sqrt(d)
        return X, y

    def loss(w, X, y):  # eq. (7), hinge
        S = jnp.einsum("bsd,de,ble->bsl", X, w["W"], X)  # x_s^T W x_l
        A = jax.nn.softmax(S, axis=1)  # over s
        Z = jnp.einsum("bsl,bsd->bld", A, X)
        f = (jax.nn.relu(Z @ w["V"].T) @ a).mean(-1)
        return jnp.maximum(1 - y * f, 0).mean()

    def train(w, mu, keys):  # one task-model, keys [steps, 2]
        def step(w, key):
            g = jax.grad(loss)(w, *batch(key, mu))
            return jax.tree_util.tree_map(lambda p, gp: p - cfg.lr * gp, w, g), None
        return jax.lax.scan(step, w, keys)[0]

    run = jax.jit(jax.vmap(train))  # over the 2E task-models
    keys = jax.random.split(jax.random.PRNGKey(0), 2 * E)
    k0 = jax.random.split(jax.random.PRNGKey(1), E)
    psi0 = {"W": cfg.w_init * jax.vmap(lambda k: jax.random.normal(k, (d, d)))(k0),
            "V": cfg.v_init * jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (m, d)))(k0)}
    w0 = jax.tree_util.tree_map(lambda v: jnp.concatenate([v, v]), psi0)  # task-major, from one Psi0 per cell
    mu = jnp.repeat(mus, E, axis=0)
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(keys)
    return run, (w0, mu, step_keys)
