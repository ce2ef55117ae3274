"""Task vectors and merged ViTs on the coloured test sets.

dPsi_p = TaskVector(Psi0 body, fine-tuned body of task p) (theorylab.edit; model axis first). A merge
Psi0 + sum_i lambda_i dPsi_i is built for a whole coefficient grid at once, weights [G, E, ...], and
evaluated against each test set [E, n, 2, 8, 8]; the frozen head [E, D, 2] broadcasts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from theorylab.core.ensemble import over_grid
from theorylab.edit import TaskVector, output_similarity
from theorylab.studies.colored_digits.config import ColoredDigitsConfig
from theorylab.studies.colored_digits.data import TaskData, task_data
from theorylab.studies.colored_digits.model import HEADS, accuracy, logits, margin
from theorylab.studies.colored_digits.train import task_key


@dataclass
class Experiment:
    cfgs: list[ColoredDigitsConfig]
    base: dict[str, torch.Tensor]  # Psi0 body, [E, ...]
    head: torch.Tensor  # [E, D, 2], frozen
    tvs: dict[float, TaskVector]  # task p -> dPsi_p ([E, ...] tensors)
    tests: dict[float, TaskData]  # task p -> coloured test set

    def with_tvs(self, tvs: dict[float, TaskVector]) -> "Experiment":
        return Experiment(self.cfgs, self.base, self.head, tvs, self.tests)


def experiment(cfgs: Sequence[ColoredDigitsConfig], params: dict[str, torch.Tensor], device) -> Experiment:
    base = {k.removeprefix("psi0/"): v for k, v in params.items() if k.startswith("psi0/")}
    head = base["head.w"]
    base = {k: v for k, v in base.items() if k not in HEADS}
    ps = cfgs[0].task_ps
    tvs = {p: TaskVector(base, {k: params[task_key(p) + k] for k in base}) for p in ps}
    tests = {p: task_data(cfgs, "test", p, device) for p in ps}
    return Experiment(list(cfgs), base, head, tvs, tests)


def merged(ex: Experiment, ps: Sequence[float], coefs: torch.Tensor) -> dict[str, torch.Tensor]:
    """coefs [G, len(ps)] -> body weights [G, E, ...] = Psi0 + sum_i coefs[:, i] dPsi_{ps[i]}."""
    G = coefs.shape[0]
    c = coefs.to(ex.head.device)
    delta = sum(ex.tvs[p].map(lambda _, v, i=i: c[:, i].reshape(G, *([1] * v.dim())) * v) for i, p in enumerate(ps))
    return delta.apply_to({k: v.expand(G, *v.shape) for k, v in ex.base.items()})


@torch.no_grad()
def evaluate_grid(ex: Experiment, ps: Sequence[float], coefs: torch.Tensor, test_ps: Sequence[float]) -> dict[float, torch.Tensor]:
    """Accuracy [G, E] of every merge of the grid on each test set in test_ps."""
    cfg = ex.cfgs[0]
    E, n = ex.tests[test_ps[0]].y.shape

    def chunk(part: slice) -> dict[float, torch.Tensor]:
        w = merged(ex, ps, coefs[part])
        return {q: accuracy(logits(w, ex.head, ex.tests[q].X, cfg.patch, cfg.heads), ex.tests[q].y) for q in test_ps}

    return over_grid(coefs.shape[0], E * n * (8 // cfg.patch) ** 2 * max(3 * cfg.width, cfg.mlp), chunk)


@torch.no_grad()
def margins(ex: Experiment, body: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Logit margins [E, n] of a body [E, ...] on inputs X [E, n, 2, 8, 8]."""
    return margin(logits(body, ex.head, X, ex.cfgs[0].patch, ex.cfgs[0].heads))


def alpha_hat(ex: Experiment, pa: float, pb: float) -> torch.Tensor:
    """[E] alpha-hat (spec G, theorylab.edit.output_similarity): cosine of the two fine-tuned models' logit-
    margin changes from Psi0, as vectors over a 50/50 mix of the two tasks' test inputs."""
    X = torch.cat([ex.tests[pa].X, ex.tests[pb].X], dim=1)
    m0 = margins(ex, ex.base, X)
    ma, mb = (margins(ex, ex.tvs[p].apply_to(ex.base), X) for p in (pa, pb))
    return torch.tensor([output_similarity(ma[e][None], mb[e][None], m0[e][None]) for e in range(X.shape[0])])


def regress_gammas(target: TaskVector, tv1: TaskVector, tv2: TaskVector) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model, least squares dPsi_T' ~ g1 dPsi_T1 + g2 dPsi_T2 over all body entries.
    Returns gammas [E, 2] and R^2 [E]."""
    flat = lambda tv: torch.cat([v.flatten(1) for v in tv.values()], dim=1).double()  # [E, n]
    t, a, b = flat(target), flat(tv1), flat(tv2)
    A = torch.stack([a, b], dim=2)  # [E, n, 2]
    g = torch.linalg.lstsq(A, t[..., None]).solution[..., 0]  # [E, 2]
    resid = t - (A @ g[..., None])[..., 0]
    r2 = 1 - resid.pow(2).sum(1) / t.pow(2).sum(1)
    return g.float(), r2.float()
