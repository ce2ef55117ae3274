"""Ensemble helpers: devices, per-model scalars as [E] tensors, random streams, tiling tasks, grid evaluation."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch

from theorylab.core.config import ConfigError, StudyConfig
from theorylab.core.rng import EnsembleRNG, key_from_hash


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device must be one of cpu, cuda, auto (got {device!r})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(device)


def shared_value(cfgs: Sequence[StudyConfig], name: str):
    """A field every model of the ensemble must share (a shape or program field)."""
    values = {repr(getattr(c, name)) for c in cfgs}
    if len(values) != 1:
        raise ValueError(f"field '{name}' differs inside one ensemble ({sorted(values)}); it is not an ensemble scalar")
    return getattr(cfgs[0], name)


def scalar_tensor(cfgs: Sequence[StudyConfig], name: str, device, dtype=torch.float32) -> torch.Tensor:
    """[E] tensor of a per-model scalar field."""
    return torch.tensor([float(getattr(c, name)) for c in cfgs], dtype=dtype, device=device)


def expand_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[E] -> [E, 1, 1, ...] broadcastable against `like` ([E, ...])."""
    return x.reshape(x.shape[0], *([1] * (like.dim() - 1)))


def rng_for(cfgs: Sequence[StudyConfig], device) -> EnsembleRNG:
    """One counter-based random stream per model, keyed by its world (the config hash less the swept fields,
    StudyConfig.world_hash; core.rng)."""
    return EnsembleRNG([key_from_hash(c.world_hash) for c in cfgs], device)


def tile(x: torch.Tensor, T: int) -> torch.Tensor:
    """[E, ...] -> [T*E, ...], task-major (model t*E + e is task t of model e): fine-tuning T tasks from one
    pre-trained ensemble trains them as one ensemble."""
    return x.repeat(T, *([1] * (x.dim() - 1)))


def untile(x: torch.Tensor, T: int) -> torch.Tensor:
    """[T*E, ...] -> [T, E, ...] (the inverse of tile's layout)."""
    return x.reshape(T, x.shape[0] // T, *x.shape[1:])


GRID_CHUNK_ELEMENTS = 1 << 23  # floats of the largest activation per chunk of a grid evaluation


def over_grid(n: int, elements_per_point: int, fn: Callable[[slice], dict[Hashable, torch.Tensor]],
              max_elements: int = GRID_CHUNK_ELEMENTS) -> dict[Hashable, torch.Tensor]:
    """Evaluates fn on consecutive slices of the n grid points (as many per call as fit in max_elements) and
    writes each result {key: [len(slice), ...]} into one [n, ...] output per key.

    Why not a list of chunk results and a cat: each small result, allocated after its chunk's large
    activations, kept glibc from reusing the freed heap; RSS grew linearly with the grid, past 20 GB on the
    task-vector study's 2,601-point plane. Outputs allocated once keep it flat."""
    chunk = max(1, max_elements // max(1, elements_per_point))
    out: dict[Hashable, torch.Tensor] = {}
    for i in range(0, n, chunk):
        part = slice(i, min(i + chunk, n))
        res = fn(part)
        if not out:
            out = {k: v.new_empty((n, *v.shape[1:])) for k, v in res.items()}
        for k, v in res.items():
            out[k][part] = v
    return out
