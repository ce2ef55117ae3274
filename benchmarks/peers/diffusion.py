"""The diffusion study's peer for `theorylab bench diffusion --peer`: JAX, vmap over models + jit of the whole run
(lax.scan over the steps), each step drawing its data inside the compiled program with jax.random: the same data
model (K centres r e_k, tokens mu_c + sigma0 xi, the DDPM forward process at every level of t_grid), the same
one-layer attention denoiser per noise level (eps_hat_n = a x_n + W_V sum_m softmax_m(x_m^T W x_n) x_m, zero
init), the same loss (mean over the grid of (1/(N d)) ||eps_hat - eps||^2 over B fresh data points) and the same
optimizer (Adam without weight decay, or plain GD) as the study's training step. What differs: the random numbers
(jax.random keys, not the study's per-model torch generators), and the peer records no curves (the study computes
its excess curve at the checkpoints only, which the bench's run has two of)."""
from __future__ import annotations


import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, sampler inside)"


def build(cfgs, steps: int):
    """The jitted whole run (vmap over models of lax.scan over steps) and its inputs, for these models."""
    import jax.numpy as jnp
    import numpy as np

    cfg, E = cfgs[0], len(cfgs)
    d, K, N, B, s0 = cfg.d, cfg.K, cfg.N, cfg.B, cfg.sigma0
    G = len(cfg.t_grid)
    beta = np.linspace(cfg.beta_1, cfg.beta_T, cfg.T, dtype=np.float64)
    abar = jnp.asarray(np.cumprod(1 - beta)[np.asarray(cfg.t_grid) - 1], dtype=jnp.float32)[:, None, None, None]
    mu = cfg.r * jnp.eye(d)[:K]
    lr = jnp.asarray([c.lr for c in cfgs], dtype=jnp.float32)
    adam = cfg.optimizer == "adam"
    b1, b2, eps_adam = 0.9, 0.999, 1e-8
    names = ("V", "a") if cfg.freeze_attention else ("W", "V", "a")

    def batch(key):  # one model's data: x_t and eps [G, B, N, d]
        kc, kxi, keps = jax.random.split(key, 3)
        c = jax.random.randint(kc, (G, B, N), 0, K)
        x0 = mu[c] + s0 * jax.random.normal(kxi, (G, B, N, d))
        eps = jax.random.normal(keps, (G, B, N, d))
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1 - abar) * eps, eps

    def loss(w, fixed, X, eps):
        w = {**fixed, **w}
        S = jnp.einsum("gbmd,gdf,gbnf->gbnm", X, w["W"], X)  # x_m^T W x_n, query n, key m
        Z = jnp.einsum("gbnm,gbmd->gbnd", jax.nn.softmax(S, -1), X)
        out = w["a"][:, None, None, None] * X + jnp.einsum("gbnd,gfd->gbnf", Z, w["V"])
        return ((out - eps) ** 2).mean((1, 2, 3)).mean()

    def one_step(state, inputs):
        w, fixed, m, v = state
        key, t, lr_e = inputs
        g = jax.grad(loss)(w, fixed, *batch(key))
        if not adam:
            return (jax.tree_util.tree_map(lambda p, gp: p - lr_e * gp, w, g), fixed, m, v), None
        m = jax.tree_util.tree_map(lambda a, b: a + (b - a) * (1 - b1), m, g)
        v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        step_size = lr_e / (1 - b1**t)
        bc2 = jnp.sqrt(1 - b2**t)
        w = jax.tree_util.tree_map(lambda p, a, b: p - a / (jnp.sqrt(b) / bc2 + eps_adam) * step_size, w, m, v)
        return (w, fixed, m, v), None

    def train(w, fixed, keys, lr_e):  # one model, keys [steps, 2]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, w)
        t = jnp.arange(1, steps + 1, dtype=jnp.float32)
        state = (w, fixed, zeros, zeros)
        return jax.lax.scan(one_step, state, (keys, t, jnp.broadcast_to(lr_e, (steps,))))[0][0]

    run = jax.jit(jax.vmap(train))
    zero = {"W": jnp.zeros((E, G, d, d)), "V": jnp.zeros((E, G, d, d)), "a": jnp.zeros((E, G))}
    w0 = {k: zero[k] for k in names}
    fixed = {k: v for k, v in zero.items() if k not in names}
    keys = jax.random.split(jax.random.PRNGKey(0), E)
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(keys)
    return run, (w0, fixed, step_keys, lr)
