"""Chunked evaluation whose numbers do not depend on the ensemble size or on the memory budget.

Test examples are drawn in blocks of a fixed size (EVAL_BLOCK), and a study keys each block's random
draws by the block index: model e's i-th block is the same data whether e is evaluated alone, inside an
ensemble of 4,096, or in a smaller slice of models that fits memory. The memory budget only decides how
many models are evaluated at once.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

EVAL_BLOCK = 500  # test examples per random-draw block (part of what a result means: changing it changes draws)
MAX_ELEMENTS = 1 << 25  # floats of one block's largest activation over the models evaluated together

# fn(models, block, count) -> {name: [len(models)] mean over the block's `count` examples}
BlockFn = Callable[[slice, int, int], dict[str, torch.Tensor]]


def blocks(n: int, block: int = EVAL_BLOCK) -> list[tuple[int, int]]:
    """(block index, examples in it) covering n examples."""
    return [(i, min(block, n - i * block)) for i in range(math.ceil(n / block))]


def mean_over_blocks(E: int, n: int, elements_per_example: int, fn: BlockFn, *, block: int = EVAL_BLOCK,
                     max_elements: int = MAX_ELEMENTS) -> dict[str, torch.Tensor]:
    """Means [E] over n test examples, evaluated block by block on slices of models that fit max_elements."""
    per_slice = max(1, max_elements // max(1, block * elements_per_example))
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, E, per_slice):
        models = slice(start, min(E, start + per_slice))
        for i, count in blocks(n, block):
            for name, value in fn(models, i, count).items():
                if name not in sums:
                    sums[name] = torch.zeros(E, dtype=torch.float64, device=value.device)
                sums[name][models] += value.double() * count
    return {k: (v / n).float() for k, v in sums.items()}
