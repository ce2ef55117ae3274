"""Grid cells -> shape groups -> ensemble chunks -> trained cells in the store.

`train_cells` is the one path by which anything gets trained: a single run (E = 1), the seeds of a
claim, or a sweep of 100,000 cells. Cells already in the store are skipped, so every entry point
resumes for free.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import psutil
import torch

from theorylab.core.config import StudyConfig
from theorylab.core.progress import QUIET, Bars
from theorylab.core.store import Cell, Store
from theorylab.core.study import GroupResult, Study


def group_cells(cfgs: Sequence[StudyConfig]) -> list[list[StudyConfig]]:
    """Cells sharing tensor shapes and program (equal group keys), in first-seen order."""
    groups: dict[str, list[StudyConfig]] = defaultdict(list)
    for c in cfgs:
        groups[c.group_key()].append(c)
    return list(groups.values())


def memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    return int(psutil.virtual_memory().available * 0.3)


def chunk_size(study: Study, cfg: StudyConfig, device: torch.device, max_models: int | None) -> int:
    per_model = study.bytes_per_model(cfg) if study.bytes_per_model else 1 << 20
    fit = max(1, memory_budget(device) // max(1, per_model))
    return int(min(fit, max_models or fit))


def result_cells(study: Study, chunk: Sequence[StudyConfig], res: GroupResult, device: torch.device,
                 keep_params: bool = True) -> list[Cell]:
    cells = []
    for i, cfg in enumerate(chunk):
        params = {k: v[i] for k, v in res.params.items()} if keep_params else None
        cells.append(Cell(cfg.hash, study.name, cfg.group_key(), cfg.model_dump(mode="json"), res.metrics[i],
                          res.curves[i], res.status[i], res.seconds / len(chunk), str(device), params))
    return cells


def pending_chunks(study: Study, cfgs: Sequence[StudyConfig], store: Store, device: torch.device,
                   max_models: int | None = None) -> list[list[StudyConfig]]:
    """The ensemble chunks still to train (unique cells not yet in the store)."""
    unique = list({c.hash: c for c in cfgs}.values())
    done = store.done(c.hash for c in unique)
    chunks = []
    for group in group_cells([c for c in unique if c.hash not in done]):
        n = chunk_size(study, group[0], device, max_models)
        chunks += [group[i : i + n] for i in range(0, len(group), n)]
    return chunks


def train_cells(study: Study, cfgs: Sequence[StudyConfig], store: Store, device: torch.device,
                bars: Bars = QUIET, max_models: int | None = None, with_params: bool = True) -> dict[str, Cell]:
    """Trains whatever of `cfgs` the store lacks, chunk by chunk, each chunk written as it finishes;
    returns every requested cell (with weights when asked)."""
    for chunk in pending_chunks(study, cfgs, store, device, max_models):
        res = study.train_group(chunk, device, bars)
        store.put_cells(result_cells(study, chunk, res, device))
    return store.get_cells([c.hash for c in cfgs], with_params=with_params)


def stack_params(cells: dict[str, Cell], cfgs: Sequence[StudyConfig], device: torch.device) -> dict[str, torch.Tensor]:
    """Weights of `cfgs` (from trained cells) stacked on a leading model axis: [E, ...]."""
    first = cells[cfgs[0].hash].params
    return {k: torch.stack([cells[c.hash].params[k] for c in cfgs]).to(device) for k in first}
