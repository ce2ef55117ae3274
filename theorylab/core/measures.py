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


# ---- measurements several claims share: crossings along a grid, and slope fits that respect censoring ----
def first_crossing(ok: torch.Tensor, xs: list[float] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ok [T, E] (the condition at each grid point xs[t]) -> (x [E], censored [E]): the first x where it holds.
    Where it never holds within the grid, x is the grid's last value and censored is True: the true crossing
    lies beyond it, which is all the run shows."""
    xs = torch.as_tensor(xs, dtype=torch.float64)
    ok = ok.bool().cpu()
    idx = ok.to(torch.int8).argmax(0)  # first True (0 when none: masked below)
    hit = ok.any(0)
    return torch.where(hit, xs[idx], xs[-1]), ~hit


def first_stable(ok: torch.Tensor, xs: list[float] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ok [T, E] -> (x [E], censored [E]): the first x from which the condition holds at every later grid point.
    Censored (x = last grid value) when it does not hold at the last point."""
    ok = ok.bool().cpu()
    from_here = ok.flip(0).cumprod(0).flip(0).bool()  # from_here[t]: ok at t and at every point after it
    return first_crossing(from_here, xs)


def log_log_slope(x: list[float] | torch.Tensor, y: torch.Tensor, censored: torch.Tensor | None = None,
                  min_points: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """y [T, E] against x [T] (positive) -> (slope [E], points used [E]): least squares of log y on log x over the
    points that were measured. A censored point (only a bound is known) is left out, never entered as if
    measured; with fewer than min_points measured points the slope is NaN (no verdict can pass on it).
    A y that does not move gives exactly 0."""
    lx = torch.log(torch.as_tensor(x, dtype=torch.float64))[:, None].expand_as(y)
    ly = torch.log(torch.as_tensor(y, dtype=torch.float64).clamp_min(1e-300))
    use = torch.isfinite(ly)
    if censored is not None:
        use &= ~censored.bool()
    n = use.sum(0)
    w = use.to(torch.float64)
    mx = (lx * w).sum(0) / n.clamp_min(1)
    my = (ly.nan_to_num() * w).sum(0) / n.clamp_min(1)
    cov = (((lx - mx) * (ly.nan_to_num() - my)) * w).sum(0)
    var = (((lx - mx) ** 2) * w).sum(0)
    slope = torch.where(var > 0, cov / var.clamp_min(1e-300), torch.zeros_like(var))
    flat = (((ly.nan_to_num() - my).abs() * w).amax(0) < 1e-12)
    slope = torch.where(flat, torch.zeros_like(slope), slope)
    return torch.where(n >= min_points, slope, torch.full_like(slope, float("nan"))), n


def gap_closed(start: torch.Tensor, end: torch.Tensor, target: float = 1.0) -> torch.Tensor:
    """[E]: the share of the untrained value's gap to `target` that training closed ((end-start)/(target-start))."""
    start, end = per_seed_f64(start), per_seed_f64(end)
    gap = target - start
    # an untrained model already at the target leaves no gap to close: the share is undefined (NaN never passes)
    return torch.where(gap.abs() > 1e-12, (end - start) / gap.where(gap.abs() > 1e-12, torch.ones_like(gap)),
                       torch.full_like(gap, float("nan")))


def per_seed_f64(x) -> torch.Tensor:
    return torch.as_tensor(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=torch.float64).reshape(-1)
