"""The ICL study's peer for `theorylab bench icl --peer`: JAX, vmap over models + jit of the whole run (the prompt
sampler inside the step, lax.scan over the steps), the same data model, eq. (1), hinge loss and plain SGD as the
study's reference config (icl_peers.py says what each piece is and times more paths)."""
from __future__ import annotations


import jax  # the bench extra: a missing jax is reported when the peer loads

from theorylab.shared.icl_prompts import split_tasks

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, sampler inside)"


def prompt_sampler(cfg, B: int, L: int):
    """One model's batch of in-domain ICL prompts from a key: C [B, L, d_X + d_Y], Q [B, d_X + d_Y], z [B] (the
    data model of shared.icl_prompts; the icl_gpt2 peer draws from it too)."""
    import jax.numpy as jnp

    M1, M2, d_X, d_Y = cfg.M1, cfg.M2, cfg.d_X, cfg.d_Y
    tasks = jnp.array(split_tasks(cfg)[0])
    mu = cfg.beta * jnp.eye(M1, d_X)
    nu = jnp.eye(d_X)[M1 : M1 + M2]
    q = jnp.zeros(d_Y).at[0].set(1.0)

    def prompts(key):  # one model's batch: C [B, L, D], Q [B, D], z [B]
        k = jax.random.split(key, 8)
        ab = tasks[jax.random.randint(k[0], (B,), 0, tasks.shape[0])]
        a, b = ab[:, 0:1], ab[:, 1:2]
        u = jax.random.uniform(k[1], (B, L))
        other = jax.random.randint(k[2], (B, L), 0, M1 - 2)
        lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
        other = other + (other >= lo)
        other = other + (other >= hi)
        pat = jnp.where(u < cfg.alpha / 2, a, jnp.where(u < cfg.alpha, b, other))
        coin = jnp.where(jax.random.bernoulli(k[3], 0.5, (B, L)), 1.0, -1.0)
        y = jnp.where(pat == a, 1.0, jnp.where(pat == b, -1.0, coin))
        q_is_a = jax.random.bernoulli(k[4], 0.5, (B,))
        q_pat = jnp.where(q_is_a, ab[:, 0], ab[:, 1])
        z = jnp.where(q_is_a, 1.0, -1.0)

        def feats(key, pats):
            k1, k2 = jax.random.split(key)
            kap = (2 * jax.random.uniform(k1, pats.shape) - 1) * cfg.kappa
            return mu[pats] + kap[..., None] * nu[jax.random.randint(k2, pats.shape, 0, M2)]

        C = jnp.concatenate([feats(k[5], pat), y[..., None] * q], -1)
        Q = jnp.concatenate([feats(k[6], q_pat), jnp.zeros((B, d_Y))], -1)
        return C, Q, z

    return prompts


def build(cfgs, steps: int):
    """The jitted whole run (vmap over models of lax.scan over steps) and its inputs, for these models."""
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    M1, M2, d_X, d_Y, m, B, L = cfg.M1, cfg.M2, cfg.d_X, cfg.d_Y, cfg.m, cfg.B, cfg.l_tr
    D = d_X + d_Y
    tasks = jnp.array(split_tasks(cfg)[0])
    mu = cfg.beta * jnp.eye(M1, d_X)
    nu = jnp.eye(d_X)[M1 : M1 + M2]
    q = jnp.zeros(d_Y).at[0].set(1.0)
    a_vec = jnp.concatenate([jnp.full(m // 2, 1.0 / m), jnp.full(m - m // 2, -1.0 / m)])

    def init(key):
        eye = jnp.eye(D)
        return {"W_Q": cfg.delta * eye, "W_K": cfg.delta * eye, "W_V": cfg.v_init * eye,
                "W_O": cfg.xi * jax.random.normal(key, (m, D))}

    prompts = prompt_sampler(cfg, B, L)

    def loss(w, C, Q, z):
        s = jnp.einsum("bld,bd->bl", C, (Q @ w["W_Q"].T) @ w["W_K"])
        h = jnp.einsum("bl,bld->bd", jax.nn.softmax(s, -1), C) @ w["W_V"].T
        return jnp.maximum(1 - z * (jax.nn.relu(h @ w["W_O"].T) @ a_vec), 0).mean()

    def one_step(w, key):
        g = jax.grad(loss)(w, *prompts(key))
        return jax.tree_util.tree_map(lambda p, gp: p - cfg.lr * gp, w, g)

    def train(w, keys):  # one model, keys [steps, 2]
        return jax.lax.scan(lambda w, k: (one_step(w, k), None), w, keys)[0]

    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.PRNGKey(0), E)
    w0 = jax.vmap(init)(keys)
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(keys)
    return run, (w0, step_keys)
