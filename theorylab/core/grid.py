"""Grid expansion: `--grid key=v1,v2,...` and `--grid key=lo..hi` -> validated study configs.

Every cell is validated before anything trains, so a typo in cell 90,000 fails in a second, not
after an hour. Errors name the offending `--grid` item (syntax) or the grid cell and field (range).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from theorylab.core.config import MAX_VALUE_CHARS, ConfigError, StudyConfig, ensure_fields, parse_value
from theorylab.core.study import Study

INTEGER = re.compile(r"[+-]?[0-9]+")


def _split_top(raw: str) -> list[str]:
    """'1,[2,3],4' -> ['1', '[2,3]', '4']: commas inside brackets belong to a list value."""
    parts, depth, cur = [], 0, ""
    for ch in raw:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def parse_grid_item(item: str) -> tuple[str, list[Any]]:
    """'lr=0.1,1,5' -> ('lr', [0.1, 1, 5]); 'seed=0..3' -> ('seed', [0, 1, 2, 3]) (inclusive)."""
    key, sep, raw = item.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise ConfigError(f"--grid {item!r}: expected key=v1,v2,... or key=lo..hi (e.g. lr=0.1,1 or seed=0..63)")
    if len(raw) > 10 * MAX_VALUE_CHARS:
        raise ConfigError(f"--grid {key}: a value list of {len(raw):,} characters is too long (use lo..hi for ranges)")
    if ".." in raw and "," not in raw:
        lo, _, hi = (x.strip() for x in raw.partition(".."))
        if not (INTEGER.fullmatch(lo) and INTEGER.fullmatch(hi)):  # int() would also read non-ASCII digits
            raise ConfigError(f"--grid {item!r}: a range lo..hi takes two integers (e.g. seed=0..63)")
        lo_i, hi_i = int(lo), int(hi)
        if hi_i < lo_i:
            raise ConfigError(f"--grid {item!r}: empty range ({lo_i} > {hi_i}); lo..hi includes both ends")
        return key, range(lo_i, hi_i + 1)  # a range object: seed=0..10**9 costs nothing until consumed
    parts = [p.strip() for p in _split_top(raw)]
    if any(not p for p in parts):
        raise ConfigError(f"--grid {item!r}: empty value in the list (check for a stray comma)")
    values = [parse_value(p, f"--grid {key}") for p in parts]
    seen = set()
    for v in values:  # a repeated value would be costed (and listed) as a separate cell
        marker = json.dumps(v, sort_keys=True, default=str)
        if marker in seen:
            raise ConfigError(f"--grid {key}: the value {v!r} is given twice")
        seen.add(marker)
    return key, values


def parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        key, values = parse_grid_item(item)
        if key in grid:
            raise ConfigError(f"--grid {item!r}: '{key}' is already given by another --grid; list all its values in one")
        grid[key] = values
    return grid


def grid_size(grid: dict[str, list[Any]], seeds: int = 1) -> int:
    return math.prod(len(v) for v in grid.values()) * seeds


def _check_grid(study: Study, overrides: dict[str, Any], grid: dict[str, list[Any]], seeds: int) -> None:
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    ensure_fields(study.config_cls, list(grid), "--grid")
    both = sorted(set(grid) & set(overrides))
    if both:
        raise ConfigError(f"{', '.join(both)} given both by --set and --grid; use one")
    if seeds > 1 and "seed" in grid:
        raise ConfigError("--seeds N with --grid seed=... would repeat seeds; use one of them")


def _product(axes: list) -> Iterator[tuple]:
    """itertools.product without materialising its inputs (a range axis stays a range); last axis fastest."""
    total = math.prod(len(a) for a in axes)
    for i in range(total):
        combo = []
        for a in reversed(axes):
            i, j = divmod(i, len(a))
            combo.append(a[j])
        yield tuple(reversed(combo))


def iter_grid(study: Study, size: str, overrides: dict[str, Any], grid: dict[str, list[Any]],
              seeds: int = 1) -> Iterator[StudyConfig]:
    """Every cell of the grid (the product of the value lists; seed offsets 0..seeds-1 innermost), validated
    as it is made: a billion-cell grid costs nothing until it is consumed. Raises ConfigError naming the
    invalid cell and field."""
    _check_grid(study, overrides, grid, seeds)
    base = study.config(size, **overrides)
    keys = list(grid)
    for combo in _product(list(grid.values())):
        assign = dict(zip(keys, combo))
        for i in range(seeds):
            values = {**assign, "seed": assign.get("seed", base.seed) + i} if seeds > 1 else assign
            try:
                yield base.replace(**values) if values else base
            except ConfigError as e:
                cell = ", ".join(f"{k}={v!r}" for k, v in values.items())
                raise ConfigError(f"grid cell {cell}: {e}") from None


def expand_grid(study: Study, size: str, overrides: dict[str, Any], grid: dict[str, list[Any]],
                seeds: int = 1) -> list[StudyConfig]:
    """Every cell of the grid, all validated before anything trains."""
    return list(iter_grid(study, size, overrides, grid, seeds))


def grid_samples(study: Study, size: str, overrides: dict[str, Any], grid: dict[str, list[Any]],
                 seeds: int = 1) -> list[StudyConfig]:
    """The base cell and every grid value varied alone (a grid too large to expand up front is checked
    value by value and costed from these)."""
    _check_grid(study, overrides, grid, seeds)
    first = {k: v[0] for k, v in grid.items()}
    samples = []
    for key, values in grid.items():
        # a range lo..hi is checked at its two ends (field bounds are intervals); a list value by value
        for v in (values[0], values[-1]) if isinstance(values, range) else values:
            samples.append({**first, key: v})
    cfgs = []
    for assign in samples or [{}]:
        # the first cell only: list() would make every seed offset of it (10**9 with --seeds 10**9)
        cfgs.append(next(iter_grid(study, size, overrides, {k: [v] for k, v in assign.items()}, seeds)))
    return cfgs
