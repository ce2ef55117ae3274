"""The multi-token Gaussian mixture and the DDPM forward process (section 4.2), batched over models [E] and
noise levels [G] (the t_grid), with the closed-form reference denoisers of section 4.3.

A data point X0 = [x_1..x_N] [N, d]: c_n ~ Unif[K] per token, x_n = mu_{c_n} + sigma0 xi_n, mu_k = r e_k.
Forward process: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I) per token.

Fresh data every step costs millions of normals, so draws use one torch.Generator per model, seeded from the
model's world hash (StudyConfig.world_hash: the config less its swept fields) and the stream name: a model's numbers
do not depend on its ensemble, and the cells of one seed that differ only in a swept field (the W = 0 control) see
the same data points.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from theorylab.core.ensemble import shared_value
from theorylab.core.rng import key_from_hash, stream_id

# ---- random draws: one generator per model ----


@lru_cache(maxsize=1 << 12)
def _world_key(cfg) -> int:
    return key_from_hash(cfg.world_hash)  # the hash serialises the config: worth keeping for the 3 draws of a step


def _generator(cfg, stream: tuple) -> torch.Generator:
    return torch.Generator().manual_seed((_world_key(cfg) ^ stream_id(*stream)) & ((1 << 63) - 1))


def normal(cfgs: Sequence, shape: Sequence[int], *stream, device="cpu") -> torch.Tensor:
    """[E, *shape] standard normals, model e's from its own generator (drawn in place into its slice: the numbers
    of torch.randn(shape, generator), without stacking a copy)."""
    out = torch.empty(len(cfgs), *shape)
    for e, c in enumerate(cfgs):
        out[e].normal_(generator=_generator(c, stream))
    return out.to(device)


def randint(cfgs: Sequence, high: int, shape: Sequence[int], *stream, device="cpu") -> torch.Tensor:
    out = torch.empty(len(cfgs), *shape, dtype=torch.long)
    for e, c in enumerate(cfgs):
        out[e].random_(0, high, generator=_generator(c, stream))
    return out.to(device)


def normal_reference(cfgs: Sequence, shape: Sequence[int], *stream) -> torch.Tensor:
    """normal() as first written: one torch.randn per model, stacked (for tests)."""
    return torch.stack([torch.randn(tuple(shape), generator=_generator(c, stream)) for c in cfgs])


def randint_reference(cfgs: Sequence, high: int, shape: Sequence[int], *stream) -> torch.Tensor:
    return torch.stack([torch.randint(high, tuple(shape), generator=_generator(c, stream)) for c in cfgs])


# ---- schedule ----


def alpha_bar(cfg, device="cpu") -> torch.Tensor:
    """[T] abar_t = prod_{s <= t} (1 - beta_s), linear beta_s from beta_1 to beta_T (index t - 1)."""
    beta = torch.linspace(cfg.beta_1, cfg.beta_T, cfg.T, dtype=torch.float64)
    return torch.cumprod(1 - beta, 0).to(device)


def grid_alpha_bar(cfgs: Sequence, device="cpu") -> torch.Tensor:
    """[G] abar at the noise levels of t_grid (float32)."""
    cfg = cfgs[0]
    shared_value(cfgs, "t_grid")
    return alpha_bar(cfg)[torch.tensor(cfg.t_grid) - 1].float().to(device)


def centres(cfgs: Sequence, device="cpu") -> torch.Tensor:
    """[K, d] mu_k = r e_k (preset G1: the same centres for every data point)."""
    d, K, r = (shared_value(cfgs, k) for k in ("d", "K", "r"))
    return r * torch.eye(d, device=device)[:K]


@dataclass
class Batch:
    x0: torch.Tensor  # [E, G, B, N, d] clean tokens
    c: torch.Tensor  # [E, G, B, N] component of each token
    eps: torch.Tensor  # [E, G, B, N, d] injected noise
    xt: torch.Tensor  # [E, G, B, N, d] noisy tokens
    abar: torch.Tensor  # [G]


def sample_x0(cfgs: Sequence, shape: Sequence[int], *stream, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """x0 [E, *shape, N, d] and components c [E, *shape, N]: x_n = mu_{c_n} + sigma0 xi_n."""
    N, d, K, s0 = (shared_value(cfgs, k) for k in ("N", "d", "K", "sigma0"))
    c = randint(cfgs, K, (*shape, N), *stream, "c", device=device)
    x0 = centres(cfgs, device)[c] + s0 * normal(cfgs, (*shape, N, d), *stream, "xi", device=device)
    return x0, c


def sample(cfgs: Sequence, B: int, *stream, device="cpu") -> Batch:
    """B fresh data points per model and per noise level of t_grid, noised to that level."""
    N, d = shared_value(cfgs, "N"), shared_value(cfgs, "d")
    abar = grid_alpha_bar(cfgs, device)
    G = abar.shape[0]
    x0, c = sample_x0(cfgs, (G, B), *stream, device=device)
    eps = normal(cfgs, (G, B, N, d), *stream, "eps", device=device)
    a = abar[:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps  # the forward process, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps
    return Batch(x0, c, eps, xt, abar)


# ---- reference denoisers (section 4.3); all return [E, G, B, N, d] ----


def _bcast(abar: torch.Tensor) -> torch.Tensor:
    return abar[:, None, None, None]  # [G] -> [G, 1, 1, 1], broadcasts against [E, G, B, N, d]


def s2(abar: torch.Tensor, sigma0: float) -> torch.Tensor:
    """s_t^2 = abar sigma0^2 + (1 - abar): the per-dimension variance of x_t around sqrt(abar) mu_c."""
    return abar * sigma0**2 + (1 - abar)


def oracle(cfgs: Sequence, b: Batch) -> torch.Tensor:
    """eps*_n = sqrt(1 - abar)(x_{t,n} - sqrt(abar) mu_{c_n}) / s_t^2: the MMSE of eps given x_t and c."""
    a = _bcast(b.abar)
    mu = centres(cfgs, b.xt.device)[b.c]
    return (1 - a).sqrt() * (b.xt - a.sqrt() * mu) / s2(a, shared_value(cfgs, "sigma0"))


def posterior(cfgs: Sequence, xt: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """[E, G, B, N, K] p(c | x_t) for one token: prop. to exp(-||x_t - sqrt(abar) mu_c||^2 / (2 s_t^2)) (pi uniform)."""
    a = _bcast(abar)[..., None]  # [G, 1, 1, 1, 1]
    mu = centres(cfgs, xt.device)  # [K, d]
    dist2 = ((xt[..., None, :] - a.sqrt() * mu) ** 2).sum(-1)  # [E, G, B, N, K]
    return torch.softmax(-dist2 / (2 * s2(a[..., 0], shared_value(cfgs, "sigma0"))), dim=-1)


def bayes(cfgs: Sequence, xt: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """E[eps | x_t] for G1 (known centres, tokens independent):
    E[x0 | x_t] = sum_c p(c | x_t) [mu_c + (sqrt(abar) sigma0^2 / s^2)(x_t - sqrt(abar) mu_c)],
    eps_Bayes = (x_t - sqrt(abar) E[x0 | x_t]) / sqrt(1 - abar)."""
    s0 = shared_value(cfgs, "sigma0")
    a = _bcast(abar)
    mu = centres(cfgs, xt.device)
    p = posterior(cfgs, xt, abar)  # [E, G, B, N, K]
    mbar = p @ mu  # sum_c p(c | x) mu_c   [E, G, B, N, d]
    ex0 = mbar + (a.sqrt() * s0**2 / s2(a, s0)) * (xt - a.sqrt() * mbar)
    return (xt - a.sqrt() * ex0) / (1 - a).sqrt()


def mean_denoiser(cfgs: Sequence, b: Batch) -> torch.Tensor:
    """The mechanism with the true assignments: the oracle with sqrt(abar) mu_{c_n} replaced by P_U m_n, m_n the
    mean of x_t over the data point's tokens of component c_n (section 4.3, 'mean-denoising estimator')."""
    K = shared_value(cfgs, "K")
    a = _bcast(b.abar)
    onehot = torch.nn.functional.one_hot(b.c, K).to(b.xt.dtype)  # [E, G, B, N, K]
    sums = onehot.transpose(-1, -2) @ b.xt  # [E, G, B, K, d]
    means = sums / onehot.sum(-2)[..., None].clamp_min(1)
    m = (onehot @ means)[..., :K]  # P_U m_n: U = span{e_0..e_{K-1}}   [E, G, B, N, K]
    proj = torch.nn.functional.pad(m, (0, b.xt.shape[-1] - K))
    return (1 - a).sqrt() * (b.xt - proj) / s2(a, shared_value(cfgs, "sigma0"))


def risk(pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """[*, E, G, B, N, d] -> [*, E, G]: (1/(N d)) ||pred - eps||^2 averaged over the data points (the DDPM loss)."""
    return ((pred - eps) ** 2).mean((-1, -2, -3))


def predicted_excess_share(cfg) -> float:
    """K^2/(N d): the mean-denoising estimator's excess over the oracle as a share of the untrained (eps_hat = 0)
    excess, for well separated components: its error is c_t P_U (cluster-mean noise), per-dimension variance
    ((1 - abar)/s^2) K/(N_c d) with N_c = N/K, and the untrained excess 1 - abar sigma0^2/s^2 = (1 - abar)/s^2."""
    return cfg.K**2 / (cfg.N * cfg.d)


def separated(cfg) -> list[bool]:
    """Per noise level: sqrt(abar) r >= 3 s_t (components well separated, Bayes ~ oracle; spec 4.3)."""
    ab = alpha_bar(cfg)[torch.tensor(cfg.t_grid) - 1]
    return [bool(math.sqrt(a) * cfg.r >= 3 * math.sqrt(a * cfg.sigma0**2 + 1 - a)) for a in ab.tolist()]
