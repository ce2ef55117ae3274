"""Pre-training Psi0 on a proxy task, then fine-tuning it on every colour task with the head frozen.

Psi0 (stands in for the paper's ImageNet-pre-trained ViT): the body and a separate 10-way head learn
digit identity (or, with pretrain_task = "rotation", the image's rotation by a multiple of 90 degrees) on
the training images, each image coloured red or green uniformly at random afresh at every step; the colour
then carries no information, so Psi0 knows shapes but no colour-label link.
The 10-way head is discarded. Fine-tuning: every task (distinct colour agreement p, config.task_ps)
starts from the same Psi0 with the same (lr, B, steps); the body is trained, the shared 2-way head
stays frozen. AdamW (the paper's optimiser) on stacked ensemble weights is exactly per-model AdamW:
the loss is a sum of per-model losses and AdamW acts elementwise. Models are task-major: t * E + e.

Stored per cell: "psi0/<name>" (every tensor of Psi0, heads included) and "ft/<p>/<name>" (the
fine-tuned body of task p).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from theorylab.core.ensemble import shared_value
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult
from theorylab.core.train import AdamW, train_ensemble
from theorylab.studies.colored_digits.config import ColoredDigitsConfig
from theorylab.studies.colored_digits.data import load_split, rng_for
from theorylab.studies.colored_digits.model import body_keys, init_params, logits, pre_logits, shapes


def bytes_per_model(cfg: ColoredDigitsConfig) -> int:
    """Rough peak training memory of one cell (all its tasks): activations, weights, AdamW state."""
    n_tok = (8 // cfg.patch) ** 2
    act = cfg.B * n_tok * (8 * cfg.width + 2 * cfg.mlp + 2 * n_tok * cfg.heads) * 4 * cfg.depth
    weights = sum(torch.Size(s).numel() for s in shapes(cfg).values()) * 4
    return len(cfg.task_ps) * (6 * act + 5 * weights) + 6 * act


def task_key(p: float) -> str:
    return f"ft/{p:g}/"


def _tile(x: torch.Tensor, T: int) -> torch.Tensor:
    return x.repeat(T, *([1] * (x.dim() - 1)))  # [E, ...] -> [T*E, ...], task-major


def pretrain(cfgs: Sequence[ColoredDigitsConfig], device, bars: Bars):
    """Psi0 [E, ...] and its curves (10-way cross-entropy and accuracy on the proxy task)."""
    cfg, E = cfgs[0], len(cfgs)
    rng = rng_for(cfgs, device)
    tr = load_split(cfgs, "train", device)
    N = tr.y.numel()
    params = init_params(cfgs, rng, device)
    trainable = [k for k in params if k != "head.w"]

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
        ce = F.cross_entropy(lg.flatten(0, 1), target.flatten(), reduction="none").reshape(E, -1).mean(1)
        return {"loss": ce, "acc": (lg.argmax(-1) == target).float().mean(1)}

    with bars.task(f"colored_digits: pretrain {E} model(s) x {cfg.pretrain_steps} steps", cfg.pretrain_steps,
                   models=E) as advance:
        res = train_ensemble(params, trainable, loss_fn, torch.full((E,), cfg.pretrain_lr, device=device),
                             cfg.pretrain_steps, optimizer=AdamW(cfg.weight_decay), curve_points=cfg.curve_points,
                             on_step=advance)
        return res.params, res.curve_steps, res.curves


def finetune(cfgs: Sequence[ColoredDigitsConfig], psi0: dict[str, torch.Tensor], ps: Sequence[float], device,
             bars: Bars, steps: int | None = None):
    """Fine-tune Psi0's body on each task p (head frozen); models task-major [len(ps) * E, ...]."""
    cfg, E, T = cfgs[0], len(cfgs), len(ps)
    rng = rng_for(cfgs, device)
    tr = load_split(cfgs, "train", device)
    N = tr.y.numel()
    reds = [tr.colours(rng, "train", p) for p in ps]  # [E, N] each, fixed per task
    body = body_keys(psi0)
    start = {k: _tile(psi0[k], T) for k in body}
    head = _tile(psi0["head.w"], T)
    steps = cfg.steps if steps is None else steps

    def loss_fn(p, step):
        idx = [rng.randint(N, (cfg.B,), "batch", "finetune", float(q), step).to(device) for q in ps]  # [E, B] each
        X = torch.cat([tr.painted(red, i) for red, i in zip(reds, idx)])  # [T*E, B, 2, 8, 8]
        y = torch.cat([tr.y[i] for i in idx])  # [T*E, B]
        lg = logits(p, head, X, cfg.patch, cfg.heads)  # [T*E, B, 2]
        ce = F.cross_entropy(lg.flatten(0, 1), (y > 0).long().flatten(), reduction="none").reshape(T * E, -1).mean(1)
        return {"loss": ce, "acc": (lg.argmax(-1) == (y > 0).long()).float().mean(1)}

    with bars.task(f"colored_digits: fine-tune {T * E} model(s) x {steps} steps", steps, models=T * E) as advance:
        res = train_ensemble(start, body, loss_fn, torch.full((T * E,), cfg.lr, device=device), steps,
                             optimizer=AdamW(cfg.weight_decay), curve_points=cfg.curve_points, on_step=advance)
        return res.params, res.curve_steps, res.curves


def train_group(cfgs: Sequence[ColoredDigitsConfig], device: torch.device, bars: Bars) -> GroupResult:
    t0 = time.perf_counter()
    E = len(cfgs)
    ps = shared_value(cfgs, "task_ps")
    psi0, pre_steps, pre_curves = pretrain(cfgs, device, bars)
    ft, ft_steps, ft_curves = finetune(cfgs, psi0, ps, device, bars)
    out = {f"psi0/{k}": v for k, v in psi0.items()}
    for t, p in enumerate(ps):
        out.update({task_key(p) + k: v[t * E : (t + 1) * E] for k, v in ft.items()})
    metrics, curves = [], []
    for e in range(E):
        metrics.append({"pretrain_acc": float(pre_curves["acc"][-1, e]),
                        **{f"train_acc_{p:g}": float(ft_curves["acc"][-1, t * E + e]) for t, p in enumerate(ps)}})
        curves.append({"pretrain_step": pre_steps, "pretrain_loss": pre_curves["loss"][:, e].tolist(),
                       "step": ft_steps, **{f"{k}_{p:g}": ft_curves[k][:, t * E + e].tolist()
                                            for k in ("loss", "acc") for t, p in enumerate(ps)}})
    # AdamW acts elementwise on independent models, so a model that diverges only ruins its own weights: record it
    finite = torch.stack([torch.isfinite(v).flatten(1).all(1) for v in out.values()]).all(0)  # [E]
    return GroupResult(out, metrics, curves, ["done" if ok else "diverged" for ok in finite.tolist()],
                       time.perf_counter() - t0)
