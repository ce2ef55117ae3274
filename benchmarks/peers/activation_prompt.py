"""The activation_prompt study's peer for `theorylab bench activation_prompt --peer`: JAX, vmap over models + jit of
the whole adaptation step (batch indices drawn inside it with jax.random), called once per step from Python: not
lax.scan over the steps, because XLA's CPU convolutions leave their fast path inside a loop body (jax issue 12868;
measured here: 10 steps of a 5-convolution net's weight gradient, 3.2 s in lax.scan against 0.09 s unrolled, and
the whole scanned adaptation step 7x slower than the same step called from Python). Channels last (NHWC), XLA's
CPU layout. The vmapped convolution (per-model weights: a grouped convolution) is what scales worst with E.

Each bench model is one cell of the digit benchmark (part = digits, arch = cnn), which adapts its frozen backbone to
the transformed digits with every method at once, as the study's Training does: linear (the head), vp (a prompt on
the input image), ap{l} (a prompt with layer l's activation shape), aps{l} (a channel-shared prompt), norm (every
BN scale and bias) and full (every backbone weight), each with its own zero-initialised 10-way head; the loss is the
sum of the methods' mean cross-entropies on B target images drawn with replacement from the model's own n_target
labelled ones, minimised by Adam (AdamW with no decay: torch's update, bias-corrected, lr, betas 0.9 / 0.999, eps
1e-8). The backbone is the study's residual CNN (3x3 convolutions, 8x8 maps, eval-mode BatchNorm with population
statistics, ReLU, mean pool). The frozen layers before a method's prompt are computed once per step for all
methods, as the study's shared prefix does.

Set-up outside the timed run (the study's bench times the adaptation step too: its pre-training runs inside
training(), before the timed Training): build() pre-trains each backbone for pretrain_steps AdamW steps on the
source digits (batch-statistics BN), records the BN population statistics, and picks each model's target subset.
What differs: the random numbers (jax.random, not the study's counter-based streams); the population statistics
come from one pass over the whole source training set (the study passes it in blocks of 500 images); the peer
covers the cells the bench runs (part = digits, arch = cnn). tests/studies/activation_prompt/test_peer.py holds its
objective equal to the study's given the same weights."""
from __future__ import annotations

import math

import jax  # the bench extra: a missing jax is reported when the peer loads
import jax.numpy as jnp

wait = jax.block_until_ready  # core.bench waits on the run's result with it
NAME = "jax vmap+jit (whole step, batches drawn inside)"

EPS = 1e-5  # BatchNorm's
B1, B2, ADAM_EPS = 0.9, 0.999, 1e-8


def conv(h, w):  # h [B, 8, 8, Ci], w [3, 3, Ci, Co] -> [B, 8, 8, Co]: channels last, XLA's CPU layout
    return jax.lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def bn(x, w, name, stats):  # stats None: the stored population statistics; else batch statistics into stats
    if stats is None:
        mean, var = w[f"{name}.mean"], w[f"{name}.var"]
    else:
        mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
        stats[name] = (mean, var)
    return (x - mean) / jnp.sqrt(var + EPS) * w[f"{name}.w"] + w[f"{name}.b"]


def prompt(h, w, layer):
    if f"act.{layer}" in w:
        h = h + w[f"act.{layer}"]
    if f"acts.{layer}" in w:
        h = h + w[f"acts.{layer}"]
    return h


def layers(w, h, depth, start=0, stats=None, acts=None):
    """h: the activation at layer `start` (the image at 0) -> the last layer's, the prompts in w added; acts:
    a list, every layer's activation is appended."""
    keep = acts.append if acts is not None else (lambda h: None)  # noqa: E731
    h = prompt(h, w, start)
    if start == 0:
        h = prompt(jax.nn.relu(bn(conv(h, w["stem.w"]), w, "stem.bn", stats)), w, 1)
        keep(h)
    for l in range(max(start - 1, 0), depth):
        u = bn(conv(h, w[f"blocks.{l}.conv.w"]), w, f"blocks.{l}.bn", stats)
        h = prompt(jax.nn.relu(h + u), w, l + 2)
        keep(h)
    return h


def logits(w, h, head):
    return h.mean((1, 2)) @ w[f"{head}.w"] + w[f"{head}.b"]


def cross_entropy(lg, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(lg, -1), y[:, None], -1).mean()


def start_layer(method, depth):  # the first layer the method changes: the frozen layers before it are shared
    if method == "linear":
        return depth + 1
    if method.startswith("aps"):
        return int(method[3:])
    if method.startswith("ap"):
        return int(method[2:])
    return 0


def adaptation_loss(own, backbone, X, y, depth):
    """One model's objective: the sum over methods of the mean cross-entropy on X [B, 8, 8, 1], y [B]; own:
    {method: its own weights}, backbone: the frozen weights (with BN population statistics)."""
    acts = [X]  # the frozen backbone's activation at every layer, once for all methods
    layers(backbone, X, depth, acts=acts)
    total = 0.0
    for method, w in own.items():
        s = start_layer(method, depth)
        weights = {**backbone, **w}
        total = total + cross_entropy(logits(weights, layers(weights, acts[s], depth, s), "thead"), y)
    return total


def build(cfgs, steps: int):
    """The whole adaptation (a jitted step, vmapped over models, called `steps` times) and its inputs, for these
    models. run(*args) returns (each method's trained weights, the summed loss [E, steps] before every step)."""
    import numpy as np

    from theorylab.studies.activation_prompt.data import digits, transform

    cfg, E = cfgs[0], len(cfgs)
    if cfg.part != "digits" or cfg.arch != "cnn":
        raise ValueError("the activation_prompt peer covers the digit benchmark's CNN (part = digits, arch = cnn)")
    C, depth, B, n_target = cfg.channels, cfg.depth, cfg.B, cfg.n_target
    L = depth + 1  # prompt layers after the input: the stem and every block
    bns = ["stem.bn"] + [f"blocks.{l}.bn" for l in range(depth)]
    convs = ["stem.w"] + [f"blocks.{l}.conv.w" for l in range(depth)]
    images, src_y = digits(cfg.test_every)["train"]  # [N, 1, 8, 8], [N]
    src_X = jnp.asarray(np.asarray(images.permute(0, 2, 3, 1)))  # [N, 8, 8, 1]
    tgt_X = jnp.asarray(np.asarray(transform(images, cfg.transform).permute(0, 2, 3, 1)))
    src_y = jnp.asarray(np.asarray(src_y))
    N = len(src_y)

    def adam(w, m, v, g, t, lr):  # torch's Adam update; t counts from 0
        m = jax.tree_util.tree_map(lambda m, g: B1 * m + (1 - B1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: B2 * v + (1 - B2) * g * g, v, g)
        step, bc2 = lr / (1 - B1 ** (t + 1)), jnp.sqrt(1 - B2 ** (t + 1))
        w = jax.tree_util.tree_map(lambda p, m, v: p - step * m / (jnp.sqrt(v) / bc2 + ADAM_EPS), w, m, v)
        return w, m, v

    def loop(step, carry, steps):
        """`steps` calls of the jitted step from Python, not lax.scan: XLA's CPU convolutions lose their fast path
        inside a loop body (jax issue 12868; the weight gradient's convolution runs about 30x slower there)."""
        out = []
        for t in range(steps):
            carry, y = step(carry, jnp.int32(t))
            out.append(y)
        return carry, out

    # set-up: the pre-trained backbones (the study's init, AdamW on the source digits with batch-statistics BN)
    def init(key):
        ks = jax.random.split(key, depth + 2)
        w = {"stem.w": jax.random.normal(ks[0], (3, 3, 1, C)) / 3.0,
             "head.w": jax.random.normal(ks[1], (C, 10)) / math.sqrt(C), "head.b": jnp.zeros(10)}
        for l in range(depth):
            w[f"blocks.{l}.conv.w"] = jax.random.normal(ks[2 + l], (3, 3, C, C)) / math.sqrt(9 * C)
        for name in bns:
            w.update({f"{name}.w": jnp.ones(C), f"{name}.b": jnp.zeros(C)})
        return w

    def source_loss(w, idx):
        return cross_entropy(logits(w, layers(w, src_X[idx], depth, stats={}), "head"), src_y[idx])

    def pretrain_step(w, m, v, key, t):
        g = jax.grad(source_loss)(w, jax.random.randint(jax.random.fold_in(key, t), (B,), 0, N))
        return adam(w, m, v, g, t, cfg.pretrain_lr)

    def with_statistics(w):  # population statistics: the whole source training set in one pass
        stats: dict = {}
        layers(w, src_X, depth, stats=stats)
        return {**w, **{f"{k}.mean": s[0] for k, s in stats.items()}, **{f"{k}.var": s[1] for k, s in stats.items()}}

    def own_weights(backbone):
        """One model's trainable weights: {method: {name: start value}} (prompts and heads at zero)."""
        head = {"thead.w": jnp.zeros((C, 10)), "thead.b": jnp.zeros(10)}
        norm = {f"{n}.{s}": backbone[f"{n}.{s}"] for n in bns for s in ("w", "b")}
        own = {"linear": dict(head), "vp": {"act.0": jnp.zeros((8, 8, 1)), **head},
               "norm": {**norm, **head}, "full": {**{k: backbone[k] for k in convs}, **norm, **head}}
        for l in range(1, L + 1):
            own[f"ap{l}"] = {f"act.{l}": jnp.zeros((8, 8, C)), **head}
            own[f"aps{l}"] = {f"acts.{l}": jnp.zeros(C), **head}
        return own

    def adapt_step(carry, backbone, Xs, ys, key, t):  # one model: Xs [n_target, 8, 8, 1], ys [n_target]
        own, m, v = carry
        idx = jax.random.randint(jax.random.fold_in(key, t), (B,), 0, n_target)
        loss, g = jax.value_and_grad(adaptation_loss)(own, backbone, Xs[idx], ys[idx], depth)
        return adam(own, m, v, g, t, cfg.lr), loss

    k_init, k_pre, k_subset, k_batches = jax.random.split(jax.random.PRNGKey(0), 4)
    w = jax.vmap(init)(jax.random.split(k_init, E))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, w)
    pre_step = jax.jit(jax.vmap(pretrain_step, in_axes=(0, 0, 0, 0, None)))
    pre_keys = jax.random.split(k_pre, E)
    (w, _, _), _ = loop(lambda c, t: (pre_step(*c, pre_keys, t), None), (w, zeros, zeros), cfg.pretrain_steps)
    backbone = jax.jit(lambda w: jax.lax.map(with_statistics, w))(w)  # model by model: the pass is big
    take = jax.vmap(lambda k: jax.random.permutation(k, N)[:n_target])(jax.random.split(k_subset, E))  # [E, n]
    Xs, ys = tgt_X[take], src_y[take]
    own = jax.vmap(own_weights)(backbone)
    wait((backbone, own, Xs))
    step = jax.jit(jax.vmap(adapt_step, in_axes=(0, 0, 0, 0, 0, None)))

    def run(own, backbone, Xs, ys, keys):
        """The whole adaptation: (each method's trained weights, the summed loss [E, steps] before every step)."""
        zeros = jax.tree_util.tree_map(jnp.zeros_like, own)
        (own, _, _), losses = loop(lambda c, t: step(c, backbone, Xs, ys, keys, t), (own, zeros, zeros), steps)
        return own, jnp.stack(losses, 1)

    return run, (own, backbone, Xs, ys, jax.random.split(k_batches, E))
