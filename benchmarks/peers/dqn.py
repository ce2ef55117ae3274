"""The dqn study's peer for `theorylab bench dqn --peer`: JAX, vmap over models + jit of the whole run. Each outer
iteration (collect walkers x collect_steps eps-greedy transitions into the model's replay buffer, freeze the
target, then `steps` SGD steps on the mean-square Bellman error over uniform replay mini-batches) is a lax.scan
body; the collection is a lax.scan over its steps. Same MDP (chain or grid with slip, reward 1 on entering the
terminal goal, walkers restarting after episode_len), features, Q-network W2^T ReLU(W1^T phi + b1) + b2, target
network, epsilon schedule, replay buffer and plain SGD as the study's quick config. What differs: its own random
draws, and omega_0 is a random initialisation (the study's omega* fit is set-up, which the bench does not time).
`steps` counts SGD steps as the study's trainer does: a partial last iteration runs its first steps only."""
from __future__ import annotations


import jax  # the bench extra: a missing jax is reported when the peer loads

from theorylab.studies.dqn.mdp import make_mdp

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, collection inside)"


def build(cfgs, steps: int):
    import jax.numpy as jnp

    cfg, E = cfgs[0], len(cfgs)
    mdp = make_mdp(cfgs)
    nxt, term = jnp.array(mdp.next_state.numpy()), jnp.array(mdp.terminal.numpy())
    S, A = mdp.S, mdp.A
    W, K, C, B, n_sgd = cfg.walkers, cfg.collect_steps, cfg.buffer, cfg.B, cfg.steps
    m, gamma, slip, ep_len, lr = cfg.m, cfg.gamma, cfg.slip, cfg.episode_len, cfg.lr
    full, rest = divmod(steps, n_sgd)

    def init(key):
        k = jax.random.split(key, 3)
        d = S if cfg.features == "onehot" else cfg.d_feat
        phi = jnp.eye(S) if cfg.features == "onehot" else jax.random.normal(k[0], (S, d)) / d**0.5
        w = {"W1": jax.random.uniform(k[1], (d, m), minval=-1, maxval=1) / d**0.5, "b1": jnp.zeros(m),
             "W2": jax.random.uniform(k[2], (m, A), minval=-1, maxval=1) / m**0.5, "b2": jnp.zeros(A)}
        buf = {"s": jnp.zeros(C, jnp.int32), "a": jnp.zeros(C, jnp.int32), "r": jnp.zeros(C),
               "s2": jnp.zeros(C, jnp.int32), "done": jnp.zeros(C)}
        walk = {"s": jnp.zeros(W, jnp.int32), "age": jnp.zeros(W, jnp.int32), "ptr": 0, "filled": 0}
        return w, phi, buf, walk

    def q(w, x):
        return jax.nn.relu(x @ w["W1"] + w["b1"]) @ w["W2"] + w["b2"]

    def collect(w, phi, buf, walk, eps, key):
        def one(carry, key):
            buf, walk = carry
            k = jax.random.split(key, 4)
            s = walk["s"]
            greedy = q(w, phi[s]).argmax(-1)
            a = jnp.where(jax.random.uniform(k[0], (W,)) < eps, jax.random.randint(k[1], (W,), 0, A), greedy)
            taken = jnp.where(jax.random.uniform(k[2], (W,)) < slip, jax.random.randint(k[3], (W,), 0, A), a)
            s2 = nxt[s, taken]
            done = term[s2]
            at = (walk["ptr"] + jnp.arange(W)) % C
            buf = {"s": buf["s"].at[at].set(s), "a": buf["a"].at[at].set(a), "r": buf["r"].at[at].set(done * 1.0),
                   "s2": buf["s2"].at[at].set(s2), "done": buf["done"].at[at].set(done * 1.0)}
            age = walk["age"] + 1
            restart = done | (age >= ep_len)
            walk = {"s": jnp.where(restart, 0, s2), "age": jnp.where(restart, 0, age),
                    "ptr": (walk["ptr"] + W) % C, "filled": jnp.minimum(walk["filled"] + W, C)}
            return (buf, walk), None
        return jax.lax.scan(one, (buf, walk), jax.random.split(key, K))[0]

    def msbe(w, phi, v_tgt, batch):
        y = batch["r"] + gamma * (1 - batch["done"]) * v_tgt[batch["s2"]]
        qa = jnp.take_along_axis(q(w, phi[batch["s"]]), batch["a"][:, None], 1)[:, 0]
        return ((qa - y) ** 2).mean()

    def iteration(carry, t, key, n):  # one outer iteration with n SGD steps
        w, phi, buf, walk = carry
        eps = jnp.maximum(cfg.eps_min, cfg.eps0 * cfg.eps_decay**t)
        k1, k2 = jax.random.split(key)
        buf, walk = collect(w, phi, buf, walk, eps, k1)
        v_tgt = q(w, phi).max(-1)  # the target, frozen for the iteration

        def sgd(w, key):
            idx = jax.random.randint(key, (B,), 0, walk["filled"])
            g = jax.grad(msbe)(w, phi, v_tgt, {k: v[idx] for k, v in buf.items()})
            return jax.tree_util.tree_map(lambda p, gp: p - lr * gp, w, g), None
        w = jax.lax.scan(sgd, w, jax.random.split(k2, n))[0]
        return (w, phi, buf, walk)

    def train(carry, key):  # one model
        keys = jax.random.split(key, full + 1)
        if full:
            carry = jax.lax.scan(lambda c, tk: (iteration(c, tk[0], tk[1], n_sgd), None), carry,
                                 (jnp.arange(full), keys[:full]))[0]
        if rest:
            carry = iteration(carry, full, keys[full], rest)
        return carry[0]

    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.PRNGKey(0), E)
    state = jax.jit(jax.vmap(init))(keys)
    return run, (state, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))
