"""The group_imbalance study's peer for `theorylab bench group_imbalance --peer`: JAX, vmap over models + jit of
the whole run (lax.scan over the GD steps). Same data model (two-group Gaussian mixture, teacher labels from
H(W*, x) = mean_j sigmoid(w_j^T x)), same network, clamped cross-entropy and full-batch GD as the study's quick
config. What differs: its own random draws (jax.random), and the step is lr itself (the study's lr_rule =
curvature lowers it per cell from a power iteration at set-up, which the bench does not time)."""
from __future__ import annotations


import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run)"
PROB_CLAMP = 1e-7


def build(cfgs, steps: int):
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    d, K, N = cfg.d, cfg.K, cfg.N
    n2 = round(cfg.lam2 * N)

    def world(key):  # one model's teacher, training set and initialisation
        k = jax.random.split(key, 4)
        G = jax.random.normal(k[0], (d, K))
        W_star = cfg.teacher_scale * G / jnp.linalg.norm(G)
        g = jnp.arange(N) < n2  # minority first, as the study's training set
        mu = jnp.where(g, cfg.mu2, cfg.mu1)[:, None]
        sd = jnp.where(g, cfg.sigma2, cfg.sigma1)[:, None]
        X = mu + sd * jax.random.normal(k[1], (N, d))
        y = (jax.random.uniform(k[2], (N,)) < jax.nn.sigmoid(X @ W_star).mean(-1)).astype(jnp.float32)
        U = jax.random.normal(k[3], (d, K))
        W0 = W_star + cfg.init_radius * jnp.linalg.norm(W_star) * U / jnp.linalg.norm(U)
        return W0, X, y

    def loss(W, X, y):
        H = jnp.clip(jax.nn.sigmoid(X @ W).mean(-1), PROB_CLAMP, 1 - PROB_CLAMP)
        return -(y * jnp.log(H) + (1 - y) * jnp.log1p(-H)).mean()

    def train(W, X, y):  # one model, full-batch GD
        return jax.lax.scan(lambda W, _: (W - cfg.lr * jax.grad(loss)(W, X, y), None), W, None, length=steps)[0]

    run = jax.jit(jax.vmap(train))
    W0, X, y = jax.jit(jax.vmap(world))(jax.random.split(jax.random.PRNGKey(0), E))
    return run, (W0, X, y)
