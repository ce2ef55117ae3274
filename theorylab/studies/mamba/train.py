"""What an ensemble of SSMs (or Transformer baselines) trains on: GD on N samples per model (section 3.2 [R]);
graded on fresh test sequences, and scored on a validation set of its own stream (for model selection).
core.protocol runs the loop.

N = n_train is an ensemble scalar: every model draws n_pool sequences and uses its first N, so cells of a
sample-complexity sweep (different N) train as one ensemble. Full-batch GD (B = 0) runs each model on its own N
rows only (`own_rows`: the models grouped by N, one forward per group); the plain form (fast=False) runs every
model over the whole pool and masks the rows past its N, two thirds of the work in the claims' N grid
(n_pool/32 .. n_pool). Tests: both give the same losses, gradients and GD steps. Curves: training loss and
error, the error on a fixed probe set of n_probe test sequences (for iterations-to-target), and the gate probes
(both from one forward pass per checkpoint: evaluate.probe_values).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.losses import sign_error
from theorylab.core.protocol import Training
from theorylab.core.train import SGD, AdamW
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.mamba.config import MambaConfig
from theorylab.studies.mamba.data import Batch, sample
from theorylab.studies.mamba.evaluate import evaluate, per_sample_loss, probe_values
from theorylab.studies.mamba.model import forward, init_params, trainable


def own_rows(cfgs: Sequence[MambaConfig], pool: Batch, device) -> tuple[list, torch.Tensor | None] | None:
    """Full-batch GD on each model's own rows: per distinct N, (the models: a slice when they are contiguous, else
    an index tensor; N; their first N sequences X [G, N, L, d] and labels y [G, N]), and the permutation that puts
    the groups' concatenated results back in model order (None: already in order). None when every model uses the
    whole pool: the plain masked form then does no wasted work."""
    by_n: dict[int, list[int]] = {}
    for e, c in enumerate(cfgs):
        by_n.setdefault(c.n_train, []).append(e)
    if list(by_n) == [cfgs[0].n_pool]:
        return None
    groups = []
    for n, models in by_n.items():
        idx = torch.tensor(models, device=device)
        contiguous = models == list(range(models[0], models[-1] + 1))
        # copied once here (the pool is fixed), not gathered every step
        groups.append((slice(models[0], models[-1] + 1) if contiguous else idx, n,
                       pool.X[idx, :n].contiguous(), pool.y[idx, :n].contiguous()))
    order = [e for models in by_n.values() for e in models]
    back = None if order == sorted(order) else torch.argsort(torch.tensor(order, device=device))
    return groups, back


def training(cfgs: Sequence[MambaConfig], rng: EnsembleRNG, device: torch.device, fast: bool = True) -> Training:
    """fast (the default): full-batch GD runs each model on its own first N rows (`own_rows`), and the probes take
    one forward pass (evaluate.probe_values); False: every model over the whole pool, rows past its N masked, and
    the probes' two passes (the plain forms they are tested equal to)."""
    cfg = cfgs[0]
    for k in ("arch", "regime", "loss", "gain", "B", "n_pool", "steps", "train_gate", "optimizer"):
        shared_value(cfgs, k)
    params = init_params(cfgs, rng, device)
    pool = sample(cfgs, rng, cfg.n_pool, "train")  # [E, n_pool, L, d]
    N = scalar_tensor(cfgs, "n_train", device)  # [E]
    used = (torch.arange(cfg.n_pool, device=device)[None, :] < N[:, None]).float()  # first N rows    [E, n_pool]
    probe = sample(cfgs, rng, cfg.n_probe, "probe")
    own = own_rows(cfgs, pool, device) if fast and cfg.B == 0 else None

    def loss_fn(p, step):
        if own is not None:  # full-batch GD, each group of models (one N) on its own N rows
            groups, back = own
            losses, errors = [], []
            for models, n, X, y in groups:
                f = forward({k: v[models] for k, v in p.items()}, X, cfg)  # autograd: into the [E, ...] weights
                losses.append(per_sample_loss(f, y, cfg.loss).sum(-1) / n)
                errors.append(sign_error(f, y))
            loss, error = torch.cat(losses), torch.cat(errors)
            return {"loss": loss, "error": error} if back is None else {"loss": loss[back], "error": error[back]}
        if cfg.B == 0:  # full-batch GD on the N samples
            f = forward(p, pool.X, cfg)
            per = per_sample_loss(f, pool.y, cfg.loss)
            return {"loss": (per * used).sum(-1) / N, "error": (sign_error(f[..., None], pool.y[..., None]) * used).sum(-1) / N}
        idx = (rng.uniform((cfg.B,), "minibatch", step).to(device) * N[:, None]).long()  # B of the first N rows
        b = pool.rows(idx)
        f = forward(p, b.X, cfg)
        return {"loss": per_sample_loss(f, b.y, cfg.loss).mean(-1), "error": sign_error(f, b.y)}

    def probe_fn(p, step):
        return probe_values(p, probe, cfg, fast=fast)  # fast: one forward pass on the probe set, not two

    def grade(res):
        test = evaluate(res.params, cfgs)
        # the validation set: n_test fresh sequences of their own stream, never the test draws; model selection
        # (the baseline tuning of fig_ssm_vs_transformer) reads only these
        val = evaluate(res.params, cfgs, stream=("val",))
        return {"test_error": test["error"], "test_loss": test["loss"], "val_error": val["error"],
                "val_loss": val["loss"], "train_error": res.curves["error"][-1],
                **{k: v[-1] for k, v in res.curves.items() if k not in ("loss", "error")}}

    return Training(params, trainable(cfg.arch, cfg.train_gate), loss_fn, scalar_tensor(cfgs, "lr", device),
                    cfg.steps, grade, what=f"{cfg.arch} {cfg.optimizer} steps", probes=probe_fn, curve_points=cfg.curve_points,
                    optimizer=AdamW(weight_decay=0.0) if cfg.optimizer == "adam" else SGD())
