"""The Mamba study's peer for `theorylab bench mamba --peer`: JAX, vmap over models + jit of the whole run (the
training pool drawn inside, lax.scan over the GD steps, lax.associative_scan for the selective scan), written as a
JAX user would write the study's reference model: the gated SSM h_l = (1 - g_l) h_{l-1} + g_l x_l (g_l =
sigmoid(w^T x_l), W_B = W_C = I), the mean read-out (1/L) sum_l sum_i a_i ReLU(v_i^T h_l) with a_i = +-1/m fixed,
hinge loss, full-batch GD on n_train majority-voting sequences (alpha_r, alpha_c, +-nu_j irrelevant tokens, noise
tau), w and V trained. Only the default form is covered (majority, sigmoid gain, identity W_B/W_C, mean read-out,
GD, B = 0); its random draws are its own."""
from __future__ import annotations


import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, associative scan)"


def build(cfgs, steps: int):
    """The jitted whole run (vmap over models of lax.scan over steps) and its inputs, for these models."""
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    d, m, L, M, N = cfg.d, cfg.m, cfg.L, cfg.M, cfg.n_train
    if (cfg.regime, cfg.gain, cfg.bc, cfg.readout, cfg.optimizer, cfg.B) != ("majority", "sigmoid", "identity", "mean", "gd", 0):
        raise ValueError("the mamba peer covers the default form only (majority, sigmoid gain, identity W_B/W_C, "
                         "mean read-out, full-batch GD)")
    a_vec = jnp.concatenate([jnp.full(m // 2, 1.0 / m), jnp.full(m - m // 2, -1.0 / m)])
    P = jnp.eye(d)[:M]  # o_+, o_-, nu_j

    def pool(key):  # one model's training set: X [N, L, d], y [N]
        k = jax.random.split(key, 5)
        y = jnp.where(jax.random.bernoulli(k[0], 0.5, (N,)), 1.0, -1.0)
        slot = jnp.argsort(jax.random.uniform(k[1], (N, L)), axis=-1)  # a random permutation of positions
        kind = jnp.where(slot < cfg.n_r, 1, jnp.where(slot < cfg.n_r + cfg.n_c, -1, 0))
        irr = P[2 + jax.random.randint(k[2], (N, L), 0, M - 2)]
        irr = irr * jnp.where(jax.random.bernoulli(k[3], 0.5, (N, L)), 1.0, -1.0)[..., None]
        cls = jnp.where(kind * y[:, None] > 0, 0, 1)
        X = jnp.where((kind != 0)[..., None], P[cls], irr) + cfg.tau * jax.random.normal(k[4], (N, L, d))
        return X, y

    def states(w, X):  # every state h_l [N, L, d] of h_l = (1 - g_l) h_{l-1} + g_l x_l, as an associative scan
        g = jax.nn.sigmoid(X @ w)[..., None]  # [N, L, 1]

        def combine(first, second):  # (A1, b1) then (A2, b2): h -> A2 (A1 h + b1) + b2
            return first[0] * second[0], second[0] * first[1] + second[1]

        return jax.lax.associative_scan(combine, (1 - g, g * X), axis=1)[1]

    def loss(p, X, y):
        pre = states(p["w"], X) @ p["V"].T  # [N, L, m]
        f = jax.nn.relu(pre).mean(1) @ a_vec  # [N]
        return jnp.maximum(1 - y * f, 0).mean()

    def train(key):  # one model: init, pool, `steps` GD steps
        k_init, k_pool = jax.random.split(key)
        p = {"w": jnp.zeros(d), "V": cfg.v_init * jax.random.normal(k_init, (m, d)) / jnp.sqrt(d)}
        X, y = pool(k_pool)

        def step(p, _):
            g = jax.grad(loss)(p, X, y)
            return jax.tree_util.tree_map(lambda q, gq: q - cfg.lr * gq, p, g), None

        return jax.lax.scan(step, p, None, length=steps)[0]

    run = jax.jit(jax.vmap(train))
    return run, (jax.random.split(jax.random.PRNGKey(0), E),)
