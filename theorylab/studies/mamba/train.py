"""What an ensemble of SSMs (or Transformer baselines) trains on: GD on N samples per model (section 3.2 [R]);
graded on fresh test sequences, and scored on a validation set of its own stream (for model selection).
core.protocol runs the loop.

N = n_train is an ensemble scalar: every model draws n_pool sequences and uses its first N, so cells of a
sample-complexity sweep (different N) train as one ensemble. Curves: training loss and error, the error on a
fixed probe set of n_probe test sequences (for iterations-to-target), and the gate probes.
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
from theorylab.studies.mamba.data import sample
from theorylab.studies.mamba.evaluate import evaluate, gate_probes, per_sample_loss
from theorylab.studies.mamba.model import forward, init_params, trainable


def training(cfgs: Sequence[MambaConfig], rng: EnsembleRNG, device: torch.device) -> Training:
    cfg = cfgs[0]
    for k in ("arch", "regime", "loss", "gain", "B", "n_pool", "steps", "train_gate", "optimizer"):
        shared_value(cfgs, k)
    params = init_params(cfgs, rng, device)
    pool = sample(cfgs, rng, cfg.n_pool, "train")  # [E, n_pool, L, d]
    N = scalar_tensor(cfgs, "n_train", device)  # [E]
    used = (torch.arange(cfg.n_pool, device=device)[None, :] < N[:, None]).float()  # first N rows    [E, n_pool]
    probe = sample(cfgs, rng, cfg.n_probe, "probe")

    def loss_fn(p, step):
        if cfg.B == 0:  # full-batch GD on the N samples
            f = forward(p, pool.X, cfg)
            per = per_sample_loss(f, pool.y, cfg.loss)
            return {"loss": (per * used).sum(-1) / N, "error": (sign_error(f[..., None], pool.y[..., None]) * used).sum(-1) / N}
        idx = (rng.uniform((cfg.B,), "minibatch", step).to(device) * N[:, None]).long()  # B of the first N rows
        b = pool.rows(idx)
        f = forward(p, b.X, cfg)
        return {"loss": per_sample_loss(f, b.y, cfg.loss).mean(-1), "error": sign_error(f, b.y)}

    def probe_fn(p, step):
        with torch.no_grad():
            out = {"probe_error": sign_error(forward(p, probe.X, cfg), probe.y)}
            out.update(gate_probes(p, probe, cfg))
        return out

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
