"""From per-seed test results to one verdict word, with an interval and the seeds it would take to settle.

The rule, fixed before any claim was run and printed with every verdict:
- a seed passes when the claim's test holds on it; a seed whose model diverged counts as failing;
- `holds` (figure claims: `agrees`) when at least PASS_SHARE of the seeds pass,
  `fails` (`differs`) when at most 1 - PASS_SHARE pass, `inconclusive` in between;
- a theorem check whose control passes the same test on most seeds is `inconclusive` whatever its own
  seeds say: the check did not discriminate, so it shows nothing.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

PASS_SHARE = 0.8  # at most one seed in five may disagree with the verdict
Z95 = 1.959964

KINDS = ("theorem", "mechanism", "figure")
WORDS = {"theorem": ("holds", "fails"), "mechanism": ("holds", "fails"), "figure": ("agrees", "differs")}
POSITIVE = {"holds", "agrees"}
NEGATIVE = {"fails", "differs"}
INCONCLUSIVE = "inconclusive"
ERROR = "ERROR"


def verdict_word(kind: str, passed: Sequence[bool]) -> str:
    if not passed:
        return INCONCLUSIVE
    n, k = len(passed), sum(map(bool, passed))
    yes, no = WORDS[kind]
    if k / n >= PASS_SHARE:
        return yes
    if (n - k) / n >= PASS_SHARE:  # not share <= 1 - PASS_SHARE: 1 - 0.8 is 0.19999999999999996, so 1/5 missed it
        return no
    return INCONCLUSIVE


def seeds_to_settle(passes: int, n: int) -> int | None:
    """Seeds at which, if the observed pass rate held, its 95% Wilson interval would exclude 1/2.
    None when the rate is 1/2 itself: then no number of seeds settles it (the test holds on about half)."""
    p = passes / n
    if abs(p - 0.5) < 1e-9:
        return None
    for m in range(n, 100_000):
        centre = (p + Z95**2 / (2 * m)) / (1 + Z95**2 / m)
        half = Z95 * math.sqrt(p * (1 - p) / m + Z95**2 / (4 * m * m)) / (1 + Z95**2 / m)
        if centre - half > 0.5 or centre + half < 0.5:
            return m
    return None


def interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean over seeds with a Student-t interval (and min / max); NaN values (diverged seeds) are dropped."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return {"mean": None, "lo": None, "hi": None, "min": None, "max": None, "n": 0}
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return {"mean": mean, "lo": None, "hi": None, "min": mean, "max": mean, "n": 1}
    from scipy.stats import t

    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "min": min(xs), "max": max(xs), "n": n}


def fmt(x: float | None, digits: int = 4) -> str:
    """A number for a one-line summary: 4 significant decimals, scientific notation when very large or small."""
    if x is None:
        return "-"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 10 ** (-digits)):
        return f"{x:.2e}"
    return f"{x:.{digits}f}".rstrip("0").rstrip(".")


def describe_interval(iv: dict) -> str:
    if iv["n"] == 0:
        return "no finite value"
    if iv["lo"] is None:
        return fmt(iv["mean"])
    return f"{fmt(iv['mean'])} [95% CI {fmt(iv['lo'])}, {fmt(iv['hi'])}]"
