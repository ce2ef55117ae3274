"""`theorylab bench mamba`: the study's training steps (its Training's loss and optimizer; no probes, no
grading) of the SSM ensemble."""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from theorylab.core.bench import sync
from theorylab.core.ensemble import rng_for
from theorylab.core.train import train_ensemble
from theorylab.studies.mamba.train import training

REFERENCE = {"L": 20, "d": 16, "m": 64, "n_pool": 128, "n_train": 128}  # B = 0: full-batch GD


def train_seconds(cfgs: Sequence, device: torch.device, steps: int, compile: bool = False) -> float:
    """Wall seconds of `steps` GD steps of the models `cfgs`, trained as one ensemble; compile: torch.compile
    the loss (full-batch GD does not read the step, so one graph serves every step)."""
    tr = training(cfgs, rng_for(cfgs, device), device)
    loss = torch.compile(tr.loss, dynamic=False) if compile else tr.loss
    sync(device)
    t0 = time.perf_counter()
    train_ensemble(tr.params, list(tr.trainable), loss, tr.lr, steps, optimizer=tr.optimizer, curve_points=1)
    sync(device)
    return time.perf_counter() - t0
