"""What an ensemble trains on (section 3.2): hinge loss, plain SGD on minibatches of a fixed training set (or
fresh samples), W_Q, W_K, W_V, W_O trained (or rank-r LoRA factors of the first three); graded on fresh test
samples. core.protocol runs the loop.

A cell's stored weights: W_Q, W_K, W_V, W_O, a (final, LoRA factors composed) and W_Q0, W_K0, W_V0, W_O0
(the initialisation, so the updates dW = W - W0 need nothing else).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.batch import gather_rows
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.losses import hinge, sign_error
from theorylab.core.protocol import Graded, Training
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.lowrank.config import LowRankConfig
from theorylab.studies.lowrank.data import Batch, sample
from theorylab.studies.lowrank.evaluate import evaluate
from theorylab.studies.lowrank.model import ATTENTION, compose, forward, forward_fast, init_lora, init_params, trainable


def training(cfgs: Sequence[LowRankConfig], rng: EnsembleRNG, device: torch.device, fast: bool = True) -> Training:
    """fast: the step through model.forward_fast (one GEMM per model per weight) and minibatches that take only the
    inputs and labels from the pool; False: model.forward, the plain form it is tested equal to."""
    init = init_params(cfgs, rng, device)
    r = shared_value(cfgs, "lora_rank")
    params = dict(init) if r == 0 else {**init_lora(cfgs, rng, device), "W_O": init["W_O"], "a": init["a"]}
    B, steps, n_train = (shared_value(cfgs, k) for k in ("B", "steps", "n_train"))
    pool = sample(cfgs, rng, n_train, "train") if n_train else None

    def batch(step: int) -> Batch:
        if pool is None:
            return sample(cfgs, rng, B, "fresh", step)
        idx = rng.randint(n_train, (B,), "minibatch", step).to(device)
        if fast:  # the loss reads X and y only: gather nothing else
            return Batch(gather_rows(pool.X, idx), gather_rows(pool.y, idx), pool.pattern[:, :0], pool.kind[:, :0])
        return pool.rows(idx)

    def loss_fn(p, step):
        b = batch(step)
        F = (forward_fast if fast else forward)(compose(p, init), b.X)
        return {"loss": hinge(F, b.y), "error": sign_error(F, b.y)}

    def grade(res) -> Graded:
        final = compose(res.params, init)
        out = {**{w: final[w] for w in (*ATTENTION, "W_O", "a")}, **{f"{w}0": init[w] for w in (*ATTENTION, "W_O")}}
        test = evaluate(out, cfgs, ("final",))
        return Graded({"test_error": test["error"], "test_loss": test["loss"]}, params=out)

    return Training(params, trainable(r), loss_fn, scalar_tensor(cfgs, "lr", device), steps, grade,
                    curve_points=shared_value(cfgs, "curve_points"))
