"""The task-arithmetic experiment (shared.task_arithmetic) on the ViT: Psi0's body, the task vectors dPsi_p of every
colour task p (theorylab.edit.TaskVector), the coloured test sets, and the model as a metric (accuracy and
cross-entropy through the frozen head, which no task vector touches)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.shared.task_arithmetic import Experiment, guard_finite
from theorylab.core.losses import accuracy, cross_entropy
from theorylab.edit import TaskVector, output_similarity
from theorylab.studies.colored_digits.config import ColoredDigitsConfig
from theorylab.shared.colored_digits import task_data
from theorylab.studies.colored_digits.model import HEADS, logits, margin
from theorylab.studies.colored_digits.train import task_key


def experiment(cfgs: Sequence[ColoredDigitsConfig], params: dict[str, torch.Tensor], device) -> Experiment:
    cfg = cfgs[0]

    def metric(w: dict[str, torch.Tensor], test: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lg = logits(w, w["head.w"], test["X"], cfg.patch, cfg.heads)  # [G, E, n, 2]
        target = (test["y"] > 0).long()  # class 1 = odd
        return {"acc": accuracy(lg, target), "loss": cross_entropy(lg, target)}

    psi0 = {k.removeprefix("psi0/"): v for k, v in params.items() if k.startswith("psi0/")}
    base = {k: v for k, v in psi0.items() if k not in HEADS}
    tests = {p: task_data(cfgs, "test", p, device) for p in cfg.task_ps}
    n_tok, n = (8 // cfg.patch) ** 2, next(iter(tests.values())).y.shape[1]
    return Experiment.from_weights(base, {p: {k: params[task_key(p) + k] for k in base} for p in cfg.task_ps},
                                   {p: {"X": t.X, "y": t.y} for p, t in tests.items()}, metric,
                                   {"head.w": psi0["head.w"]}, len(cfgs) * n * n_tok * max(3 * cfg.width, cfg.mlp))


@torch.no_grad()
def alpha_hat(ex: Experiment, cfg: ColoredDigitsConfig, pa: float, pb: float) -> torch.Tensor:
    """[E] alpha-hat (spec G, theorylab.edit.output_similarity): cosine of the two fine-tuned models' logit-
    margin changes from Psi0, as vectors over a 50/50 mix of the two tasks' test inputs."""
    X = torch.cat([ex.tests[pa]["X"], ex.tests[pb]["X"]], dim=1)
    out = lambda body: margin(logits(body, ex.fixed["head.w"], X, cfg.patch, cfg.heads))  # noqa: E731  [E, n]
    m0 = out(ex.base)
    ma, mb = (out(ex.tvs[p].apply_to(ex.base)) for p in (pa, pb))
    return torch.tensor([output_similarity(ma[e][None], mb[e][None], m0[e][None]) for e in range(X.shape[0])])


def regress_gammas(target: TaskVector, tv1: TaskVector, tv2: TaskVector) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model, least squares dPsi_T' ~ g1 dPsi_T1 + g2 dPsi_T2 over all body entries.
    Returns gammas [E, 2] and R^2 [E] (NaN for a model with non-finite weights)."""
    flat = lambda tv: torch.cat([v.flatten(1) for v in tv.values()], dim=1).double()  # noqa: E731  [E, n]
    t, A = flat(target), torch.stack([flat(tv1), flat(tv2)], dim=2)  # [E, n], [E, n, 2]

    def solve(t, A):
        g = torch.linalg.lstsq(A, t[..., None]).solution[..., 0]  # [E, 2]
        resid = t - (A @ g[..., None])[..., 0]
        return g, 1 - resid.pow(2).sum(1) / t.pow(2).sum(1).clamp_min(1e-300)

    g, r2 = guard_finite(solve, t, A)
    return g.float(), r2.float()
