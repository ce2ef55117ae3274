"""`theorylab bench STUDY`: model-steps per second of a study's training, ensemble vs one model at a time.

Both paths run the same code; only the number of models per call differs: E at once, or 1 at a time in a
Python loop (the way paper code trains). What is timed is the bare training step: a study on the protocol
has its Training's loss and optimizer run through core's trainer (no probes, no grading; earlier phases
that training() runs, such as a pre-training, are set-up and not timed); a study may time its own step
(Study.bench); otherwise its whole train_group is timed at `steps` and at 1 step and the difference is the
training time of steps - 1 steps (evaluation and set-up cancel out).
The two paths are timed alternately and the best of `repeats` is kept, so a burst of load from other
processes on a shared machine penalises neither side more than the other.
"""
from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from theorylab.core.config import StudyConfig
from theorylab.core.progress import QUIET
from theorylab.core.report import machine_description
from theorylab.core.study import Study


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_steps(study: Study, cfg: StudyConfig) -> int:
    return int(study.model_steps(cfg)) if study.model_steps else int(cfg.steps)


def protocol_train_seconds(study: Study, cfgs: Sequence[StudyConfig], device: torch.device, steps: int,
                           compile: bool = False) -> float:
    """Wall seconds of `steps` training steps of a protocol study's Training (its loss and optimizer through
    core's trainer; no probes, no grading). compile: torch.compile the loss (forward, and backward through
    AOTAutograd)."""
    import dataclasses

    from theorylab.core.ensemble import rng_for

    tr = study.train_group.training(cfgs, rng_for(cfgs, device), device)  # type: ignore[attr-defined]
    if compile:
        # the loss through autograd, compiled (a gradient by hand, Training.grad, is not what is compiled)
        tr = dataclasses.replace(tr, loss=torch.compile(tr.loss, dynamic=False), grad=None)
    sync(device)
    t0 = time.perf_counter()
    tr.train(steps, probes=False, curve_points=1)
    sync(device)
    return time.perf_counter() - t0


def step_footprint(study: Study, cfg: StudyConfig, sizes: tuple[int, int] = (32, 64), steps: int = 2):
    """Memory of the bare training step `theorylab bench` times (set-up and `steps` steps of a protocol study's
    Training, no grading), measured at two ensemble sizes and extrapolated linearly (core.memory.Footprint). A step
    that runs in cache-sized slices of models (core.chunked) holds one slice's activations whatever E is, which
    the dry-run footprint of a whole train_group at 2 and 4 models counts per model; this counts them once."""
    import gc

    from theorylab.core.memory import FLOOR, Footprint, LiveBytes

    def peak(models: int) -> int:
        cfgs = [cfg.replace(seed=cfg.seed + i) for i in range(models)]
        meter = LiveBytes()
        gc.collect()
        gc.disable()  # as core.memory.peak_bytes: cyclic garbage stays counted, the same on every run
        try:
            with meter:
                protocol_train_seconds(study, cfgs, torch.device("cpu"), steps)
        finally:
            gc.enable()
        return meter.peak

    small, large = sizes
    p_small, p_large = peak(small), peak(large)
    per = max(FLOOR, (p_large - p_small) // (large - small))
    return Footprint(per, max(0, p_small - small * per))


def on_protocol(study: Study) -> bool:
    return hasattr(study.train_group, "training")


def train_seconds(study: Study, cfgs: Sequence[StudyConfig], device: torch.device, steps: int,
                  compile: bool = False) -> tuple[float, int]:
    """(seconds, model-steps) of `steps` training steps of `cfgs` as one ensemble."""
    if study.bench is not None:
        return study.bench(cfgs, device, steps, compile), len(cfgs) * steps
    if on_protocol(study):
        return protocol_train_seconds(study, cfgs, device, steps, compile), len(cfgs) * steps
    if steps < 2:
        raise ValueError("--steps must be >= 2 for a study timed through its train_group")

    def timed(n: int) -> tuple[float, int]:
        group = [c.replace(steps=n) for c in cfgs]
        sync(device)
        t0 = time.perf_counter()
        study.train_group(group, device, QUIET)
        sync(device)
        return time.perf_counter() - t0, sum(_model_steps(study, c) for c in group)

    t_long, n_long = timed(steps)
    t_short, n_short = timed(1)
    if t_long - t_short < UNRESOLVED * t_long:  # the training is lost in the noise of set-up and evaluation
        return float("nan"), n_long - n_short
    return t_long - t_short, n_long - n_short


UNRESOLVED = 0.1  # a difference under 10% of the long run's time is not read as a training time


def _best_rate(runs: list[tuple[float, int]]) -> float:
    """The best model-steps/s over repeats; NaN when no repeat resolved a training time."""
    rates = [n / t for t, n in runs if t == t]
    return max(rates) if rates else float("nan")


PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"  # in the source tree (editable installs)


class PeerUnavailable(Exception):
    """The study has no peer here, or the peer's library (the bench extra) is not installed."""


def load_peer(study: str) -> ModuleType:
    """benchmarks/peers/{study}.py: a module with NAME (what the peer is, e.g. "jax vmap+jit"), build(cfgs, steps)
    -> (run, args): the peer's whole training of the models `cfgs` for `steps` steps is run(*args), and wait(x),
    which returns once the result x of an asynchronous run is computed (jax.block_until_ready)."""
    path = PEERS / f"{study}.py"
    if not path.is_file():
        raise PeerUnavailable(f"no peer for {study!r} ({path} not found; peers live in the source tree)")
    if torch.get_num_threads() == 1:  # hold XLA to the one thread torch gets (read when jax is first imported)
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    spec = importlib.util.spec_from_file_location(f"theorylab_peer_{study}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except ImportError as e:
        raise PeerUnavailable(f"the {study} peer needs {e.name} (pip install -e '.[bench]')") from e
    return module


def peer_seconds(peer: ModuleType, cfgs: Sequence[StudyConfig], steps: int) -> float:
    """Wall seconds of the peer's training of `cfgs` for `steps` steps. It is built and run once per ensemble size,
    step count and config (seeds aside) before a run is timed: that first run compiles."""
    built = peer.__dict__.setdefault("_theorylab_built", {})
    key = (len(cfgs), steps, cfgs[0].model_dump_json(exclude={"seed"}))
    if key not in built:
        run, args = built[key] = peer.build(cfgs, steps)
        peer.wait(run(*args))
    run, args = built[key]
    t0 = time.perf_counter()
    peer.wait(run(*args))
    return time.perf_counter() - t0


def run_bench(study: Study, device: torch.device, models: int = 64, steps: int = 200, naive_models: int | None = None,
              repeats: int = 3, compile: bool = False, peer: bool = False) -> dict:
    """Model-steps/s of both paths (best of `repeats` alternating runs) and their ratio; with peer, also the
    study's peer (benchmarks/peers), timed in the same alternation."""
    base = study.config("quick", **study.bench_config)
    cfgs = [base.replace(seed=i) for i in range(models)]
    k = min(models, naive_models or 8)
    peer_mod = load_peer(study.name) if peer else None
    t0 = time.perf_counter()
    train_seconds(study, cfgs, device, 2, compile)  # warm-up: allocator, kernels, compilation
    warmup = time.perf_counter() - t0
    train_seconds(study, cfgs[:1], device, 2)
    peer_warmup = 0.0
    if peer_mod is not None:
        t0 = time.perf_counter()
        peer_seconds(peer_mod, cfgs, steps)  # compiles for this shape and step count
        peer_warmup = time.perf_counter() - t0
    ens, naive, peers = [], [], []
    for _ in range(repeats):
        ens.append(train_seconds(study, cfgs, device, steps, compile))
        alone = [train_seconds(study, [c], device, steps) for c in cfgs[:k]]
        naive.append((sum(t for t, _ in alone), sum(n for _, n in alone)))
        if peer_mod is not None:
            peers.append((peer_seconds(peer_mod, cfgs, steps), models * steps))
    ens_rate, naive_rate = _best_rate(ens), _best_rate(naive)
    extra = {}
    if peer_mod is not None:
        peer_rate = _best_rate(peers)
        extra = {"peer": peer_mod.NAME, "peer_model_steps_per_s": peer_rate, "ratio_to_peer": ens_rate / peer_rate,
                 "peer_warmup_seconds": peer_warmup}
    return {
        "study": study.name,
        "ensemble_model_steps_per_s": ens_rate,
        "naive_model_steps_per_s": naive_rate,
        "ratio": ens_rate / naive_rate,
        **extra,
        "device": f"{device} ({machine_description(str(device))})",
        "models": models,
        "steps": steps,
        "timed": "training step only" if study.bench is not None or on_protocol(study) else "train_group at steps minus at 1 step",
        "config": study.bench_config,
        "naive_models_timed": k,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "compile": compile,
        "warmup_seconds": warmup,  # the first 2 steps, compilation included (not in the rates)
        "torch": torch.__version__,
    }
