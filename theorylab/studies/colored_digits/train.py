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

Why `train_group=` and not the protocol (core.protocol.Training): the fine-tuning ensemble has len(task_ps)
models per cell, each diverging and frozen on its own (AdamW at lr 0); a Training has one model per cell, so its
loop would freeze every task of a cell when one diverges (different weights and diverged_at for that cell), and
a cell's record also carries the pre-training curves and divergence, which a Training's record does not.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, shared_value, tile, untile
from theorylab.core.losses import accuracy, cross_entropy
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.core.train import AdamW, TrainResult, train_ensemble
from theorylab.studies.colored_digits.config import ColoredDigitsConfig
from theorylab.shared.colored_digits import load_split
from theorylab.studies.colored_digits.model import body_keys, init_params, logits, pre_logits, shapes



def task_key(p: float) -> str:
    return f"ft/{p:g}/"


def pretrain(cfgs: Sequence[ColoredDigitsConfig], device, bars: Bars) -> TrainResult:
    """Psi0 [E, ...] with its curves (cross-entropy and accuracy on the proxy task)."""
    cfg, E = cfgs[0], len(cfgs)
    rng = rng_for(cfgs, device)
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
            lg = pre_logits(p, X, cfg.patch, cfg.heads)[..., :4]  # [E, B, 4]
        else:
            target = tr.digit[idx]  # [E, B]
            lg = pre_logits(p, X, cfg.patch, cfg.heads)  # [E, B, 10]
        return {"loss": cross_entropy(lg, target), "acc": accuracy(lg, target)}

    with bars.task(f"colored_digits: pretrain {E} model(s) x {cfg.pretrain_steps} steps", cfg.pretrain_steps,
                   models=E) as advance:
        return train_ensemble(params, [k for k in params if k != "head.w"], loss_fn,
                              torch.full((E,), cfg.pretrain_lr, device=device), cfg.pretrain_steps,
                              optimizer=AdamW(cfg.weight_decay), curve_points=cfg.curve_points, on_step=advance)


def finetune(cfgs: Sequence[ColoredDigitsConfig], psi0: dict[str, torch.Tensor], ps: Sequence[float], device,
             bars: Bars, steps: int | None = None) -> TrainResult:
    """Fine-tune Psi0's body on each task p (head frozen); models task-major [len(ps) * E, ...]."""
    cfg, E, T = cfgs[0], len(cfgs), len(ps)
    rng = rng_for(cfgs, device)
    tr = load_split(cfgs, "train", device)
    N = tr.y.numel()
    reds = [tr.colours(rng, "train", p) for p in ps]  # [E, N] each, fixed per task
    head = tile(psi0["head.w"], T)
    steps = cfg.steps if steps is None else steps

    def loss_fn(p, step):
        idx = [rng.randint(N, (cfg.B,), "batch", "finetune", float(q), step).to(device) for q in ps]  # [E, B] each
        X = torch.cat([tr.painted(red, i) for red, i in zip(reds, idx)])  # [T*E, B, 2, 8, 8]
        target = torch.cat([(tr.y[i] > 0).long() for i in idx])  # [T*E, B]: class 1 = odd
        lg = logits(p, head, X, cfg.patch, cfg.heads)  # [T*E, B, 2]
        return {"loss": cross_entropy(lg, target), "acc": accuracy(lg, target)}

    body = body_keys(psi0)
    with bars.task(f"colored_digits: fine-tune {T * E} model(s) x {steps} steps", steps, models=T * E) as advance:
        return train_ensemble({k: tile(psi0[k], T) for k in body}, body, loss_fn,
                              torch.full((T * E,), cfg.lr, device=device), steps, optimizer=AdamW(cfg.weight_decay),
                              curve_points=cfg.curve_points, on_step=advance)


def train_group(cfgs: Sequence[ColoredDigitsConfig], device: torch.device, bars: Bars) -> GroupResult:
    ps = shared_value(cfgs, "task_ps")
    T = len(ps)
    pre = pretrain(cfgs, device, bars)
    ft = finetune(cfgs, pre.params, ps, device, bars)
    out = {f"psi0/{k}": v for k, v in pre.params.items()}
    out.update({task_key(p) + k: untile(v, T)[t] for k, v in ft.params.items() for t, p in enumerate(ps)})
    final = {"pretrain_acc": pre.curves["acc"][-1], **{f"train_acc_{p:g}": untile(ft.curves["acc"][-1], T)[t]
                                                        for t, p in enumerate(ps)}}
    curves = [{"pretrain_step": pre.curve_steps, "pretrain_loss": pre.curves["loss"][:, e].tolist(), "step": ft.curve_steps,
               **{f"{k}_{p:g}": untile(v.T, T)[t, e].tolist() for k, v in ft.curves.items() for t, p in enumerate(ps)}}
              for e in range(len(cfgs))]
    diverged = torch.maximum(pre.diverged_at, untile(ft.diverged_at, T).max(0).values)
    return group_result(out, final, curves, diverged, pre.seconds + ft.seconds)
