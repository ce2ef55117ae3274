"""Output files and folders: checked before any work starts, written atomically (a temporary file beside the target,
then os.replace), never over one of the command's own inputs. A failed write (a full disk) leaves nothing behind and
its error names the file."""
from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from theorylab.core.config import ConfigError


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_file(out: Path, inputs: Iterable[Path] = (), what: str = "--out") -> None:
    """A ConfigError before any work when `out` cannot be the file written: one of the inputs (or its SQLite
    -wal/-shm companions), a folder, a path under a file, or in a folder that cannot be written."""
    out = Path(out)
    for inp in inputs:
        inp = Path(inp)
        for companion in (inp, inp.with_name(inp.name + "-wal"), inp.with_name(inp.name + "-shm")):
            if _same(out, companion):
                raise ConfigError(f"{what} {out} is the input {inp}; writing it would destroy the input "
                                  "(give another output path)")
    if out.is_dir():
        raise ConfigError(f"{what} {out} is a folder; give a file path")
    if out.exists() and not out.is_file():
        raise ConfigError(f"{what} {out} is not a regular file (a pipe, socket or device)")
    parent = next((a for a in out.absolute().parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{what} {out}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK):
        raise ConfigError(f"{what} {out}: the folder {parent} is not writable")


def check_output_folder(folder: Path, what: str = "--out") -> None:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {folder} is a file; give a folder (it is created if missing)")
    parent = next((a for a in folder.absolute().parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{what} {folder}: {parent} is a file, not a folder")
    if parent is not None and not folder.exists() and not os.access(parent, os.W_OK):
        raise ConfigError(f"{what} {folder}: the folder {parent} is not writable")


def write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) then rename onto `out`: readers see the old file or the whole new one, never a part. An OSError
    (ENOSPC, EDQUOT, EIO ...) removes the partial file and is re-raised naming `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the suffix stays last: a writer that reads the format from the name (matplotlib's savefig) still can
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            code = e.errno or errno.EIO
            raise OSError(code, f"writing {out} failed ({os.strerror(code)}); nothing was written", str(out)) from None
        raise
