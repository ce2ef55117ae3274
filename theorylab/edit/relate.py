"""Task relations and theory-guided coefficients (Li et al., ICLR 2025, Thms 4-6 as summarised in
../shared/papers/taskvec_lwptv_ap_diffusion.md, section 1.5). Edited model: base + tau_A + lam * tau_B.

- aligned (alpha > 0): add; the smallest working lam is about 1 - alpha (+ a small beta); negating B
  also harms A.
- irrelevant (alpha ~ 0): add with lam >= ~1; negation forgets B while keeping A, the only price of a
  large |lam| is an |lam| * beta loss on A.
- contradictory (alpha < 0): no lam makes both tasks good under addition; negation unlearns B while
  keeping A for -Theta(1 / alpha^2) <= lam <= 0 (the range shrinks as |alpha| grows).
The theorems are about a one-layer model; on real checkpoints this is guidance for where to search.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from .state import DEFAULT_LAYER_PATTERN, is_editable, layer_index


@dataclass
class CosineAccumulator:
    """Streams <a, b>, |a|^2, |b|^2 per group so checkpoints never need to be held whole."""

    dot: dict[str, float] = field(default_factory=dict)
    aa: dict[str, float] = field(default_factory=dict)
    bb: dict[str, float] = field(default_factory=dict)

    def add(self, group: str, a: Tensor, b: Tensor) -> None:
        a, b = a.double().reshape(-1), b.double().reshape(-1)
        for store, v in ((self.dot, a @ b), (self.aa, a @ a), (self.bb, b @ b)):
            store[group] = store.get(group, 0.0) + float(v)

    def cosines(self, names: tuple[str, str] = ("the first task vector", "the second task vector")) -> dict[str, float]:
        """Raises ValueError when a cosine would be meaningless: a task vector that is zero everywhere
        (the fine-tune equals the base) or sums that are not finite (NaN/inf weights)."""
        for name, sq in zip(names, (self.aa, self.bb)):
            total = sum(sq.values())
            if not math.isfinite(total):
                raise ValueError(f"{name} has NaN or infinite entries: no cosine can be computed")
            if total == 0.0:
                raise ValueError(f"{name} is zero (the fine-tuned model equals the base): there is no task to relate")
        if not all(math.isfinite(v) for v in self.dot.values()):
            raise ValueError("the task vectors' inner product overflows: no cosine can be computed")
        order = sorted(self.dot, key=group_order)
        out = {g: self.dot[g] / max((self.aa[g] * self.bb[g]) ** 0.5, 1e-300) for g in order}
        tot = (sum(self.aa.values()) * sum(self.bb.values())) ** 0.5
        out["overall"] = sum(self.dot.values()) / max(tot, 1e-300)
        return out


def group_name(name: str, layer_pattern: str = DEFAULT_LAYER_PATTERN) -> str:
    i = layer_index(name, layer_pattern)
    return f"layer {i}" if i is not None else "other"


def group_order(g: str) -> tuple[int, int]:
    """Sort key: "layer 0", "layer 1", ..., then "other"."""
    return (0, int(g.split()[1])) if g.startswith("layer ") else (1, 0)


def task_vector_cosines(tv_a: Mapping[str, Tensor], tv_b: Mapping[str, Tensor],
                        layer_pattern: str = DEFAULT_LAYER_PATTERN) -> dict[str, float]:
    """Cosine of two task vectors per block ("layer i", "other" for tensors outside blocks) and overall."""
    acc = CosineAccumulator()
    for k, a in tv_a.items():
        if k not in tv_b:
            raise ValueError(f"tensor {k!r} is in the first task vector but not the second")
        if is_editable(a):
            acc.add(group_name(k, layer_pattern), a, tv_b[k])
    return acc.cosines()


def output_similarity(out_a: Tensor, out_b: Tensor, out_base: Tensor | None = None) -> float:
    """alpha-hat = E_x cos(f_A(x), f_B(x)) over probe inputs (rows: inputs, last dims flattened).

    With out_base, the cosine is of the output *changes* f_A - f_0 and f_B - f_0: two models fine-tuned
    from one base share most of their output, so the raw cosine sits near 1 whatever the tasks are.
    """
    a, b = out_a.double().reshape(out_a.shape[0], -1), out_b.double().reshape(out_b.shape[0], -1)
    if out_base is not None:
        base = out_base.double().reshape(out_base.shape[0], -1)
        a, b = a - base, b - base
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).mean())


@dataclass(frozen=True)
class Recommendation:
    relation: str  # "aligned" | "irrelevant" | "contradictory"
    alpha: float
    add_lambda: tuple[float, float] | None  # lam range for base + tau_A + lam * tau_B; None: not advised
    negate_lambda: tuple[float, float] | None  # lam range (<= 0) to unlearn B keeping A; None: not advised
    advice: str


def recommend(alpha: float, tolerance: float = 0.1, beta: float = 0.05) -> Recommendation:
    """Guidance from the estimated correlation alpha in [-1, 1] (cosine of task vectors or alpha-hat).

    tolerance: |alpha| below it counts as irrelevant. beta: the theorems' small constant (Theta(1/d));
    it widens the addition threshold 1 - alpha + beta and limits how far negation may go.
    """
    if not -1.0 - 1e-9 <= alpha <= 1.0 + 1e-9:
        raise ValueError(f"alpha must be in [-1, 1], got {alpha}")
    if alpha > tolerance:
        lo = max(0.0, 1.0 - alpha)
        return Recommendation("aligned", alpha, (lo, lo + 0.5 + beta), None,
                              f"aligned (alpha={alpha:.2f}): add B with lam >= 1 - alpha + beta ~ {lo + beta:.2f}; "
                              "searching up to about 0.5 above that is enough. Negating B would also unlearn A.")
    if alpha >= -tolerance:
        return Recommendation("irrelevant", alpha, (1.0, 1.5), (-1.0, -0.5),
                              f"irrelevant (alpha={alpha:.2f}): add B with lam around 1 or a bit larger; "
                              "negation (lam in [-1, -0.5]) forgets B while keeping A, at a cost |lam|*beta on A.")
    bound = min(1.0 / alpha**2, 3.0)
    return Recommendation("contradictory", alpha, None, (-bound, 0.0),
                          f"contradictory (alpha={alpha:.2f}): no lam makes both tasks good when adding; negation "
                          f"unlearns B while keeping A for -Theta(1/alpha^2) <= lam <= 0, i.e. search [{-bound:.2f}, 0].")


@dataclass(frozen=True)
class LambdaSearch:
    best_lambda: float
    best_score: float
    scores: dict[float, float]


def search_lambda(validate: Callable[[float], float], lambdas: Sequence[float]) -> LambdaSearch:
    """Evaluate validate(lam) (higher is better) on each lam; see merge_and_search for state dicts."""
    if not lambdas:
        raise ValueError("lambdas must not be empty")
    scores = {float(l): float(validate(float(l))) for l in lambdas}
    best = max(scores, key=scores.get)
    return LambdaSearch(best, scores[best], scores)


def search_lambda_for_pair(base, tv_a, tv_b, validate: Callable[[dict[str, Tensor]], float],
                           lambdas: Sequence[float] | None = None, alpha: float | None = None,
                           mode: str = "add") -> LambdaSearch:
    """Search lam for base + tau_A + lam * tau_B with a user validation function on the edited state dict.
    Without lambdas, the grid spans the recommended range for alpha (mode "add" or "negate")."""
    from .task_vector import TaskVector  # local: keep relate importable without the class

    if lambdas is None:
        if alpha is None:
            alpha = task_vector_cosines(tv_a, tv_b)["overall"]
        rec = recommend(alpha)
        rng = rec.add_lambda if mode == "add" else rec.negate_lambda
        if rng is None:
            raise ValueError(f"the theory advises against mode={mode!r} for a {rec.relation} pair; pass lambdas= to force")
        lambdas = torch.linspace(rng[0], rng[1], 6).tolist()
    a = TaskVector(vector=dict(tv_a))
    b = TaskVector(vector=dict(tv_b))
    return search_lambda(lambda lam: validate((a + lam * b).apply_to(base)), lambdas)
