"""Counter-based random numbers: uniform(seed, element index) with no generator state.

Why: a random mask must be the same whether a model is edited alone, as member e of an ensemble
([E] seeds, one batched call), or tensor chunk by tensor chunk while streaming a checkpoint. A stateful
torch.Generator gives none of these; a hash of (seed, index) gives all three.
"""
from __future__ import annotations

import zlib

import torch
from torch import Tensor

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as signed int64
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


def _shr(z: Tensor, k: int) -> Tensor:
    """Logical right shift on int64 (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _splitmix64(x: Tensor) -> Tensor:
    z = x + _GOLDEN  # int64 arithmetic wraps, which is what the hash wants
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def derive_seed(seed: int | Tensor, *salts: int | str) -> Tensor:
    """Mix salts (task index, tensor name) into a seed; works on a scalar or an [E] tensor of seeds."""
    s = torch.as_tensor(seed, dtype=torch.int64)
    for salt in salts:
        v = zlib.crc32(salt.encode()) if isinstance(salt, str) else int(salt)
        s = _splitmix64(s ^ torch.tensor(v, dtype=torch.int64))
    return s


def uniform(seed: Tensor, n: int, offset: int = 0) -> Tensor:
    """Uniform [0, 1) numbers for flat indices offset..offset+n-1.

    seed: scalar -> returns [n]; [E] -> returns [E, n] (model e uses seed[e]).
    """
    idx = torch.arange(offset, offset + n, dtype=torch.int64)
    s = seed.to(torch.int64)
    x = (s.reshape(-1, 1) if s.dim() else s) * _GOLDEN + idx
    z = _splitmix64(x)
    return _shr(z, 11).to(torch.float64) * (1.0 / (1 << 53))
