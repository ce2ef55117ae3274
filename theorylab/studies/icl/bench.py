"""The ICL study's training step timed alone (no evaluation, no probes), for `theorylab bench icl`."""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from theorylab.core.bench import sync
from theorylab.core.fast import compile_mode
from theorylab.core.ensemble import rng_for, scalar_tensor, shared_value
from theorylab.core.train import train_ensemble
from theorylab.shared.icl_prompts import in_domain_world, sample_prompts, split_tasks
from theorylab.core.losses import hinge
from theorylab.studies.icl.model import TRAINABLE, forward, init_params

REFERENCE = {"B": 64, "l_tr": 20, "d_X": 30, "d_Y": 10, "m": 64}  # the reference config of BENCHMARKS.md


def icl_train_seconds(cfgs: Sequence, device: torch.device, steps: int, compile: bool = False,
                      compiled_sampler: bool | None = None) -> float:
    """Wall seconds of `steps` SGD steps of the ICL models `cfgs`, trained as one ensemble.

    compiled_sampler: None times the path a long training run takes (the compiled sampler, unless
    THEORYLAB_COMPILE=0); False the eager one. compile: also torch.compile the model's loss."""
    rng = rng_for(cfgs, device)
    params = init_params(cfgs, rng, device)
    world = in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])
    alpha, lr = scalar_tensor(cfgs, "alpha", device), scalar_tensor(cfgs, "lr", device)
    B, L = shared_value(cfgs, "B"), shared_value(cfgs, "l_tr")

    def model_loss(p, C, Q, z):  # [E, B, L, D], [E, B, D], [E, B] -> [E]
        return hinge(forward(p, C, Q), z)

    model_loss = torch.compile(model_loss, dynamic=False) if compile else model_loss
    if compiled_sampler is None:
        compiled_sampler = compile_mode() != "0"  # the path of a long run

    last = None

    def loss_fn(p, step):
        nonlocal last
        last = sample_prompts(world, rng, alpha, B, L, "train", step, reuse=last, compiled=compiled_sampler)
        return {"loss": model_loss(p, last.C, last.Q, last.z)}

    sync(device)
    t0 = time.perf_counter()
    train_ensemble(params, TRAINABLE, loss_fn, lr, steps, curve_points=1)
    sync(device)
    return time.perf_counter() - t0
