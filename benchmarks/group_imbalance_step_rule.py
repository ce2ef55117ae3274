"""The group_imbalance step-size rule (issue 23) checked on the training loss only: per cell, the Hessian's top
|eigenvalue| at W0 (curvature0), the step each rule takes (lr_used), how often the training loss rose over 2,000
full-batch GD steps (recorded at every step), the final loss against the initial one, grad_ratio and lr_used times
the top |eigenvalue| at the end point (GD on a quadratic of that curvature converges below 2). Cells: the covariance
sweep at the largest quick N and the sigma2_out minority along lam_grid at the default N (the cells where lr 0.5 was
above the stability limit at K = 1), seeds 0-4 by default.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/group_imbalance_step_rule.py --K 1
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from theorylab.core.study import get_study
from theorylab.studies.group_imbalance.data import gmm_train, teacher
from theorylab.studies.group_imbalance.model import top_curvature
from theorylab.studies.group_imbalance.train import training

CPU = torch.device("cpu")
RISE_TOL = 1e-6  # relative: a float32 loss "rose" when it grew by more than this fraction of itself


def cells(base, seeds):
    cov = [base.replace(seed=s, sigma1=v, N=base.n_grid[-1]) for s in seeds for v in base.sigma_grid]
    mino = [base.replace(seed=s, sigma2=base.sigma2_out, lam2=v) for s in seeds for v in base.lam_grid]
    return {"covariance (N = %d)" % base.n_grid[-1]: cov, "minority sigma2 = %g" % base.sigma2_out: mino}


def run(cfgs, steps: int) -> dict[str, torch.Tensor]:
    tr = training(cfgs, None, CPU)
    W = tr.params["W"].clone()
    tr.probes({"W": W}, 0)  # grade() measures the convergence iterations from the recorded checkpoints
    losses = []
    for step in range(steps + 1):
        W.requires_grad_(True)
        loss = tr.loss({"W": W}, step)["loss"]
        losses.append(loss.detach())
        if step == steps:
            break
        g, = torch.autograd.grad(loss.sum(), W)
        with torch.no_grad():
            W = W - tr.lr[:, None, None] * g
    L = torch.stack(losses)  # [T + 1, E]
    rises = (L[1:] - L[:-1] > RISE_TOL * L[:-1].abs()).sum(0)
    graded = tr.grade(SimpleNamespace(params={"W": W.detach()}, curve_steps=[0]))
    end_curv = top_curvature(W.detach(), *_train_xy(cfgs))
    return {"lr": tr.lr, "curv0": graded.metrics["curvature0"], "rises": rises, "L0": L[0], "LT": L[-1],
            "grad_ratio": graded.metrics["grad_ratio"], "lr_x_curvT": tr.lr * end_curv}


def _train_xy(cfgs):
    t = gmm_train(cfgs, teacher(cfgs, CPU), CPU)
    return t.X, t.y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", type=int, default=None)
    a = ap.parse_args()
    base = get_study("group_imbalance").config("quick", K=a.K)
    steps = a.steps or base.steps
    seeds = [int(s) for s in a.seeds.split(",")]
    for name, cs in cells(base, seeds).items():
        for rule in ("fixed", "curvature"):
            r = run([c.replace(lr_rule=rule) for c in cs], steps)
            print(f"K = {a.K}, {name}, lr_rule = {rule} ({steps} steps, seeds {seeds}):")
            n = len(cs) // len(seeds)
            for j in range(n):
                idx = torch.arange(j, len(cs), n)
                c = cs[j]
                label = f"sigma1 {c.sigma1:g}" if "covariance" in name else f"lam2 {c.lam2:g}"
                m = lambda k: r[k][idx].float()  # noqa: E731
                print(f"  {label:>12}: curvature0 {m('curv0').mean():.3g}, lr_used {m('lr').mean():.3g}, steps where "
                      f"the loss rose {m('rises').tolist()}, final/initial loss {(m('LT') / m('L0')).mean():.3f} "
                      f"(max {(m('LT') / m('L0')).max():.3f}), grad_ratio {m('grad_ratio').mean():.2g} (max "
                      f"{m('grad_ratio').max():.2g}), lr x end curvature {m('lr_x_curvT').mean():.2f} (max "
                      f"{m('lr_x_curvT').max():.2f})", flush=True)


if __name__ == "__main__":
    main()
