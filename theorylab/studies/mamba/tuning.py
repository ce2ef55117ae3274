"""The tuning protocol of fig_ssm_vs_transformer: every architecture gets the same fixed grid of (optimizer, lr)
candidates at the same budget (the config's steps and N), and each seed keeps the candidate with the lowest
error on its validation set (fresh sequences of their own stream, scored at the end of training). The test set
is read only for the kept candidate, after the choice.

The grid is fixed before any SSM result was seen: for each optimizer, its base step size and a factor 3 either
side (GD: 1, the step calibrated for a_i = +-1/m; Adam: 0.01). Ties on validation error go to the lower
validation loss, then to the earlier candidate of the grid. A diverged candidate is never chosen.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

GRID: tuple[tuple[str, float], ...] = (("gd", 0.3), ("gd", 1.0), ("gd", 3.0),
                                       ("adam", 0.003), ("adam", 0.01), ("adam", 0.03))
UNTUNED = ("gd", 1.0)  # the study's default: what the comparison used before tuning


def validation_key(row: Mapping, done: bool) -> tuple[float, float]:
    """A candidate's rank (lower is better) from its validation numbers alone; a diverged one ranks last."""
    if not done:
        return (math.inf, math.inf)
    err, loss = row["val_error"], row["val_loss"]
    return (err if math.isfinite(err) else math.inf, loss if math.isfinite(loss) else math.inf)


def select(rows: Sequence[Mapping], done: Sequence[bool]) -> int | None:
    """The index of the kept candidate among one seed's candidates (in grid order), or None when every one
    diverged. Reads only "val_error" and "val_loss" of each row."""
    keys = [validation_key(r, ok) for r, ok in zip(rows, done)]
    best = min(range(len(keys)), key=lambda i: keys[i])  # min keeps the first of equal keys: grid order
    return None if keys[best][0] == math.inf else best
