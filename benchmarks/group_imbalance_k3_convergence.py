"""Why full-batch GD at K = 3 converges slowly in the group_imbalance study (issue 23): per cell, the local
minimiser of the empirical cross-entropy near the initialisation (Levenberg-Marquardt Newton, float64), the Hessian
spectrum there, where the Hessian at W* puts its steep and flat directions (the share of an eigenvector's weight in
the "all neurons move together" subspace), and GD from the study's local init at a few step sizes, recorded as the relative error to W*, the
distance to the minimiser and the training-loss gap.

The step size and step count of the study were chosen from this output (training loss and relative error only,
before any claim ran at K = 3; docs/studies/group_imbalance.md).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/group_imbalance_k3_convergence.py --K 3 --lrs 0.5,2 --steps 10000
"""
from __future__ import annotations

import argparse

import torch

from theorylab.studies.group_imbalance.config import GroupImbalanceConfig
from theorylab.studies.group_imbalance.data import gmm_train, teacher
from theorylab.studies.group_imbalance.model import init_params

CPU = torch.device("cpu")
# the covariance and means sweeps' extremes and middle at the largest quick N, and the minority claim's ends
CELLS = [{"sigma1": s} for s in (0.04, 1.0, 5.0, 25.0)] + [{"mu1": m} for m in (0.0, 4.0)] + \
        [{"sigma2": 25.0, "lam2": lam, "N": 1000} for lam in (0.05, 0.5)]


def empirical_loss(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    H = torch.sigmoid(X @ W).mean(-1).clamp(1e-12, 1 - 1e-12)
    return -(y * torch.log(H) + (1 - y) * torch.log1p(-H)).mean()


def local_minimiser(W0, X, y, iters: int = 300):
    """Damped Newton from W0 (a step is taken only when it lowers the loss); returns W, |grad|, Hessian eigenvalues."""
    f = lambda v: empirical_loss(v.reshape(W0.shape), X, y)  # noqa: E731
    v, damping, fv = W0.flatten().clone(), 1e-3, float(f(W0.flatten()))
    for _ in range(iters):
        vv = v.clone().requires_grad_(True)
        g, = torch.autograd.grad(f(vv), vv)
        if float(g.norm()) < 1e-11:
            break
        hess = torch.autograd.functional.hessian(f, v)
        for _ in range(60):
            step = torch.linalg.solve(hess + damping * torch.eye(len(v), dtype=v.dtype), g)
            trial = float(f(v - step))
            if trial < fv:
                v, fv, damping = v - step, trial, max(damping / 3, 1e-12)
                break
            damping *= 4
        else:
            break
    vv = v.clone().requires_grad_(True)
    g, = torch.autograd.grad(f(vv), vv)
    return v.reshape(W0.shape), float(g.norm()), torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, v))


def together_share(v: torch.Tensor, shape) -> float:
    """Share of ||v||^2 in the subspace where every neuron moves by the same vector (w_j = w for all j)."""
    M = v.reshape(shape)
    return float(M.mean(1, keepdim=True).expand(shape).norm() ** 2 / M.norm() ** 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--N", type=int, default=4000)
    ap.add_argument("--lrs", default="0.5,2")
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--seeds", default="0")
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    marks = sorted({int(a.steps * f) for f in (0.05, 0.1, 0.2, 0.5, 1.0)})
    for seed in (int(s) for s in a.seeds.split(",")):
        for cell in CELLS:
            cfg = GroupImbalanceConfig(seed=seed, K=a.K, **{"N": a.N, **cell})
            W_star32 = teacher([cfg], CPU)
            train = gmm_train([cfg], W_star32, CPU)
            X, y = train.X[0].double(), train.y[0].double()
            W_star, W0 = W_star32[0].double(), init_params([cfg], W_star32, CPU)["W"][0].double()
            W_hat, gnorm, eig = local_minimiser(W0, X, y)
            rel = lambda W: float((W - W_star).norm() / W_star.norm())  # noqa: E731
            L0, L_hat = float(empirical_loss(W0, X, y)), float(empirical_loss(W_hat, X, y))
            print(f"seed {seed} {cell} K={a.K} N={cfg.N}: minimiser rel err {rel(W_hat):.3g} (|grad| {gnorm:.1e}), "
                  f"Hessian eig min/max {float(eig[0]):.2e}/{float(eig[-1]):.2e}, L(W0) - L(W_hat) {L0 - L_hat:.1e}")
            if a.K > 1:
                f = lambda v: empirical_loss(v.reshape(W_star.shape), X, y)  # noqa: E731
                ev, vec = torch.linalg.eigh(torch.autograd.functional.hessian(f, W_star.flatten()))
                share = lambda idx: [round(together_share(vec[:, i], W_star.shape), 3) for i in idx]  # noqa: E731
                print(f"  at W*: Hessian eig {float(ev[0]):.1e} .. {float(ev[-1]):.1e}; neurons-together share of the "
                      f"3 flattest / 3 steepest eigenvectors {share((0, 1, 2))} / {share((-3, -2, -1))}; mean "
                      f"|w_j^T x| {float((X @ W_star).abs().mean()):.2f}")
            for lr in (float(s) for s in a.lrs.split(",")):
                W, row = W0.clone().requires_grad_(True), []
                for t in range(1, a.steps + 1):
                    g, = torch.autograd.grad(empirical_loss(W, X, y), W)
                    with torch.no_grad():
                        W -= lr * g
                    if t in marks:
                        Wt = W.detach()
                        row.append(f"t={t}: rel {rel(Wt):.3f}, |W-W_hat|/|W0-W_hat| "
                                   f"{float((Wt - W_hat).norm() / (W0 - W_hat).norm()):.3f}, loss gap "
                                   f"{(float(empirical_loss(Wt, X, y)) - L_hat) / (L0 - L_hat):.1e}")
                print(f"  lr {lr}: " + "; ".join(row), flush=True)


if __name__ == "__main__":
    main()
