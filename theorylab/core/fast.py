"""When the engine uses torch.compile, and what it does when compiling fails.

Only functions whose compiled form gives the same numbers bit for bit are compiled by default (the ICL
prompt sampler: integer hashing and a few exactly rounded float products), so the choice never changes a
result: a cell gives the same numbers compiled or eager, alone or in an ensemble of any size.

Compiling costs time once per process and shape (3-10 s with inductor's on-disk cache warm, about 60 s cold on
a 2-core CPU: BENCHMARKS.md), so a run compiles only when its eager work would take longer than that:

    THEORYLAB_COMPILE=auto   (default) compile when the run is large enough to win (see `worth_compiling`)
    THEORYLAB_COMPILE=1      always compile
    THEORYLAB_COMPILE=0      never compile

Where torch.compile cannot run (no C++ compiler, an unsupported platform), the eager function is used
instead, with one warning: same numbers, slower.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

# eager work (in units the caller defines, e.g. prompt contexts drawn) above which compiling pays for itself
_MODES = ("auto", "0", "1")


def compile_mode() -> str:
    mode = os.environ.get("THEORYLAB_COMPILE", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"THEORYLAB_COMPILE must be one of auto, 0, 1 (got {mode!r})")
    return mode


def worth_compiling(eager_seconds: float, compile_seconds: float = 20.0) -> bool:
    """Whether to compile a function whose eager calls in this run are estimated to take `eager_seconds`:
    yes when they take longer than compiling would (a warm cache compiles in ~5 s, a cold one in ~50 s;
    20 s is the break-even we assume), or when THEORYLAB_COMPILE says so."""
    mode = compile_mode()
    if mode != "auto":
        return mode == "1"
    return eager_seconds > compile_seconds


class CompiledOrEager:
    """fn through torch.compile (fullgraph, static shapes: one compilation per shape, e.g. per ensemble size; the
    static kernels ran the ICL step 20% faster than dynamic-shape ones: 10.6 against 12.7 ms at E = 64, one
    core); if compiling fails, fn itself from then on, after one warning. After torch's recompile limit (8
    shapes) dynamo runs fn eagerly, with the same numbers."""

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name
        self._compiled = torch.compile(fn, dynamic=False, fullgraph=True)
        self.failed: str | None = None

    def __call__(self, *args):
        if self.failed is None:
            try:
                return self._compiled(*args)
            except Exception as e:  # noqa: BLE001 - any failure to compile: the eager function gives the same numbers
                self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                warnings.warn(f"theorylab: torch.compile of {self.name} failed ({self.failed}); using the eager "
                              "version (same numbers, slower)", RuntimeWarning, stacklevel=2)
        return self.fn(*args)
