"""Task vectors on plain state dicts (Ilharco et al. 2023; github.com/mlfoundations/task_vectors)."""
from __future__ import annotations

import numbers
from typing import Iterable, Iterator, Mapping

import torch
from torch import Tensor

from .state import StateDict, check_same_layout, is_editable


class TaskVector(Mapping[str, Tensor]):
    """tau = finetuned - base, per float tensor. Integer/bool buffers are skipped (as in task_vectors).

    Arithmetic: tv1 + tv2, tv1 - tv2, -tv, 2.0 * tv, tv * 0.5, sum([tv1, tv2]) (0 + tv is tv).
    Deltas are kept in ``dtype`` (float32 by default) so bf16/fp16 models do not lose the small update.
    """

    def __init__(self, base: StateDict | None = None, finetuned: StateDict | None = None, *,
                 vector: Mapping[str, Tensor] | None = None, dtype: torch.dtype | None = torch.float32):
        if vector is not None:
            if base is not None or finetuned is not None:
                raise ValueError("give either (base, finetuned) or vector=, not both")
            self.vector = dict(vector)
            return
        if base is None or finetuned is None:
            raise ValueError("TaskVector needs base and finetuned state dicts (or vector=)")
        check_same_layout(base, finetuned)
        self.vector = {}
        with torch.no_grad():
            for k, b in base.items():
                if not is_editable(b):
                    continue
                ft = finetuned[k]
                work = dtype or b.dtype
                self.vector[k] = ft.detach().to(work) - b.detach().to(work)

    # Mapping protocol: a TaskVector can be passed wherever a dict of deltas is accepted.
    def __getitem__(self, key: str) -> Tensor:
        return self.vector[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.vector)

    def __len__(self) -> int:
        return len(self.vector)

    def __repr__(self) -> str:
        return f"TaskVector({len(self.vector)} tensors, norm={self.norm():.4g})"

    def _combine(self, other: TaskVector, sign: float) -> TaskVector:
        if not isinstance(other, TaskVector):
            return NotImplemented
        check_same_layout(self.vector, other.vector, "left task vector", "right task vector")
        return TaskVector(vector={k: v + sign * other.vector[k] for k, v in self.vector.items()})

    def __add__(self, other):
        if isinstance(other, numbers.Number) and other == 0:
            return self
        return self._combine(other, 1.0)

    def __radd__(self, other):
        return self.__add__(other)  # sum() starts from 0

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __neg__(self) -> TaskVector:
        return TaskVector(vector={k: -v for k, v in self.vector.items()})

    def __mul__(self, coef):
        if not isinstance(coef, (numbers.Number, Tensor)):
            return NotImplemented
        return TaskVector(vector={k: v * coef for k, v in self.vector.items()})

    __rmul__ = __mul__

    def __truediv__(self, coef):
        return self * (1.0 / coef)

    def map(self, fn) -> TaskVector:
        """New task vector with fn(name, tensor) applied to every tensor (low-rank, pruning, masks)."""
        return TaskVector(vector={k: fn(k, v) for k, v in self.vector.items()})

    def norm(self) -> float:
        return float(sum(float(v.double().pow(2).sum()) for v in self.vector.values()) ** 0.5)

    def dot(self, other: Mapping[str, Tensor], keys: Iterable[str] | None = None) -> float:
        return float(sum(float((self.vector[k].double() * other[k].double()).sum()) for k in (keys or self.vector)))

    def apply_to(self, base: StateDict, coef: float = 1.0) -> dict[str, Tensor]:
        """base + coef * tau, in the base's dtypes. Skipped buffers are copied from base.
        coef == 0 returns the base tensors unchanged (bit for bit, signed zeros included)."""
        missing = [k for k in self.vector if k not in base]
        if missing:
            raise ValueError(f"tensor {missing[0]!r} of the task vector is missing from base")
        out = {}
        with torch.no_grad():
            for k, b in base.items():
                if k not in self.vector or coef == 0:
                    out[k] = b.clone()
                    continue
                d = self.vector[k]
                if tuple(d.shape) != tuple(b.shape):
                    raise ValueError(f"tensor {k!r} has shape {tuple(b.shape)} in base but {tuple(d.shape)} in the task vector")
                work = torch.promote_types(b.dtype, d.dtype)
                out[k] = (b.to(work) + coef * d.to(work)).to(b.dtype)
        return out
