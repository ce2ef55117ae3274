"""`theorylab bench mamba`: bare GD steps (no evaluation, no probes) of the SSM ensemble."""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from theorylab.core.bench import sync
from theorylab.core.ensemble import rng_for, scalar_tensor
from theorylab.core.train import train_ensemble
from theorylab.studies.mamba.data import sample
from theorylab.studies.mamba.evaluate import per_sample_loss
from theorylab.studies.mamba.model import forward, init_params, trainable

REFERENCE = {"L": 20, "d": 16, "m": 64, "n_pool": 128, "n_train": 128}


def train_seconds(cfgs: Sequence, device: torch.device, steps: int, compile: bool = False) -> float:
    """Wall seconds of `steps` full-batch GD steps of the models `cfgs`, trained as one ensemble."""
    cfg = cfgs[0]
    rng = rng_for(cfgs, device)
    params = init_params(cfgs, rng, device)
    pool = sample(cfgs, rng, cfg.n_pool, "train")

    def model_loss(p, X, y):
        return per_sample_loss(forward(p, X, cfg), y, cfg.loss).mean(-1)

    model_loss = torch.compile(model_loss, dynamic=False) if compile else model_loss
    sync(device)
    t0 = time.perf_counter()
    train_ensemble(params, trainable(cfg.arch), lambda p, s: {"loss": model_loss(p, pool.X, pool.y)},
                   scalar_tensor(cfgs, "lr", device), steps, curve_points=1)
    sync(device)
    return time.perf_counter() - t0
