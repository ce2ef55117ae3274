"""The lowrank study's peer for `theorylab bench lowrank --peer`: JAX, vmap over models + jit of the whole run
(lax.scan over the SGD steps, each step's minibatch drawn inside with jax.random from the model's fixed training
set). Same data model (label_model = pattern_pairs, random-sign irrelevant tokens, noise of norm tau), the same
one-layer Transformer F(X) = (1/L) sum_l a^T ReLU(W_O W_V X softmax(X^T W_K^T W_Q x_l)), hinge loss and plain SGD
on W_Q, W_K, W_V, W_O as the study's quick config (lora_rank = 0). What differs: its own random draws."""
from __future__ import annotations


import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, minibatch draw inside)"


def build(cfgs, steps: int):
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    d, M, k, L, m, B, n = cfg.d, cfg.M, cfg.k_rel, cfg.L, cfg.m, cfg.B, cfg.n_train
    n_rel, n_conf = cfg.n_rel, cfg.n_conf
    a = jnp.concatenate([jnp.full(m // 2, 1.0 / m), jnp.full(m - m // 2, -1.0 / m)])

    def one_sample(key):  # X [L, d], y: the pattern_pairs model
        ks = jax.random.split(key, 6)
        main = jax.random.randint(ks[0], (), 0, k)
        with_partner = jax.random.uniform(ks[1]) < 0.5
        y = jnp.where(main < k // 2, 1.0, -1.0) * jnp.where(with_partner, -1.0, 1.0)
        slot = jnp.argsort(jax.random.uniform(ks[2], (L,)))
        is_main = slot < n_rel
        is_partner = (slot >= n_rel) & (slot < n_rel + n_conf) & with_partner
        rel_sign = jnp.where(is_main | (slot < n_rel + n_conf // 2), 1.0, -1.0)
        irr = k + jax.random.randint(ks[3], (L,), 0, M - k)
        pattern = jnp.where(is_main, main, jnp.where(is_partner, (main + k // 2) % k, irr))
        irr_sign = jnp.where(jax.random.uniform(ks[4], (L,)) < 0.5, -1.0, 1.0)
        X = jax.nn.one_hot(pattern, d) * jnp.where(is_main | is_partner, rel_sign, irr_sign)[:, None]
        g = jax.random.normal(ks[5], (L, d))
        return X + cfg.tau * g / jnp.linalg.norm(g, axis=-1, keepdims=True), y

    def world(key):  # one model's initial weights and training set
        k1, k2 = jax.random.split(key)
        eye = jnp.eye(d)
        w = {"W_Q": cfg.delta * eye, "W_K": cfg.delta * eye, "W_V": cfg.v_init * eye,
             "W_O": cfg.xi_value * jax.random.normal(k1, (m, d))}
        X, y = jax.vmap(one_sample)(jax.random.split(k2, n))
        return w, X, y

    def loss(w, X, y):  # X [B, L, d]
        Q, K = X @ w["W_Q"].T, X @ w["W_K"].T
        attn = jax.nn.softmax(Q @ jnp.swapaxes(K, -1, -2), -1)  # [B, L(l), L(s)]
        pre = (attn @ X) @ w["W_V"].T @ w["W_O"].T  # [B, L, m]
        F = (jax.nn.relu(pre) @ a).mean(-1)
        return jnp.maximum(1 - y * F, 0).mean()

    def one_step(w, key, X, y):
        idx = jax.random.randint(key, (B,), 0, n)
        g = jax.grad(loss)(w, X[idx], y[idx])
        return jax.tree_util.tree_map(lambda p, gp: p - cfg.lr * gp, w, g)

    def train(w, X, y, keys):  # one model, keys [steps, 2]
        return jax.lax.scan(lambda w, key: (one_step(w, key, X, y), None), w, keys)[0]

    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.PRNGKey(0), E)
    w0, X, y = jax.jit(jax.vmap(world))(keys)
    step_keys = jax.vmap(lambda key: jax.random.split(key, steps))(keys)
    return run, (w0, X, y, step_keys)
