"""The notebook API: build a config, train, probe, check claims, get DataFrames.

    import theorylab as tl
    cfg = tl.config("icl", alpha=0.6)                 # typed, validated, frozen
    run = tl.train("icl", [cfg.replace(seed=s) for s in range(8)])
    run.params["W_O"].shape                           # [8, m, d]
    tl.check("icl", seeds=5)                          # verdict DataFrame
    tl.results(study="icl")                           # every stored cell as a DataFrame
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from theorylab.core.check_cost import SAY_ABOVE_SECONDS, claim_run_cost
from theorylab.core.claims import ClaimContext, run_claims, select_claims
from theorylab.core.config import StudyConfig
from theorylab.core.ensemble import resolve_device
from theorylab.core.progress import QUIET, Bars
from theorylab.core.store import DEFAULT_STORE, Store
from theorylab.core.study import get_study, study_names
from theorylab.core.sweep import stack_params, train_cells

@dataclass
class Trained:
    configs: list[StudyConfig]
    params: dict[str, torch.Tensor]  # [E, ...]
    metrics: pd.DataFrame  # one row per model: config_hash, the config's fields, then the final metrics
    curves: dict[str, pd.DataFrame]  # curve name -> one column per seed, indexed by step


def config(study: str, size: str = "quick", **overrides: Any) -> StudyConfig:
    return get_study(study).config(size, **overrides)


def _store(store: str | Path | Store | None, create: bool = True) -> Store:
    if isinstance(store, Store):
        return store
    return Store(store or DEFAULT_STORE, create=create)


def _existing_store(store: str | Path | Store | None) -> Store | None:
    if isinstance(store, Store):
        return store
    path = Path(store or DEFAULT_STORE)
    return Store(path, create=False) if path.exists() else None


def train(study: str, cfgs: StudyConfig | Sequence[StudyConfig], store: str | Path | Store | None = None,
          device: str = "auto", progress: bool = True) -> Trained:
    """Trains the configs as ensembles (skipping any already in the store) and returns their weights.
    progress: rich bars on stderr while training, as the CLI shows (a quick run takes about a minute on CPU);
    progress=False trains silently (scripts, tests)."""
    st = get_study(study)
    cfgs = [cfgs] if isinstance(cfgs, StudyConfig) else list(cfgs)
    dev = resolve_device(device)
    with Bars(progress) if progress else QUIET as bars:
        cells = train_cells(st, cfgs, _store(store), dev, bars)
    first = cells[cfgs[0].hash].curves
    curves = {name: pd.DataFrame({c.hash[:8]: cells[c.hash].curves[name] for c in cfgs}, index=first["step"])
              for name in first if name != "step"}
    # a row says which config it is without a lookup; a metric never hides a field of the same name
    metrics = pd.DataFrame([{"config_hash": c.hash, **c.model_dump(),
                             **{(f"metric_{k}" if k in type(c).model_fields else k): v
                                for k, v in cells[c.hash].metrics.items()}} for c in cfgs])
    return Trained(cfgs, stack_params(cells, cfgs, dev), metrics, curves)


def check(study: str, size: str = "quick", seeds: int | None = None, device: str = "auto",
          store: str | Path | Store | None = None, claims: list[str] | None = None, progress: bool = True,
          yes: bool = False, **overrides: Any) -> pd.DataFrame:
    """One row per claim: verdict, kind, seeds passed, the key number's interval, the summary and numbers.
    progress: rich bars on stderr while claims train their models; progress=False is silent. A run the reference
    machine took over 6 hours for raises CostRefused (a ConfigError) before anything trains, unless yes=True
    (core.check_cost; `check("diffusion", size="full")` is about 36 h on 2 CPU cores)."""
    st = get_study(study)
    st.config(size, **overrides)  # fail early on bad input
    select_claims(st, claims)
    n = seeds or st.default_seeds.get(size, 5)
    dev = resolve_device(device)
    cost = claim_run_cost(st, size, seeds, claims, overrides, str(dev), _existing_store(store))
    if cost is not None:
        cost.guard(yes)  # before the store is created
        if progress and cost.seconds >= SAY_ABOVE_SECONDS:
            print(cost.describe(), file=sys.stderr)
    with Bars(progress) if progress else QUIET as bars:
        ctx = ClaimContext(st, size, n, dev, _store(store), overrides, bars)
        rows = [r.row(st.name) for r in run_claims(ctx, claims, seeds_given=seeds is not None)]
    return pd.DataFrame(rows)


def results(store: str | Path | Store | None = None, study: str | None = None) -> pd.DataFrame:
    return _store(store, create=False).cells_df(study)


__all__ = ["Trained", "check", "config", "get_study", "results", "study_names", "train"]
