"""What an ensemble of attention denoisers trains on: gradient descent on the Monte-Carlo population DDPM loss
(section 4.2), fresh data points every step at every noise level of t_grid; the loss is the mean over the grid of
(1/(N d)) ||eps_hat - eps||^2. The curve `excess` is the loss minus the Bayes denoiser's loss on the same batch
(section 4.3). Graded on fresh test data points. core.protocol runs the loop.

The data come from each config's own keyed generators (data.py) and the weights start at zero (model.init_params),
so `training` leaves the ensemble rng unused.

A cell's stored weights: W, V [G, d, d] and a [G]; metrics: the final test risk, Bayes risk and excess.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.chunked import chunked_loss
from theorylab.core.chunked import models_per_slice as cache_models
from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.protocol import Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import SGD, AdamW, curve_steps
from theorylab.studies.diffusion.data import bayes, risk, sample
from theorylab.studies.diffusion.model import denoise, forward, forward_uniform, init_params, trainable


SCORES_FLOATS = 1 << 18  # attention scores per slice of the CPU step (1 MB of float32: about a core's L2)


def models_per_slice(cfgs: Sequence, device: torch.device) -> int:
    """Models per slice of the training step (core.chunked): on a CPU as many as keep the attention scores
    [G, B, N, N] of the slice near one core's cache; elsewhere the whole ensemble at once."""
    G, B, N = (len(shared_value(cfgs, "t_grid")), *(shared_value(cfgs, k) for k in ("B", "N")))
    return cache_models(G * B * N * N, len(cfgs), device, cache=SCORES_FLOATS)


def step_loss(cfgs: Sequence, step: int, checkpoints: set[int], device: torch.device):
    """(params of models, models) -> {"loss": [e], "excess" at checkpoints}: step `step` for the models `models`
    (a slice of cfgs); their data come from their own generators, so a slice draws its models' numbers."""
    B = shared_value(cfgs, "B")
    # the W = 0 control: W is not trained and starts at zero, so it stays zero and the attention uniform
    model = forward_uniform if shared_value(cfgs, "freeze_attention") else forward

    def loss_of(p: dict[str, torch.Tensor], models: slice) -> dict[str, torch.Tensor]:
        sub = list(cfgs)[models]
        b = sample(sub, B, "train", step, device=device)
        per_t = risk(model(p, b.xt), b.eps)  # [e, G]
        out = {"loss": per_t.mean(-1)}
        if step in checkpoints:
            with torch.no_grad():
                out["excess"] = (per_t - risk(bayes(sub, b.xt, b.abar), b.eps)).mean(-1)
        return out

    return loss_of


def training(cfgs: Sequence, rng: EnsembleRNG, device: torch.device, chunk: int | None = None) -> Training:
    """chunk: models per slice of the step (default models_per_slice; len(cfgs): the whole ensemble at once, the
    plain computation the sliced one is tested equal to)."""
    E, steps, points = len(cfgs), shared_value(cfgs, "steps"), shared_value(cfgs, "curve_points")
    # the excess curve is recorded at the checkpoints alone, and the Bayes denoiser costs more than the model's
    # forward and backward together: it is computed at those steps only (core's trainer records the curves at
    # curve_steps(steps, curve_points); a trainer run with fewer points, as the bench's, records a subset)
    checkpoints = set(curve_steps(steps, points))
    chunk = models_per_slice(cfgs, device) if chunk is None else chunk

    def loss_fn(p, step):
        return chunked_loss(step_loss(cfgs, step, checkpoints, device), p, E, chunk)

    def grade(res):
        test = test_risks(cfgs, res.params, device)
        return {"test_loss": test["model"].mean(-1), "test_bayes": test["bayes"].mean(-1),
                "test_excess": (test["model"] - test["bayes"]).mean(-1)}

    opt = AdamW(weight_decay=0.0) if shared_value(cfgs, "optimizer") == "adam" else SGD()
    return Training(init_params(cfgs, device), trainable(cfgs), loss_fn, scalar_tensor(cfgs, "lr", device),
                    steps, grade, what="steps", optimizer=opt,
                    curve_points=points)


@torch.no_grad()
def test_risks(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Risks [E, G] on n_test fresh test data points per noise level: the model, the Bayes denoiser and the
    untrained model (eps_hat = 0), all on the same data."""
    b = sample(cfgs, shared_value(cfgs, "n_test"), "test", device=device)
    return {"model": risk(denoise(cfgs, params, b.xt), b.eps), "bayes": risk(bayes(cfgs, b.xt, b.abar), b.eps),
            "zero": risk(torch.zeros_like(b.eps), b.eps)}
