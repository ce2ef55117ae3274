"""The graph study's peer for `theorylab bench graph --peer`: JAX, vmap over models + jit of the whole run (the
labelled-node sampler inside the step, lax.scan over the steps), the same model (section 2.2), data, hinge loss
and plain SGD as the study's training step at its bench config.

Data: each model's graph, features, labels, token samples T^n and labelled order are the study's own
(theorylab.studies.graph.data.graphs: built once with numpy, as ours are, and not timed); every step draws B
labelled nodes per model with replacement with jax.random inside the jitted step (its own random draws).
Model: node n attends to T^n with its own query only, as the study's fast path and as one writes it in JAX:

    gt / no_pe: F(x_n) = a^T ReLU(W_1 sum_s softmax_s(x_s^T W_K^T W_Q x_n / sqrt(d) + b_dist(s,n)) W_V x_s)
    gcn:        F(x_n) = a^T ReLU(W_1 [A_hat ... ReLU(A_hat X W_0) ... W_L]_n), A_hat over padded neighbour lists

with the paper init's trained weights only (W_Q, W_K, W_V near the identity, W_1, b for gt; the GCN layers' W_l):
what differs from ours is that the peer does not multiply by the held projection proj = I or add the held zero
biases (ours does both; each is a [d, d] product or an add per node), so the peer does slightly less work.
ATTENTION = "keys" forms K = x W_K and V = x W_V for the L tokens (the plain way); "folded" uses the same algebra
as the study (u = W_K q, a (x W_V) = (a x) W_V); the bench times the faster one, FORM below.
"""
from __future__ import annotations

import math

import jax  # the bench extra: a missing jax is reported when the peer loads

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole run, sampler inside)"
FORM = "folded"  # the faster on the bench config (both measured in the study's speed notes)


def build(cfgs, steps: int, form: str = FORM):
    """The jitted whole run (vmap over models of lax.scan over steps) and its inputs, for these models."""
    import jax.numpy as jnp
    import numpy as np
    import torch

    from theorylab.studies.graph.data import graphs

    cfg, E = cfgs[0], len(cfgs)
    d, m, B, variant, lr = cfg.d, cfg.m, cfg.B, cfg.variant, cfg.lr
    g = graphs(cfgs, torch.device("cpu"))
    data = {k: jnp.asarray(np.asarray(getattr(g, k))) for k in ("X", "y", "tok", "tok_dist", "tok_mask", "order", "n_label")
            + (("nbr", "nbr_w") if variant == "gcn" else ())}
    a_vec = jnp.concatenate([jnp.full(m // 2, 1.0 / math.sqrt(m)), jnp.full(m - m // 2, -1.0 / math.sqrt(m))])

    def init(key):
        k = jax.random.split(key, 8)
        near_id = lambda kk: jnp.eye(d) + cfg.init_error * jax.random.normal(kk, (d, d)) / math.sqrt(d)  # noqa: E731
        w = {"W_1": jax.random.normal(k[0], (d, m)) / math.sqrt(d)}
        if variant == "gcn":
            w.update({f"W_{l}_gcn": jax.random.normal(k[1 + l], (d, d)) / math.sqrt(d) for l in range(cfg.layers)})
        else:
            w.update({"W_Q": near_id(k[1]), "W_K": near_id(k[2]), "W_V": near_id(k[3])})
            if variant == "gt":
                w["b"] = jnp.zeros(cfg.Z + 1)
        return w

    def embed(w, D, nodes):  # [B, d]
        if variant == "gcn":
            agg = lambda H, nbr, nw: (H[nbr] * nw[..., None]).sum(-2)  # noqa: E731  A_hat H over neighbour lists
            H = D["X"]
            for l in range(cfg.layers - 1):
                H = jax.nn.relu(agg(H, D["nbr"], D["nbr_w"]) @ w[f"W_{l}_gcn"])
            return agg(H, D["nbr"][nodes], D["nbr_w"][nodes]) @ w[f"W_{cfg.layers - 1}_gcn"]
        x = D["X"][D["tok"][nodes]]  # [B, L, d]
        q = x[:, 0] @ w["W_Q"]  # [B, d]
        if form == "keys":
            s = jnp.einsum("bld,bd->bl", x @ w["W_K"], q) / math.sqrt(d)
        else:
            s = jnp.einsum("bld,bd->bl", x, q @ w["W_K"].T) / math.sqrt(d)
        if variant == "gt":
            s = s + w["b"][D["tok_dist"][nodes]]
        att = jax.nn.softmax(jnp.where(D["tok_mask"][nodes], s, -jnp.inf), -1)
        if form == "keys":
            return jnp.einsum("bl,bld->bd", att, x @ w["W_V"])
        return jnp.einsum("bl,bld->bd", att, x) @ w["W_V"]

    def loss(w, D, nodes):
        f = jax.nn.relu(embed(w, D, nodes) @ w["W_1"]) @ a_vec
        return jnp.maximum(1 - D["y"][nodes] * f, 0).mean()

    def one_step(w, D, key):
        pick = jnp.floor(jax.random.uniform(key, (B,)) * D["n_label"]).astype(jnp.int32)
        grads = jax.grad(loss)(w, D, D["order"][pick])
        return jax.tree_util.tree_map(lambda p, gp: p - lr * gp, w, grads)

    def train(w, D, keys):  # one model, keys [steps, 2]
        return jax.lax.scan(lambda w, k: (one_step(w, D, k), None), w, keys)[0]

    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.PRNGKey(0), E)
    w0 = jax.vmap(init)(keys)
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(keys)
    return run, (w0, data, step_keys)
