"""The ViT study's peer for `theorylab bench vit --peer`: JAX, vmap over models + jit of the whole run (lax.scan
over the steps), the data drawn inside the compiled program with jax.random: the same synthetic data model
(orthonormal patterns, n_* label-relevant and n_# confusion tokens at random positions, irrelevant patterns
elsewhere, noise of norm tau U[0, 1] in a uniform direction), either fresh examples every step (n_train = 0) or
minibatches of B drawn with replacement from each model's N training examples; the same one-layer attention +
two-layer perceptron of eq. (1) (W_Q, W_K, W_V near I, W_O ~ N(0, 1/d), a = +-1/sqrt(m) fixed), the hinge loss
and plain SGD. What differs: the random numbers (jax.random, not the study's counter-based streams); the peer
covers the configs the bench runs (no sparsification, no spurious or large-noise tokens, synthetic data)."""
from __future__ import annotations

import math

import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, sampler inside)"


def build(cfgs, steps: int):
    """The jitted whole run (vmap over models of lax.scan over steps) and its inputs, for these models."""
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    if cfg.data != "synthetic" or cfg.sparsify != "none" or cfg.alpha_sp or cfg.noisy_frac:
        raise ValueError("the vit peer covers synthetic data without sparsification, spurious or noisy tokens")
    M, d, L, m, B, N = cfg.M, cfg.d, cfg.L, cfg.m, cfg.B, cfg.n_train
    n_star, n_conf, _ = cfg.counts()
    lr = jnp.asarray([c.lr for c in cfgs], dtype=jnp.float32)

    def examples(key, n):  # n examples: X [n, L, d], y [n]
        ky, kpos, kbg, kdir, krad = jax.random.split(key, 5)
        y = jnp.where(jax.random.bernoulli(ky, 0.5, (n,)), 1, -1)
        rank = jnp.argsort(jax.random.uniform(kpos, (n, L)), -1).argsort(-1)  # a random position order
        yy = y[:, None]
        own, other = jnp.where(yy > 0, 0, 1), jnp.where(yy > 0, 1, 0)  # mu_1 = e_1 (y = +1), mu_2 = e_2
        bg = jax.random.randint(kbg, (n, L), 2, M)
        pattern = jnp.where(rank < n_star, own, jnp.where(rank < n_star + n_conf, other, bg))
        g = jax.random.normal(kdir, (n, L, d))
        z = g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True), 1e-12)
        z = z * (cfg.tau * jax.random.uniform(krad, (n, L)))[..., None]
        return jax.nn.one_hot(pattern, d) + z, y.astype(jnp.float32)

    def init(key):
        k = jax.random.split(key, 5)
        eye = jnp.eye(d)
        G = lambda kk: jax.random.normal(kk, (d, d)) / math.sqrt(d)  # noqa: E731
        w = {"W_Q": eye + cfg.delta * G(k[0]), "W_K": eye + cfg.delta * G(k[1]), "W_V": eye + cfg.sigma * G(k[2]),
             "W_O": jax.random.normal(k[3], (m, d)) / math.sqrt(d)}
        a = jnp.where(jax.random.bernoulli(k[4], 0.5, (m,)), 1.0, -1.0) / math.sqrt(m)
        return w, a

    def loss(w, a, X, y):
        q, k, v = X @ w["W_Q"].T, X @ w["W_K"].T, X @ w["W_V"].T  # [B, L, d]
        attn = jax.nn.softmax(jnp.einsum("bli,bsi->bls", q, k), -1)  # query l, key s
        h = jax.nn.relu(jnp.einsum("bls,bsi->bli", attn, v) @ w["W_O"].T)  # [B, L, m]
        F = (h @ a).mean(-1)
        return jnp.maximum(1 - y * F, 0).mean()

    def train(key, lr_e):  # one model
        kinit, kpool, ksteps = jax.random.split(key, 3)
        w, a = init(kinit)
        pool = examples(kpool, N) if N else None

        def one_step(w, k):
            if pool is None:
                X, y = examples(k, B)
            else:
                idx = jax.random.randint(k, (B,), 0, N)
                X, y = pool[0][idx], pool[1][idx]
            g = jax.grad(loss)(w, a, X, y)
            return jax.tree_util.tree_map(lambda p, gp: p - lr_e * gp, w, g), None

        return jax.lax.scan(one_step, w, jax.random.split(ksteps, steps))[0]

    run = jax.jit(jax.vmap(train))
    return run, (jax.random.split(jax.random.PRNGKey(0), E), lr)
