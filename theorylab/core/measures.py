"""Small measurements claims of several studies share."""
from __future__ import annotations

import torch


def r4(x) -> float:
    """A number rounded for a report (4 decimals)."""
    return round(float(x), 4)


def small_group_size(norms: torch.Tensor) -> torch.Tensor:
    """norms [E, m] -> [E]: how many of each model's rows lie below the largest ratio jump of its sorted norms
    (the small-norm group of a bimodal set of rows)."""
    s = norms.sort(dim=-1).values
    gaps = s[:, 1:] / s[:, :-1].clamp_min(1e-12)
    return gaps.argmax(dim=-1) + 1


def rows_below(norms: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """norms [E, m], count [E] -> mask [E, m]: True on each model's `count` smallest rows."""
    rank = norms.argsort(dim=-1).argsort(dim=-1)
    return rank < count[:, None]


def zero_count_bound(n: int) -> float:
    """Rule of three: the 95% upper bound of a rate whose n trials gave no event. An error measured as 0 on
    n test examples is only known to be below this."""
    return 3.0 / n
