"""The sweep benchmark: model-steps per second of the ICL training step, ensemble vs one at a time.

Both paths run the same code (core.train.train_ensemble with the ICL study's prompts, model and
hinge loss: fresh prompts every step, plain SGD, NaN guard), on the ICL reference config
(B=64, l=20, d_X+d_Y=40, m=64); only the number of models per call differs: E at once, or 1 at a
time in a Python loop (the way paper code trains). Evaluation and probes are not timed.
The two paths are timed alternately and the best of `repeats` is kept, so a burst of load from
other processes on a shared machine penalises neither side more than the other.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.report import machine_description
from theorylab.core.train import train_ensemble

REFERENCE = {"B": 64, "l_tr": 20, "d_X": 30, "d_Y": 10, "m": 64}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def icl_train_seconds(cfgs: Sequence, device: torch.device, steps: int, compile: bool = False) -> float:
    """Wall seconds of `steps` SGD steps of the ICL models `cfgs`, trained as one ensemble."""
    from theorylab.studies.icl.data import in_domain_world, sample_prompts, split_tasks
    from theorylab.studies.icl.evaluate import rng_for
    from theorylab.studies.icl.model import TRAINABLE, forward, hinge, init_params

    rng = rng_for(cfgs, device)
    params = init_params(cfgs, rng, device)
    world = in_domain_world(cfgs, device, split_tasks(cfgs[0])[0])
    alpha, lr = scalar_tensor(cfgs, "alpha", device), scalar_tensor(cfgs, "lr", device)
    B, L = shared_value(cfgs, "B"), shared_value(cfgs, "l_tr")

    def model_loss(p, C, Q, z):  # [E, B, L, D], [E, B, D], [E, B] -> [E]
        return hinge(forward(p, C, Q), z)

    # the prompt sampler hashes stream names in Python, so only the model part can be compiled
    model_loss = torch.compile(model_loss, dynamic=False) if compile else model_loss

    def loss_fn(p, step):
        pr = sample_prompts(world, rng, alpha, B, L, "train", step)
        return {"loss": model_loss(p, pr.C, pr.Q, pr.z)}

    _sync(device)
    t0 = time.perf_counter()
    train_ensemble(params, TRAINABLE, loss_fn, lr, steps, curve_points=1)
    _sync(device)
    return time.perf_counter() - t0


def run_bench(device: torch.device, models: int = 64, steps: int = 200, naive_models: int | None = None,
              repeats: int = 3, compile: bool = False) -> dict:
    """Model-steps/s of both paths (best of `repeats` alternating runs) and their ratio."""
    from theorylab.studies.icl.config import ICLConfig

    base = ICLConfig(**REFERENCE, steps=steps)
    cfgs = [base.replace(seed=i) for i in range(models)]
    k = min(models, naive_models or 8)
    icl_train_seconds(cfgs, device, 2, compile)  # warm-up: allocator, kernels, compilation
    icl_train_seconds(cfgs[:1], device, 2)
    ens, naive = [], []
    for _ in range(repeats):
        ens.append(icl_train_seconds(cfgs, device, steps, compile))
        naive.append(sum(icl_train_seconds([c], device, steps) for c in cfgs[:k]))
    ens_rate = models * steps / min(ens)
    naive_rate = k * steps / min(naive)
    return {
        "ensemble_model_steps_per_s": ens_rate,
        "naive_model_steps_per_s": naive_rate,
        "ratio": ens_rate / naive_rate,
        "device": f"{device} ({machine_description(str(device))})",
        "models": models,
        "steps": steps,
        "naive_models_timed": k,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "compile": compile,
        "torch": torch.__version__,
    }
