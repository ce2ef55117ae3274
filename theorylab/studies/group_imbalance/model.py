"""The one-hidden-layer network of section 4.2: H(W, x) = (1/K) sum_j sigmoid(w_j^T x), W [E, D, K]
(fixed average-pooling output), trained by full-batch GD on the empirical cross-entropy."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.core.ensemble import rng_for, shared_value
from theorylab.studies.group_imbalance.data import teacher_prob

PROB_CLAMP = 1e-7  # the precursor code clamps probabilities (at 1e-15 in double precision)
CURVATURE_ITERS = 50  # power iterations for the Hessian's top eigenvalue (D K <= 33 at the study's sizes)


def forward(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """X [E, n, D] -> H [E, n] (the network's P(y = 1 | x))."""
    return teacher_prob(params["W"], X)


def cross_entropy(H: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[E, n] -> [E]: -(1/n) sum [y log H + (1 - y) log(1 - H)]."""
    H = H.clamp(PROB_CLAMP, 1 - PROB_CLAMP)
    return -(y * torch.log(H) + (1 - y) * torch.log1p(-H)).mean(-1)


class TrainLoss(torch.autograd.Function):
    """cross_entropy(forward({"W": W}, X), y) in the layout CPU GEMM runs fastest, with its gradient written out as
    one autograd node (the speed path; `cross_entropy(forward(...))` is the plain one it is tested equal to).
    Xt = X transposed [E, D, n] (the training set is fixed: transposed once): W^T Xt is a GEMM with n as its long
    output side, 4x faster than X W with its 3-wide output (4.4 vs 1.0 ms at E = 64, n = 1000, D = 5, K = 3, one
    core), the mean over K neurons runs over contiguous rows, and the backward is one GEMM, Xt dZ^T."""

    @staticmethod
    def forward(ctx, W, Xt, y):  # W [E, D, K], Xt [E, D, n], y [E, n] -> [E]
        s = torch.sigmoid(torch.bmm(W.mT, Xt))  # sigmoid(w_j^T x_i)                                    [E, K, n]
        H = s.mean(1)  # the network's P(y = 1 | x)                                                       [E, n]
        Hc = H.clamp(PROB_CLAMP, 1 - PROB_CLAMP)
        ctx.save_for_backward(Xt, y, s, H, Hc)
        return -(y * torch.log(Hc) + (1 - y) * torch.log1p(-Hc)).mean(-1)

    @staticmethod
    def backward(ctx, g):  # g [E] = dLoss/dloss
        Xt, y, s, H, Hc = ctx.saved_tensors
        K, n = s.shape[1], s.shape[2]
        inside = Hc == H  # clamp passes the gradient only inside its (closed) range: where it left H as it was
        gH = torch.where(inside, (g / n)[:, None] * ((1 - y) / (1 - Hc) - y / Hc), 0.0)  # [E, n]
        gZ = (gH / K)[:, None, :] * (s * (1 - s))  # through the mean over neurons and the sigmoid     [E, K, n]
        return torch.bmm(Xt, gZ.mT), None, None  # [E, D, K]


def top_curvature(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, iters: int = CURVATURE_ITERS) -> torch.Tensor:
    """[E] the largest |eigenvalue| of the training loss's Hessian at W [E, D, K] (>= its largest eigenvalue), by
    power iteration with Hessian-vector products (double backward through one gradient graph). The models are
    independent, so the Hessian of the summed loss is block diagonal and one product serves every model. The start
    vector comes from a fixed generator, not from the study's random streams (no world draw changes)."""
    W = W.detach().clone().requires_grad_(True)
    g, = torch.autograd.grad(cross_entropy(forward({"W": W}, X), y).sum(), W, create_graph=True)
    v = torch.randn(W.shape, generator=torch.Generator().manual_seed(0), dtype=W.dtype).to(W.device)
    lam = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
    for _ in range(iters):
        v = v / v.flatten(1).norm(dim=-1).clamp_min(1e-30)[:, None, None]
        Hv, = torch.autograd.grad(g, W, grad_outputs=v, retain_graph=True)
        lam = (v * Hv).flatten(1).sum(-1)  # the Rayleigh quotient of the current unit vector
        v = Hv.detach()
    return lam.detach().abs()


def init_params(cfgs: Sequence, W_star: torch.Tensor | None, device) -> dict[str, torch.Tensor]:
    """GMM: W0 = W* + init_radius ||W*||_F U / ||U||_F, U Gaussian (the precursor's local init);
    digits (no teacher): W0 = init_radius N(0, 1)."""
    r = shared_value(cfgs, "init_radius")
    if W_star is None:
        D, K = shared_value(cfgs, "d") + 1, shared_value(cfgs, "K")
        return {"W": r * rng_for(cfgs, device).normal((D, K), "init").to(device)}
    U = rng_for(cfgs, device).normal(tuple(W_star.shape[1:]), "init").to(device)
    nrm = lambda A: A.flatten(1).norm(dim=-1)[:, None, None]  # noqa: E731
    return {"W": W_star + r * nrm(W_star) * U / nrm(U)}


def forward_reference(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """H(W, x) one model and one sample at a time (for tests)."""
    E, n, _ = X.shape
    out = torch.empty(E, n)
    for e in range(E):
        W = params["W"][e]
        for i in range(n):
            out[e, i] = sum(torch.sigmoid(W[:, j] @ X[e, i]) for j in range(W.shape[1])) / W.shape[1]
    return out


def check_forward(cfgs: Sequence, params: dict[str, torch.Tensor], device) -> float:
    X = torch.randn(len(cfgs), 5, params["W"].shape[1], generator=torch.Generator().manual_seed(0)).to(device)
    return float((forward(params, X) - forward_reference(params, X).to(device)).abs().max())
