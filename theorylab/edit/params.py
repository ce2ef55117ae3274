"""Per-tensor parameter values, in mergekit's vocabulary.

A parameter (weight, density, ...) is one of:
- a number: used for every tensor;
- a list of {"filter": substring, "value": v} rules: the first rule whose filter is a substring of the
  tensor name wins; a rule without "filter" is the default (mergekit's conditional parameters);
- a list of numbers (a "gradient"): interpolated linearly over the block index of the tensor
  (block 0 gets the first value, the last block the last); tensors outside blocks get the first value
  (mergekit interpolates over the layer position the same way);
- a torch tensor of shape [E]: one value per ensemble member (theory models, model_axis=True).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from torch import Tensor

from .state import DEFAULT_LAYER_PATTERN, layer_index

ParamValue = float | Tensor | Sequence[Any]


def resolve(value: ParamValue, name: str, field: str, n_layers: int | None = None,
            layer_pattern: str = DEFAULT_LAYER_PATTERN) -> float | Tensor | None:
    """The value of a parameter for tensor ``name``; None when no rule matches and there is no default."""
    if value is None or isinstance(value, (int, float, Tensor)):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(isinstance(v, (int, float)) for v in value) and len(value) > 0:
            return _gradient([float(v) for v in value], layer_index(name, layer_pattern), n_layers)
        for rule in value:
            if not isinstance(rule, Mapping) or "value" not in rule:
                raise ValueError(f"{field}: each rule must be a mapping with 'value' (and optional 'filter'), got {rule!r}")
            unknown = set(rule) - {"filter", "value"}
            if unknown:
                raise ValueError(f"{field}: unknown key {sorted(unknown)[0]!r} in rule {rule!r} (allowed: filter, value)")
            filt = rule.get("filter")
            if filt is None or filt in name:
                return resolve(rule["value"], name, field, n_layers, layer_pattern)
        return None
    raise ValueError(f"{field}: expected a number, a list of numbers or a list of filter rules, got {value!r}")


def _gradient(values: list[float], layer: int | None, n_layers: int | None) -> float:
    if len(values) == 1 or layer is None or not n_layers or n_layers < 2:
        return values[0]
    t = layer / (n_layers - 1)  # position of the block in [0, 1]
    return float(np.interp(t * (len(values) - 1), np.arange(len(values)), values))


def count_layers(names: Sequence[str], layer_pattern: str = DEFAULT_LAYER_PATTERN) -> int:
    ids = [i for i in (layer_index(n, layer_pattern) for n in names) if i is not None]
    return max(ids) + 1 if ids else 0
