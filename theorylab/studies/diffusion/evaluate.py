"""Measurements on trained denoisers: per-noise-level risks against the Bayes and oracle denoisers, the attention
mass on same-component tokens, the relative error to the oracle MMSE, and DDPM sampling on the t_grid."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import shared_value
from theorylab.studies.diffusion.data import (alpha_bar, bayes, centres, grid_alpha_bar, mean_denoiser, normal,
                                              oracle, risk, sample)
from theorylab.studies.diffusion.model import denoise


@torch.no_grad()
def measure(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """{name: [E, G]} on n_test fresh test data points per noise level (the same data for every quantity):
    risk of the model, Bayes, oracle, the true-assignment mean denoiser and the untrained model (eps_hat = 0);
    excess = model - Bayes, md_excess = mean denoiser - Bayes (the reference the convergence claim grades by); the attention
    mass on the query's own component (uniform attention gives about 1/K); ||eps_hat - eps*|| / ||eps*||."""
    b = sample(cfgs, shared_value(cfgs, "n_test"), "test", device=device)
    pred, A = denoise(cfgs, params, b.xt, probes=True)
    star = oracle(cfgs, b)
    same = (b.c[..., :, None] == b.c[..., None, :]).to(A.dtype)  # [E, G, B, N, N]
    out = {"model": risk(pred, b.eps), "bayes": risk(bayes(cfgs, b.xt, b.abar), b.eps), "oracle": risk(star, b.eps),
           "zero": risk(torch.zeros_like(b.eps), b.eps), "mean_denoiser": risk(mean_denoiser(cfgs, b), b.eps),
           "same_mass": (A * same).sum(-1).mean((-1, -2)),
           "uniform_mass": same.mean(-1).mean((-1, -2)),
           "rel_err": ((pred - star) ** 2).sum((-1, -2, -3)).sqrt() / (star**2).sum((-1, -2, -3)).sqrt()}
    out["excess"] = out["model"] - out["bayes"]
    out["init_excess"] = out["zero"] - out["bayes"]
    out["md_excess"] = out["mean_denoiser"] - out["bayes"]
    return out


@torch.no_grad()
def generate(cfgs: Sequence, params: dict[str, torch.Tensor] | None, device, levels: str = "grid") -> torch.Tensor:
    """[E, n_samples, N, d] DDPM ancestral sampling, returning the last x0 estimate. levels = "grid": the t_grid
    (the schedule respaced to those levels: beta'_i = 1 - abar_i / abar_{i-1}), one trained denoiser per level;
    params None: the closed-form Bayes denoiser instead (a reference for the same sampler); levels = "full": every
    step of the schedule (Bayes only: the trained denoisers exist at the t_grid levels alone)."""
    cfg = cfgs[0]
    if levels == "full":
        if params is not None:
            raise ValueError("the full schedule needs a denoiser at every level: only the Bayes denoiser has one")
        abar = alpha_bar(cfg, device).float()
    else:
        abar = grid_alpha_bar(cfgs, device)  # [G], increasing noise with the index
    G, n, N, d = abar.shape[0], shared_value(cfgs, "n_samples"), cfg.N, cfg.d
    x = normal(cfgs, (n, N, d), "sample", "start", device=device)  # x_{t_G} ~ N(0, I)
    for i in range(G - 1, -1, -1):
        a = abar[i]
        if params is None:
            eps = bayes(cfgs, x[:, None], a[None])[:, 0]
        else:
            eps = denoise(cfgs, {k: v[:, i : i + 1] for k, v in params.items()}, x[:, None])[:, 0]  # [E, n, N, d]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()  # the x0 estimate at this level
        if i == 0:
            return x0
        a_prev = abar[i - 1]
        beta = 1 - a / a_prev
        mean = (a_prev.sqrt() * beta / (1 - a)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a)) * x
        var = beta * (1 - a_prev) / (1 - a)
        x = mean + var.sqrt() * normal(cfgs, (n, N, d), "sample", i, device=device)
    return x


def sample_statistics(cfgs: Sequence, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Tokens X [E, n, N, d] assigned to the nearest centre: component weights [E, K], centre error
    ||mean_k - mu_k|| / r [E, K] and the within-component variance per dimension / sigma0^2 [E, K]."""
    mu = centres(cfgs, X.device)  # [K, d]
    K = mu.shape[0]
    tok = X.flatten(1, 2)  # [E, M, d]
    k = ((tok[:, :, None, :] - mu) ** 2).sum(-1).argmin(-1)  # [E, M]
    onehot = torch.nn.functional.one_hot(k, K).to(tok.dtype)  # [E, M, K]
    count = onehot.sum(1)  # [E, K]
    mean = (onehot.transpose(1, 2) @ tok) / count[..., None].clamp_min(1)  # [E, K, d]
    dev2 = ((tok[:, :, None, :] - mean[:, None]) ** 2).mean(-1)  # [E, M, K]
    var = (onehot * dev2).sum(1) / count.clamp_min(1)
    s0 = shared_value(cfgs, "sigma0")
    return {"weights": count / tok.shape[1], "centre_err": (mean - mu).norm(dim=-1) / shared_value(cfgs, "r"),
            "var_ratio": var / max(s0**2, 1e-12), "mean_norm": tok.norm(dim=-1).mean(1)}


def abar_list(cfg) -> list[float]:
    return alpha_bar(cfg)[torch.tensor(cfg.t_grid) - 1].tolist()
