"""Executors of ensemble chunks: `local` (this process, CPU or CUDA) and `ray` (an existing cluster).

A backend takes an iterable of chunks (lists of configs that share a group key) and yields
(chunk, GroupResult) as chunks finish. It never touches the store: the driver writes every result,
so the store's transactions stay in one place whatever runs the training. A chunk's results do not
depend on the backend (seeds come from config hashes), only the wall time does.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

import psutil
import torch

from theorylab.core.config import ConfigError, StudyConfig
from theorylab.core.progress import QUIET, Bars
from theorylab.core.study import GroupResult, Study

Chunk = Sequence[StudyConfig]


def memory_budget(device: torch.device) -> int:
    """Bytes one ensemble chunk may use: a share of what is free now (others use the machine too)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    return int(psutil.virtual_memory().available * 0.3)


class LocalBackend:
    name = "local"
    workers = 1  # chunks train one after another; each chunk already uses the whole device

    def __init__(self, device: torch.device):
        self.device = device

    def budget(self) -> int:
        return memory_budget(self.device)

    def map(self, study: Study, chunks: Iterable[Chunk], bars: Bars = QUIET) -> Iterator[tuple[Chunk, GroupResult]]:
        for chunk in chunks:
            yield chunk, timed_train(study, chunk, self.device, bars)


def timed_train(study: Study, chunk: Chunk, device: torch.device, bars: Bars) -> GroupResult:
    """Trains one chunk and records its whole wall time (what the cost guard's time estimate is fitted on)."""
    t0 = time.perf_counter()
    res = study.train_group(chunk, device, bars)
    res.wall_seconds = time.perf_counter() - t0
    return res


def _train_chunk(study_name: str, cfgs: Chunk, device: str) -> GroupResult:
    """Runs on a Ray worker: trains one chunk and returns CPU tensors to the driver."""
    from theorylab.core.study import get_study

    dev = torch.device(device)
    res = timed_train(get_study(study_name), cfgs, dev, QUIET)
    res.params = {k: v.detach().cpu() for k, v in res.params.items()}
    return res


def _worker_budget(device: str) -> int:
    return memory_budget(torch.device(device))


class RayBackend:
    """Sends each chunk to an existing Ray cluster as one task (1 CPU, or 1 GPU for cuda), keeping
    about two tasks per worker in flight so workers never wait for the driver's store writes."""
    name = "ray"

    def __init__(self, address: str | None, device: str = "cpu"):
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs ray: pip install 'theorylab[ray]'") from None
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"--backend ray takes --device cpu, cuda or auto (got {device!r})")
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
        self.ray = ray
        total = ray.cluster_resources()
        if device == "auto":  # the cluster's devices, not the driver's, decide
            device = "cuda" if total.get("GPU", 0) >= 1 else "cpu"
        if device == "cuda" and total.get("GPU", 0) < 1:
            raise ConfigError("--device cuda with --backend ray, but the Ray cluster has no GPU")
        self.device = torch.device(device)
        self.resources = {"num_gpus": 1, "num_cpus": 1} if device == "cuda" else {"num_cpus": 1}
        self.workers = max(1, int(total.get("GPU" if device == "cuda" else "CPU", 1)))
        self.nodes = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))

    def budget(self) -> int:
        # measured on a worker (the driver may have no GPU); shared by the tasks of one node
        per_node = self.ray.get(self.ray.remote(_worker_budget).options(**self.resources).remote(str(self.device)))
        return per_node // max(1, self.workers // self.nodes)

    def map(self, study: Study, chunks: Iterable[Chunk], bars: Bars = QUIET) -> Iterator[tuple[Chunk, GroupResult]]:
        ray = self.ray
        remote = ray.remote(_train_chunk).options(**self.resources)
        todo = iter(chunks)
        in_flight: dict = {}

        def submit() -> None:
            chunk = next(todo, None)
            if chunk is not None:
                in_flight[remote.remote(study.name, list(chunk), str(self.device))] = chunk

        for _ in range(2 * self.workers):
            submit()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            chunk = in_flight.pop(ready[0])
            res = ray.get(ready[0])
            submit()
            yield chunk, res


def make_backend(name: str, device: str, address: str | None = None):
    """`device` as the user gave it (cpu, cuda, auto): for ray it is resolved on the cluster."""
    from theorylab.core.ensemble import resolve_device

    if name == "local":
        if address:
            raise ConfigError("--address is for --backend ray")
        return LocalBackend(resolve_device(device))
    if name == "ray":
        return RayBackend(address, device)
    raise ConfigError(f"--backend must be local or ray (got {name!r})")
