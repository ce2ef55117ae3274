"""Gradient descent on the Monte-Carlo population DDPM loss (section 4.2): fresh data points every step at every
noise level of t_grid; the loss is the mean over the grid of (1/(N d)) ||eps_hat - eps||^2. The curve `excess`
is the loss minus the Bayes denoiser's loss on the same batch (section 4.3).

A cell's stored weights: W, V [G, d, d] and a [G]; metrics: the final test risk, Bayes risk and excess.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.progress import Bars
from theorylab.core.study import GroupResult, group_result
from theorylab.core.train import SGD, AdamW, train_ensemble
from theorylab.studies.diffusion.data import bayes, risk, sample
from theorylab.studies.diffusion.model import forward, init_params, trainable



def train_group(cfgs: Sequence, device: torch.device, bars: Bars) -> GroupResult:
    B = shared_value(cfgs, "B")

    def loss_fn(p, step):
        b = sample(cfgs, B, "train", step, device=device)
        per_t = risk(forward(p, b.xt), b.eps)  # [E, G]
        with torch.no_grad():
            excess = (per_t - risk(bayes(cfgs, b.xt, b.abar), b.eps)).mean(-1)
        return {"loss": per_t.mean(-1), "excess": excess}

    opt = AdamW(weight_decay=0.0) if shared_value(cfgs, "optimizer") == "adam" else SGD()
    steps = shared_value(cfgs, "steps")
    with bars.task(f"diffusion: {len(cfgs)} model(s) x {steps} steps", steps, models=len(cfgs)) as advance:
        res = train_ensemble(init_params(cfgs, device), trainable(cfgs), loss_fn, scalar_tensor(cfgs, "lr", device),
                             steps, optimizer=opt, curve_points=shared_value(cfgs, "curve_points"), on_step=advance)
    test = test_risks(cfgs, res.params, device)
    final = {"test_loss": test["model"].mean(-1), "test_bayes": test["bayes"].mean(-1),
             "test_excess": (test["model"] - test["bayes"]).mean(-1)}
    curves = [res.model_curves(e) for e in range(len(cfgs))]
    return group_result(res.params, final, curves, res.diverged_at, res.seconds)


@torch.no_grad()
def test_risks(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """Risks [E, G] on n_test fresh test data points per noise level: the model, the Bayes denoiser and the
    untrained model (eps_hat = 0), all on the same data."""
    b = sample(cfgs, shared_value(cfgs, "n_test"), "test", device=device)
    return {"model": risk(forward(params, b.xt), b.eps), "bayes": risk(bayes(cfgs, b.xt, b.abar), b.eps),
            "zero": risk(torch.zeros_like(b.eps), b.eps)}
