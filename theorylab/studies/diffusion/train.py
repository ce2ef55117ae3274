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

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.protocol import Training
from theorylab.core.rng import EnsembleRNG
from theorylab.core.train import SGD, AdamW
from theorylab.studies.diffusion.data import bayes, risk, sample
from theorylab.studies.diffusion.model import forward, init_params, trainable


def training(cfgs: Sequence, rng: EnsembleRNG, device: torch.device) -> Training:
    B = shared_value(cfgs, "B")

    def loss_fn(p, step):
        b = sample(cfgs, B, "train", step, device=device)
        per_t = risk(forward(p, b.xt), b.eps)  # [E, G]
        with torch.no_grad():
            excess = (per_t - risk(bayes(cfgs, b.xt, b.abar), b.eps)).mean(-1)
        return {"loss": per_t.mean(-1), "excess": excess}

    def grade(res):
        test = test_risks(cfgs, res.params, device)
        return {"test_loss": test["model"].mean(-1), "test_bayes": test["bayes"].mean(-1),
                "test_excess": (test["model"] - test["bayes"]).mean(-1)}

    opt = AdamW(weight_decay=0.0) if shared_value(cfgs, "optimizer") == "adam" else SGD()
    return Training(init_params(cfgs, device), trainable(cfgs), loss_fn, scalar_tensor(cfgs, "lr", device),
                    shared_value(cfgs, "steps"), grade, what="steps", optimizer=opt,
                    curve_points=shared_value(cfgs, "curve_points"))


@torch.no_grad()
def test_risks(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Risks [E, G] on n_test fresh test data points per noise level: the model, the Bayes denoiser and the
    untrained model (eps_hat = 0), all on the same data."""
    b = sample(cfgs, shared_value(cfgs, "n_test"), "test", device=device)
    return {"model": risk(forward(params, b.xt), b.eps), "bayes": risk(bayes(cfgs, b.xt, b.abar), b.eps),
            "zero": risk(torch.zeros_like(b.eps), b.eps)}
