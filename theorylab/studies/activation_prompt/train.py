"""Pre-train the backbone on the source task, record its BatchNorm population statistics, then adapt it to the
target task with every method (backbone frozen unless the method tunes it; a new zero-initialised head
always trains):

    linear      the head only (linear probing)
    vp          + a full-image input prompt (AP at layer 0)
    ap{l}       + an activation prompt with layer l's shape, l = 1..n_layers
    aps{l}      + a channel- (CNN) / token-shared (ViT) prompt at layer l: no more parameters than VP's
    norm        + every norm's scale and bias (BN for the CNN, LN for the ViT)
    full        every backbone weight (full fine-tuning)
    normap, normbias   the AP-norm identity (spec 3.3) at the middle block: a shared prompt right after its
                norm, and that norm's bias tuned (exact algebra: tested in tests/studies/activation_prompt, not
                trained by the study)

Adaptation uses Adam (AdamW with no decay, spec 3.5) at lr, batches of B from the model's own target subset.
Pre-training runs inside `training()`; the adaptation is the Training core runs: every method at once, each with
its own weights "{method}/{name}" over the shared frozen backbone, minimising the sum of the methods' losses.
Methods share no trainable weight, so each gets exactly its own gradient and Adam state, as if trained alone.
Cells with part = testbed train the theory testbed instead (testbed.py: its own data model and backbones).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import shared_value
from theorylab.core.losses import accuracy, cross_entropy
from theorylab.core.protocol import Graded, GradeFn, Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import AdamW, train_ensemble
from theorylab.studies.activation_prompt.config import APConfig
from theorylab.studies.activation_prompt.data import Labelled, digits, target_split
from theorylab.studies.activation_prompt.model import (act_shape, forward, global_share, init_params, n_layers,
                                                       norm_names)

HEADS = ["thead.w", "thead.b"]


def middle_block(cfg: APConfig) -> int:
    return cfg.depth // 2


def methods(cfg: APConfig) -> list[str]:
    L = n_layers(cfg)
    return ["linear", "vp", *[f"ap{l}" for l in range(1, L + 1)], *[f"aps{l}" for l in range(1, L + 1)], "norm",
            "full"]


def method_params(cfg: APConfig, method: str, backbone: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """(start weights with the method's prompt, trainable names) for one adaptation method."""
    E, dev = next(iter(backbone.values())).shape[0], next(iter(backbone.values())).device
    p = dict(backbone)
    feat = cfg.channels if cfg.arch == "cnn" else cfg.width
    if method == "linear":
        return p, list(HEADS)
    if method == "vp" or method.startswith("ap"):
        layer = 0 if method == "vp" else int(method[3:] if method.startswith("aps") else method[2:])
        key = f"acts.{layer}" if method.startswith("aps") else f"act.{layer}"
        p[key] = torch.zeros(E, *((feat,) if key.startswith("acts") else act_shape(cfg, layer)), device=dev)
        return p, [key, *HEADS]
    if method == "norm":
        return p, [f"{n}.{s}" for n in norm_names(cfg) for s in ("w", "b")] + HEADS
    if method == "full":
        frozen = {"head.w", "head.b"} | {k for k in p if k.endswith((".mean", ".var"))}
        return p, [k for k in p if k not in frozen]
    m = middle_block(cfg)
    norm = f"blocks.{m}.bn" if cfg.arch == "cnn" else f"blocks.{m}.ln1"
    if method == "normap":
        p[f"normap.{m}"] = torch.zeros(E, feat, device=dev)
        return p, [f"normap.{m}", *HEADS]
    if method == "normbias":
        return p, [f"{norm}.b", *HEADS]
    raise ValueError(f"unknown method {method!r}")


def pretrain(cfgs: Sequence[APConfig], rng: EnsembleRNG, device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Backbone [E, ...] with BN population statistics, its source test accuracy [E], diverged_at [E]."""
    cfg, E = cfgs[0], len(cfgs)
    X, y = (t.to(device) for t in digits(cfg.test_every)["train"])
    params = init_params(cfg, rng, device)
    trainable = [k for k in params if not k.startswith("thead") and not k.endswith((".mean", ".var"))]

    def loss_fn(p, step):
        idx = rng.randint(len(y), (cfg.B,), "batch", "pretrain", step).to(device)  # [E, B] into the shared set
        lg = forward(p, X[idx], cfg, head="head", record={})
        return {"loss": cross_entropy(lg, y[idx]), "acc": accuracy(lg, y[idx])}

    res = train_ensemble(params, trainable, loss_fn, torch.full((E,), cfg.pretrain_lr, device=device),
                         cfg.pretrain_steps, optimizer=AdamW(0.0), curve_points=cfg.curve_points)
    p = dict(res.params)
    if cfg.arch == "cnn":  # population statistics over the whole source training set, in blocks of 500 images
        with torch.no_grad():
            sums: dict[str, list] = {}
            for i in range(0, len(y), 500):
                rec: dict = {}
                xb = X[i : i + 500].expand(E, -1, -1, -1, -1)
                forward(p, xb, cfg, head="head", record=rec)
                for k, (m, v) in rec.items():
                    n = xb.shape[1]
                    s = sums.setdefault(k, [0.0, 0.0, 0])
                    s[0], s[1], s[2] = s[0] + m * n, s[1] + (v + m**2) * n, s[2] + n
            for k, (s1, s2, n) in sums.items():
                p[f"{k}.mean"], p[f"{k}.var"] = s1 / n, s2 / n - (s1 / n) ** 2
    Xt, yt = (t.to(device) for t in digits(cfg.test_every)["test"])
    with torch.no_grad():
        src = accuracy(forward(p, Xt.expand(E, -1, -1, -1, -1), cfg, head="head"), yt.expand(E, -1))
    return p, src, res.diverged_at


def start_layer(cfg: APConfig, method: str) -> int:
    """The first layer whose activation differs from the frozen backbone's under `method`: the layers before it are
    the shared frozen forward (linear: every layer; ap{l} / aps{l}: layers < l; the others: none)."""
    if method == "linear":
        return n_layers(cfg)
    if method.startswith("aps"):
        return int(method[3:])
    if method.startswith("ap"):
        return int(method[2:])
    return 0


def adaptation(cfgs: Sequence[APConfig], rng: EnsembleRNG, backbone: dict, how: Sequence[str], device,
               grade: GradeFn = lambda res: {}, diverged: torch.Tensor | None = None,
               shared_prefix: bool = True) -> Training:
    """The adaptation of every method in `how` from one backbone, as one Training: the curves hold each method's
    loss as loss_{method}, and "loss" is their sum (what the one optimizer minimises). Models marked `diverged`
    [E] (their pre-training diverged) get a NaN loss, so core records them diverged and leaves them be.
    shared_prefix: the frozen layers before a method's prompt run once per step for all methods (start_layer), not
    once per method (False: every method's whole forward, the plain path; the numbers are the same)."""
    cfg, E = cfgs[0], len(cfgs)
    (Xs, ys), _, _ = target_split(rng, cfg.test_every, cfg.transform, cfg.n_target, cfg.n_val, device)
    target = Labelled(Xs, ys)
    own: dict[str, list[str]] = {}  # method -> the names it trains (its weights are "{method}/{name}")
    params = dict(backbone)  # the frozen backbone, shared by every method
    for method in how:
        start, own[method] = method_params(cfg, method, backbone)
        params.update({f"{method}/{k}": start[k] for k in own[method]})

    starts = {method: start_layer(cfg, method) if shared_prefix else 0 for method in how}

    def loss_fn(p, step):
        batch = target.rows(rng.randint(cfg.n_target, (cfg.B,), "batch", "adapt", step).to(device))  # [E, B]
        acts: list = [batch.X]  # the frozen backbone's activation at every layer, computed once for all methods
        if max(starts.values()) > 0:
            with torch.no_grad():
                forward(p, batch.X, cfg, acts=acts)  # its unprefixed weights are the frozen backbone
        out = {}
        for method, names in own.items():
            s = starts[method]
            lg = forward({**p, **{k: p[f"{method}/{k}"] for k in names}}, acts[s], cfg, start=s)
            out[f"loss_{method}"] = cross_entropy(lg, batch.y)
        total = sum(out.values())  # [E]
        return {"loss": total if diverged is None else torch.where(diverged, torch.nan, total), **out}

    return Training(params, [f"{m}/{k}" for m, names in own.items() for k in names], loss_fn,
                    torch.full((E,), cfg.lr, device=device), cfg.steps, grade,
                    what=f"Adam steps ({len(own)} methods, {cfg.arch})", optimizer=AdamW(0.0),
                    curve_points=cfg.curve_points)


def method_weights(res, method: str) -> dict[str, torch.Tensor]:
    """The adapted model of one method: the backbone with the method's trained weights."""
    prefix = f"{method}/"
    return {**res.params, **{k[len(prefix):]: v for k, v in res.params.items() if k.startswith(prefix)}}


def evaluate(p: dict, X: torch.Tensor, y: torch.Tensor, cfg: APConfig) -> torch.Tensor:
    """Accuracy [E] on X [E or 1, M, 1, 8, 8], y [E or 1, M] in blocks of 500."""
    E = next(iter(p.values())).shape[0]
    hits = torch.zeros(E, device=y.device)
    with torch.no_grad():
        for i in range(0, X.shape[1], 500):
            xb, yb = X[:, i : i + 500].expand(E, -1, -1, -1, -1), y[:, i : i + 500].expand(E, -1)
            hits += accuracy(forward(p, xb, cfg), yb) * xb.shape[1]
    return hits / X.shape[1]


def training(cfgs: Sequence[APConfig], rng: EnsembleRNG, device: torch.device) -> Training:
    if shared_value(cfgs, "part") == "testbed":  # the theory testbed: its own data model and backbones
        from theorylab.studies.activation_prompt import testbed
        return testbed.training(cfgs, rng, device)
    cfg, E = cfgs[0], len(cfgs)
    shared_value(cfgs, "arch")
    backbone, src_acc, pretrain_diverged = pretrain(cfgs, rng, device)
    _, (Xv, yv), (Xt, yt) = target_split(rng, cfg.test_every, cfg.transform, cfg.n_target, cfg.n_val, device)

    def grade(res) -> Graded:
        metrics: dict[str, torch.Tensor] = {"source_acc": src_acc}
        for method in methods(cfg):
            adapted = method_weights(res, method)
            metrics[f"val_{method}"] = evaluate(adapted, Xv, yv, cfg)
            metrics[f"test_{method}"] = evaluate(adapted, Xt[None], yt[None], cfg)
        with torch.no_grad():  # the global-feature diagnostic on the target test images (spec 3.4)
            acts: list = []
            forward(backbone, Xt[None, :500].expand(E, -1, -1, -1, -1), cfg, acts=acts)
            for l, h in enumerate(acts, start=1):
                metrics[f"global_{l}"] = global_share(h, cfg.arch)
        return Graded(metrics, {k: v for k, v in backbone.items() if not k.startswith("thead")})

    return adaptation(cfgs, rng, backbone, methods(cfg), device, grade, diverged=(pretrain_diverged >= 0).to(device))
