"""Full-batch GD on the empirical cross-entropy (section 4.2) over one fixed training set per cell.

GMM cells store W, the teacher W_star and metrics: the relative error ||W - W*||_F / ||W*||_F, per-group test
accuracy, per-group excess risk E_x[KL(H*(x) || H(x))] (exact in y, Monte-Carlo in x), and the convergence
iterations (the first checkpoint where ||W_t - W_T|| <= CONV_FRACTION ||W_0 - W_T||) and grad_ratio =
||grad L(W_T)||_F / ||grad L(W_0)||_F of the training loss (near 0: GD reached a critical point; at K = 3 on an
ill-conditioned cell it stays large, see config.py). Digits cells store W, per-group test accuracy and grad_ratio.
Every cell stores lr_used (the step GD took, [E]) and curvature0, the largest |eigenvalue| of the training loss's
Hessian at W0: with lr_rule = "curvature" (the default) lr_used = min(lr, 1 / curvature0), half the step at which GD
on a quadratic of that curvature stops converging; with lr_rule = "fixed" lr_used = lr.
core.protocol runs the loop.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import scalar_tensor, shared_value
from theorylab.core.protocol import Graded, Training
from theorylab.core.rng import EnsembleRNG
from theorylab.studies.group_imbalance.data import digits_splits, gmm_test, gmm_train, teacher
from theorylab.core.train import curve_steps
from theorylab.studies.group_imbalance.model import TrainLoss, cross_entropy, forward, init_params, top_curvature

CONV_FRACTION = 0.01


def group_metrics(H: torch.Tensor, test, p_star: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per group (0 majority, 1 minority) and on average: accuracy against the test labels and, with a teacher,
    the excess risk E_x[KL(H*(x) || H(x))]; {name: [E]}."""
    out = {}
    correct = ((H > 0.5).float() == test.y).float()
    for k, name in ((0, "maj"), (1, "min")):
        m = (test.g == k).float()
        out[f"acc_{name}"] = (correct * m).sum(-1) / m.sum(-1)
        if p_star is not None:
            Hc, Pc = H.clamp(1e-7, 1 - 1e-7), p_star.clamp(1e-7, 1 - 1e-7)
            kl = Pc * torch.log(Pc / Hc) + (1 - Pc) * torch.log((1 - Pc) / (1 - Hc))
            out[f"excess_{name}"] = (kl * m).sum(-1) / m.sum(-1)
    out["acc_avg"] = (out["acc_maj"] + out["acc_min"]) / 2
    return out


def training(cfgs: Sequence, rng: EnsembleRNG, device: torch.device, fast: bool = True) -> Training:
    """fast: the training loss through model.TrainLoss (one autograd node, the GEMM-friendly layout); False: the
    plain cross_entropy(forward(...)) it is tested equal to."""
    gmm = shared_value(cfgs, "dataset") == "gmm"
    if gmm:
        W_star = teacher(cfgs, device)
        train, test = gmm_train(cfgs, W_star, device), gmm_test(cfgs, W_star, device)
    else:
        W_star = None
        train, test = digits_splits(cfgs, device)
    params0 = init_params(cfgs, W_star, device)
    lr = scalar_tensor(cfgs, "lr", device)
    curvature0 = top_curvature(params0["W"], train.X, train.y)  # [E] ||Hessian of the training loss at W0||_2
    if shared_value(cfgs, "lr_rule") == "curvature":
        lr = torch.minimum(lr, 1 / curvature0.clamp_min(1e-30))  # half the stability limit 2 / lambda_max
    snaps: list[torch.Tensor] = []  # W at every curve checkpoint [E, D, K], for the convergence iterations

    def rel_err(W: torch.Tensor) -> torch.Tensor:
        """||W - W*||_F / ||W*||_F, [E]."""
        return (W - W_star).flatten(1).norm(dim=-1) / W_star.flatten(1).norm(dim=-1)

    steps, curve_points = shared_value(cfgs, "steps"), shared_value(cfgs, "curve_points")
    marks = set(curve_steps(steps, curve_points))  # the trainer records curves here only
    Xt = train.X.transpose(1, 2).contiguous()  # [E, D, N]: the fixed training set in TrainLoss's layout

    def loss_fn(p, step):
        if fast:
            out = {"loss": TrainLoss.apply(p["W"], Xt, train.y)}
        else:
            out = {"loss": cross_entropy(forward(p, train.X), train.y)}
        if gmm and step in marks:  # a curve only: computed where it is recorded
            with torch.no_grad():
                out["rel_err"] = rel_err(p["W"])
        return out

    def probe(p, step):
        snaps.append(p["W"].detach().clone())
        return {}

    def train_grad_norm(W: torch.Tensor) -> torch.Tensor:
        """||grad of the training loss at W||_F, [E] (models are independent: the sum's gradient splits)."""
        W = W.detach().clone().requires_grad_(True)
        g, = torch.autograd.grad(cross_entropy(forward({"W": W}, train.X), train.y).sum(), W)
        return g.flatten(1).norm(dim=-1)

    def grade(res) -> Graded:
        W = res.params["W"]
        grad_ratio = train_grad_norm(W) / train_grad_norm(params0["W"]).clamp_min(1e-30)
        with torch.no_grad():
            final = group_metrics(forward(res.params, test.X), test, test.p)
            dist = torch.stack([(s - W).flatten(1).norm(dim=-1) for s in snaps])  # [T, E]
            reached = dist <= CONV_FRACTION * dist[0].clamp_min(1e-12)
            first = reached.float().argmax(0)  # first checkpoint within CONV_FRACTION of the way
            final["conv_iters"] = torch.tensor(res.curve_steps, dtype=torch.float32, device=first.device)[first]
            final["grad_ratio"] = grad_ratio
            final["lr_used"], final["curvature0"] = lr, curvature0
            params = {"W": W}
            if gmm:
                final["rel_err"] = rel_err(W)
                params["W_star"] = W_star
        return Graded(final, params)

    return Training(params0, ["W"], loss_fn, lr, steps, grade, what="GD steps", probes=probe,
                    curve_points=curve_points)
