"""Pre-training Psi0 on a proxy task, then fine-tuning it on every colour task with the head frozen.

Psi0 (stands in for the paper's ImageNet-pre-trained ViT): the body and a separate 10-way head learn
digit identity (or, with pretrain_task = "rotation", the image's rotation by a multiple of 90 degrees) on
the training images, each image coloured red or green uniformly at random afresh at every step; the colour
then carries no information, so Psi0 knows shapes but no colour-label link.
The 10-way head is discarded. Fine-tuning: every task (distinct colour agreement p, config.task_ps)
starts from the same Psi0 with the same (lr, B, steps), the body trained and the shared 2-way head frozen,
by core.train.train_ensemble with AdamW (the paper's optimiser); models are task-major (core.ensemble.tile).

Stored per cell: "psi0/<name>" (every tensor of Psi0, heads included) and "ft/<p>/<name>" (the
fine-tuned body of task p).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.chunked import chunked_loss
from theorylab.core.chunked import models_per_slice as cache_models
from theorylab.core.ensemble import shared_value, tile, untile
from theorylab.core.losses import accuracy, cross_entropy
from theorylab.core.protocol import Graded, Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import AdamW, TrainResult, train_ensemble
from theorylab.studies.colored_digits.config import ColoredDigitsConfig
from theorylab.shared.colored_digits import load_split
from theorylab.studies.colored_digits.model import body_keys, init_params, logits, pre_logits



def task_key(p: float) -> str:
    return f"ft/{p:g}/"


def models_per_slice(cfg: ColoredDigitsConfig, models: int, device: torch.device) -> int:
    """Models per slice of a training step (core.chunked): on a CPU as many as keep a slice's largest activation
    ([B, tokens, max(width, mlp)] per model) near one core's cache (the whole ensemble's falls out of it between
    one operation and the next: E = 64 ran slower than one model at a time); elsewhere all at once."""
    tokens = (8 // cfg.patch) ** 2
    return cache_models(cfg.B * tokens * max(cfg.width, cfg.mlp, tokens), models, device)


def pretrain(cfgs: Sequence[ColoredDigitsConfig], rng: EnsembleRNG, device, chunk: int | None = None) -> TrainResult:
    """Psi0 [E, ...] with its curves (cross-entropy and accuracy on the proxy task). chunk: models per slice of
    the step (default models_per_slice; len(cfgs): the whole ensemble at once)."""
    cfg, E = cfgs[0], len(cfgs)
    chunk = models_per_slice(cfg, E, torch.device(device)) if chunk is None else chunk
    tr = load_split(cfgs, "train", device)
    N = tr.y.numel()
    params = init_params(cfgs, rng, device)

    def loss_fn(p, step):
        idx = rng.randint(N, (cfg.B,), "batch", "pretrain", step).to(device)  # [E, B]
        red = rng.uniform((N,), "pretrain colour", step).to(device) < 0.5  # colour independent of everything
        X = tr.painted(red, idx)  # [E, B, 2, 8, 8]
        if cfg.pretrain_task == "rotation":  # 4-way: the first 4 of the pre-training head's 10 outputs
            target = rng.randint(4, (cfg.B,), "rotation", step).to(device)  # [E, B]
            turns = torch.stack([torch.rot90(X, r, dims=(-2, -1)) for r in range(4)])  # [4, E, B, 2, 8, 8]
            X = turns.gather(0, target[None, :, :, None, None, None].expand(1, *X.shape))[0]
        else:
            target = tr.digit[idx]  # [E, B]
        classes = 4 if cfg.pretrain_task == "rotation" else 10  # rotation: the first 4 of the head's 10 outputs

        def loss_of(q, rows):
            lg = pre_logits(q, X[rows], cfg.patch, cfg.heads)[..., :classes]  # [e, B, classes]
            return {"loss": cross_entropy(lg, target[rows]), "acc": accuracy(lg, target[rows])}

        return chunked_loss(loss_of, p, E, chunk)

    return train_ensemble(params, [k for k in params if k != "head.w"], loss_fn,
                          torch.full((E,), cfg.pretrain_lr, device=device), cfg.pretrain_steps,
                          optimizer=AdamW(cfg.weight_decay), curve_points=cfg.curve_points)


def training(cfgs: Sequence[ColoredDigitsConfig], rng: EnsembleRNG, device: torch.device,
             chunk: int | None = None) -> Training:
    """Pre-train Psi0, then fine-tune its body on each task p (head frozen); models task-major [len(ps) * E, ...].
    chunk: models per slice of both steps (default models_per_slice; a large number: the whole ensemble at once)."""
    cfg, E = cfgs[0], len(cfgs)
    ps = shared_value(cfgs, "task_ps")
    T = len(ps)
    pre = pretrain(cfgs, rng, device, chunk)
    chunk = models_per_slice(cfg, T * E, torch.device(device)) if chunk is None else chunk
    psi0 = pre.params
    tr = load_split(cfgs, "train", device)
    N = tr.y.numel()
    reds = [tr.colours(rng, "train", p) for p in ps]  # [E, N] each, fixed per task
    head = tile(psi0["head.w"], T)

    def loss_fn(p, step):
        idx = [rng.randint(N, (cfg.B,), "batch", "finetune", float(q), step).to(device) for q in ps]  # [E, B] each
        X = torch.cat([tr.painted(red, i) for red, i in zip(reds, idx)])  # [T*E, B, 2, 8, 8]
        target = torch.cat([(tr.y[i] > 0).long() for i in idx])  # [T*E, B]: class 1 = odd

        def loss_of(q, rows):
            lg = logits(q, head[rows], X[rows], cfg.patch, cfg.heads)  # [rows, B, 2]
            return {"loss": cross_entropy(lg, target[rows]), "acc": accuracy(lg, target[rows])}

        return chunked_loss(loss_of, p, T * E, chunk)

    def grade(ft):
        out = {f"psi0/{k}": v for k, v in psi0.items()}
        out.update({task_key(p) + k: untile(v, T)[t] for k, v in ft.params.items() for t, p in enumerate(ps)})
        final = {"pretrain_acc": pre.curves["acc"][-1], **{f"train_acc_{p:g}": untile(ft.curves["acc"][-1], T)[t]
                                                            for t, p in enumerate(ps)}}
        return Graded(final, params=out)

    body = body_keys(psi0)
    return Training({k: tile(psi0[k], T) for k in body}, body, loss_fn, torch.full((T * E,), cfg.lr, device=device),
                    cfg.steps, grade, what="AdamW steps (fine-tuning, one copy per task)",
                    optimizer=AdamW(cfg.weight_decay), curve_points=cfg.curve_points,
                    copies=tuple(f"{p:g}" for p in ps), earlier={"pretrain": pre})
