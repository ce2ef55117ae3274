"""The cot study's peer for `theorylab bench cot --peer`: JAX, vmap over models + jit of the whole run (lax.scan over
the steps, each step's training prompts sampled inside with jax.random), the same data model (section 2.1: a random
permutation task per prompt and step, round(alpha l) examples sharing the query's input pattern, step k uniform on
1..K), the same one-layer attention-only model (section 2.2, W_V frozen at [0, I]), half squared loss and plain SGD.

What differs: the random draws (jax.random, not the study's counter-based streams); the prompt is written out as the
[B, N, 2 d_X] context a JAX user would build (XLA fuses the gathers into the contractions where it can)."""
from __future__ import annotations


import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, sampler inside)"


def build(cfgs, steps: int):
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    M, K, d_X, B, l = cfg.M, cfg.K, cfg.d_X, cfg.B, cfg.l_tr
    n_same = round(cfg.alpha * l)
    P = jnp.eye(M, d_X)  # TRR patterns mu_j = e_j
    pos = jnp.eye(d_X)[M : M + K]  # c_j = e_{M+j}
    col_step = jnp.concatenate([jnp.tile(jnp.arange(K), l), jnp.arange(K - 1)])  # [N]

    def prompts(key):  # one model's batch: C [B, N, 2 d_X], mask [B, N], Q [B, 2 d_X], target [B]
        k = jax.random.split(key, 5)
        sigma = jnp.argsort(jax.random.uniform(k[0], (B, K, M)), -1)  # a random permutation per step
        xq = jax.random.randint(k[1], (B,), 0, M)
        other = jax.random.randint(k[2], (B, l), 0, M - 1)
        other = other + (other >= xq[:, None])
        same = jnp.argsort(jax.random.uniform(k[3], (B, l)), -1) < n_same
        x = jnp.where(same, xq[:, None], other)
        step = jax.random.randint(k[4], (B,), 1, K + 1)

        def chain(start):  # start [B, ...] -> [B, ..., K+1]
            out = [start]
            for j in range(K):
                out.append(jnp.take_along_axis(sigma[:, j], out[-1].reshape(B, -1), 1).reshape(start.shape))
            return jnp.stack(out, -1)

        ids, qids = chain(x), chain(xq)  # [B, l, K+1], [B, K+1]
        ex = jnp.concatenate([P[ids[..., :K]] + pos, P[ids[..., 1:]]], -1).reshape(B, l * K, 2 * d_X)
        valid = jnp.arange(K - 1) < (step - 1)[:, None]  # [B, K-1]
        pre = jnp.concatenate([P[qids[:, : K - 1]] + pos[: K - 1], P[qids[:, 1:K]]], -1) * valid[..., None]
        C = jnp.concatenate([ex, pre], 1)
        mask = jnp.concatenate([jnp.ones((B, l * K), bool), valid], 1)
        last = jnp.take_along_axis(qids, (step - 1)[:, None], 1)[:, 0]
        Q = jnp.concatenate([P[last] + pos[step - 1], jnp.zeros((B, d_X))], -1)
        return C, mask, Q, jnp.take_along_axis(qids, step[:, None], 1)[:, 0]

    W_V = jnp.zeros((d_X, 2 * d_X)).at[:, d_X:].set(jnp.eye(d_X))

    def loss(w, C, mask, Q, target):
        s = jnp.einsum("bni,bi->bn", C, (Q @ w["W_Q"].T) @ w["W_K"])
        a = jax.nn.softmax(jnp.where(mask, s, -jnp.inf), -1)
        F = jnp.einsum("bn,bni->bi", a, C) @ W_V.T
        return 0.5 * ((F - P[target]) ** 2).sum(-1).mean()

    def one_step(w, key):
        g = jax.grad(loss)(w, *prompts(key))
        return jax.tree_util.tree_map(lambda p, gp: p - cfg.lr * gp, w, g)

    def train(w, keys):
        return jax.lax.scan(lambda w, k: (one_step(w, k), None), w, keys)[0]

    run = jax.jit(jax.vmap(train))
    eye = cfg.delta * jnp.eye(2 * d_X)
    w0 = {"W_Q": jnp.broadcast_to(eye, (E, 2 * d_X, 2 * d_X)), "W_K": jnp.broadcast_to(eye, (E, 2 * d_X, 2 * d_X))}
    keys = jax.random.split(jax.random.PRNGKey(0), E)
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(keys)
    return run, (w0, step_keys)
