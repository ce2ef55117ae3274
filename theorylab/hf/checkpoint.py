"""Hugging Face model folders on local disk: streaming reads, atomic sharded writes.

Reads ``model.safetensors``, sharded ``model.safetensors.index.json`` + shards, and ``pytorch_model.bin``
(also its sharded index). Writes sharded safetensors + index and the source folder's config/tokenizer
files into a temporary folder beside the target and renames it into place, so a failure leaves nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from .safetensors_io import CheckpointError, SafetensorsFile, SafetensorsWriter, TensorInfo

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class CheckpointReader:
    """Tensor-by-tensor access to a local HF model folder (or a single weights file).

    ``info(name)`` gives shape/dtype without reading data; ``read_rows(name, a, b)`` reads a row block.
    For safetensors nothing stays resident between reads. ``pytorch_model.bin`` is opened with
    torch.load(mmap=True, weights_only=True): tensors are paged in on access (the legacy format cannot
    be read without mmap, so its touched pages count towards RSS until the reader is closed).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"model path {self.path} does not exist")
        self._files: dict[str, SafetensorsFile] = {}
        self._bins: dict[str, dict[str, Tensor]] = {}
        self._where: dict[str, str] = {}  # tensor name -> file path
        self._index_map: dict[str, str] = {}  # an index's weight_map, files resolved
        self._index: Path | None = None
        try:
            self._open_all()
        except BaseException:
            self.close()
            raise

    def _open_all(self) -> None:
        p = self.path
        if p.is_file():
            files = [p]
        elif (p / "model.safetensors.index.json").exists():
            files = self._indexed(p / "model.safetensors.index.json")
        elif (p / "model.safetensors").exists():
            files = [p / "model.safetensors"]
        elif (p / "pytorch_model.bin.index.json").exists():
            files = self._indexed(p / "pytorch_model.bin.index.json")
        elif (p / "pytorch_model.bin").exists():
            files = [p / "pytorch_model.bin"]
        else:
            raise FileNotFoundError(f"{p}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
        for f in files:
            key = str(f)
            if not f.is_file():
                raise CheckpointError(f"{f}: weight file listed by the index does not exist")
            if f.suffix == ".safetensors":
                st = SafetensorsFile(f)
                self._files[key] = st
                names = list(st.infos)
            else:
                sd = _load_bin(f)
                self._bins[key] = sd
                names = list(sd)
            for n in names:
                if n in self._where:
                    raise CheckpointError(f"tensor {n!r} appears in both {self._where[n]} and {key}")
                self._where[n] = key
        for n, key in self._index_map.items():
            if self._where.get(n) != key:
                raise CheckpointError(f"{self._index}: weight_map puts tensor {n!r} in {key}, which does not hold it")

    def _indexed(self, index: Path) -> list[Path]:
        """The files an index's weight_map names, each confined to the index's folder."""
        self._index = index
        try:
            data = json.loads(index.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise CheckpointError(f"{index}: not valid UTF-8 JSON ({type(err).__name__})") from None
        if not isinstance(data, dict) or not isinstance(data.get("weight_map"), dict):
            raise CheckpointError(f"{index}: expected a JSON object with a \"weight_map\" object "
                                  "(tensor name -> file name)")
        weight_map = data["weight_map"]
        if not weight_map:
            raise CheckpointError(f"{index}: weight_map is empty")
        # Confined lexically, not by resolving links: a hub cache snapshot's files are symlinks into ../blobs.
        folder = index.parent
        files = []
        for name, f in weight_map.items():
            if not isinstance(f, str) or not f or "\0" in f:
                raise CheckpointError(f"{index}: weight_map[{name!r}] must be a file name, got {f!r}")
            norm = os.path.normpath(f)
            if os.path.isabs(f) or norm == os.curdir or norm.split(os.sep)[0] == os.pardir:
                raise CheckpointError(f"{index}: weight_map[{name!r}] = {f!r} points outside the model folder {folder}")
            files.append(folder / norm)
        self._index_map = {name: str(f) for name, f in zip(weight_map, files)}
        return list(dict.fromkeys(files))

    @property
    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def info(self, name: str) -> TensorInfo:
        f = self._where[name]
        if f in self._files:
            return self._files[f].infos[name]
        t = self._bins[f][name]
        return TensorInfo(name, tuple(t.shape), t.dtype)

    def read_rows(self, name: str, start: int, stop: int) -> Tensor:
        f = self._where[name]
        if f in self._files:
            return self._files[f].read_rows(name, start, stop)
        t = self._bins[f][name]
        return (t[start:stop] if t.dim() else t).clone()

    def read(self, name: str) -> Tensor:
        return self.read_rows(name, 0, self.info(name).rows)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._bins.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _load_bin(f: Path) -> dict[str, Tensor]:
    """A pickled PyTorch state dict, loaded with weights_only=True (no code runs); anything refused or not a
    {name: tensor} map is a CheckpointError."""
    try:
        sd = torch.load(f, map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:  # UnpicklingError for forbidden globals, RuntimeError/EOFError for corrupt files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{f}: cannot be loaded as a PyTorch state dict with weights_only=True "
                              f"({type(err).__name__}: {first[:200]})") from None
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{f}: expected a state dict (a map of tensor names to tensors)")
    return sd


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Whole state dict in memory (small models, tests, the Python API)."""
    with CheckpointReader(path) as r:
        return {n: r.read(n) for n in r.names}


def plan_shards(infos: list[TensorInfo], max_shard_bytes: int) -> list[list[TensorInfo]]:
    """Greedy: tensors in order, a new shard when the next tensor would overflow (a tensor larger than the
    limit gets a shard of its own), like transformers' save_pretrained."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_size must be > 0 bytes, got {max_shard_bytes}")
    shards: list[list[TensorInfo]] = [[]]
    size = 0
    for info in infos:
        if shards[-1] and size + info.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(info)
        size += info.nbytes
    return shards


class ShardedWriter:
    """Writes planned tensors, in order, into model.safetensors or model-0000i-of-0000n.safetensors + index."""

    def __init__(self, folder: Path, infos: list[TensorInfo], max_shard_bytes: int = 2 * 1024**3):
        self.folder = folder
        self.shards = plan_shards(infos, max_shard_bytes)
        n = len(self.shards)
        self.filenames = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self._shard_of = {info.name: i for i, shard in enumerate(self.shards) for info in shard}
        self._current: SafetensorsWriter | None = None
        self._current_index = -1

    def write(self, name: str, block: Tensor) -> None:
        i = self._shard_of.get(name)
        if i is None:
            raise ValueError(f"tensor {name!r} was not planned for output")
        if i != self._current_index:
            if i < self._current_index:
                raise ValueError(f"tensor {name!r} arrives after its shard was closed")
            self._open(i)
        self._current.write(name, block)

    def _open(self, i: int) -> None:
        if self._current is not None:
            self._current.close()
        for skipped in range(self._current_index + 1, i):  # a shard whose tensors never came
            raise ValueError(f"no tensor was written to shard {self.filenames[skipped]}")
        self._current = SafetensorsWriter(self.folder / self.filenames[i], self.shards[i])
        self._current_index = i

    def close(self) -> None:
        if self._current_index != len(self.shards) - 1:
            raise ValueError(f"only {self._current_index + 1} of {len(self.shards)} shards were written")
        self._current.close()
        if len(self.shards) > 1:
            index = {"metadata": {"total_size": sum(i.nbytes for s in self.shards for i in s)},
                     "weight_map": {info.name: self.filenames[i] for i, s in enumerate(self.shards) for info in s}}
            (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


STALE_AGE_S = 6 * 3600  # a temp folder whose owner cannot be checked is stale after this long
# ours: .<name>.tmp-<host>-<pid>-<8 hex>; older versions used mkdtemp: .<name>.tmp-<8 of [a-z0-9_]>
_TMP_RE = re.compile(r"^\..+\.(?:tmp|old)-(?:(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}|[a-z0-9_]{8})$")


def _owner_gone(host: str | None, pid: str | None, path: Path) -> bool:
    """Whether the process that made a temp folder is gone. Folders named by this module carry host and
    pid: on this host, a pid that no longer runs means a killed merge (a recycled pid only delays the
    cleanup). Others (another host on a shared disk, or the older mkdtemp names) go by age."""
    if host == socket.gethostname() and pid is not None:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError, ValueError):
            pass  # alive under another user / not a pid: fall back to age
        else:
            return False
    try:
        return time.time() - path.lstat().st_mtime > STALE_AGE_S
    except OSError:
        return False


def remove_stale_temp_dirs(parent: Path) -> list[Path]:
    """Delete ``.<name>.tmp-*`` / ``.<name>.old-*`` folders in ``parent`` left by killed writes."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP_RE.match(p.name)
        if m is None or p.is_symlink() or not p.is_dir():
            continue
        if _owner_gone(m.group("host"), m.group("pid"), p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _new_dir(parent: Path, name: str, kind: str) -> Path:
    """A fresh folder with normal permissions (0777 less the umask, unlike mkdtemp's 0700), named so that
    remove_stale_temp_dirs can tell whether its owner still runs."""
    for _ in range(100):
        p = parent / f".{name}.{kind}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            p.mkdir(mode=0o777)
            return p
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary folder in {parent}")


def check_output_target(target: str | os.PathLike, protected: list[str | os.PathLike] = ()) -> Path:
    """The resolved output path, refused when it is, contains or lies inside an input model's folder."""
    target = Path(target).resolve()
    for p in protected:
        p = Path(p).resolve()
        folder = p.parent if p.is_file() else p
        if target == folder or folder.is_relative_to(target) or target.is_relative_to(folder):
            raise CheckpointError(f"output folder {target} is, contains or lies inside the input model folder "
                                  f"{folder}; choose another output folder (--overwrite never replaces an input)")
    return target


@contextlib.contextmanager
def atomic_output_dir(target: str | os.PathLike, overwrite: bool = False,
                      protected: list[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it to ``target`` on success, delete it on failure.
    ``protected``: input model folders, never an allowed target (not even with overwrite). Stale temp
    folders of killed writes in the target's parent are removed first."""
    target = check_output_target(target, protected)
    if target.exists() and not overwrite:
        raise FileExistsError(f"output folder {target} already exists (pass overwrite to replace it)")
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"output {target} exists and is not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_dirs(target.parent)
        tmp = _new_dir(target.parent, target.name, "tmp")
    except OSError as err:
        raise CheckpointError(f"output folder {target}: cannot create it in {target.parent} "
                              f"({err.strerror or type(err).__name__})") from None
    try:
        yield tmp
        if target.exists():
            old = _new_dir(target.parent, target.name, "old")
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_support_files(src: str | os.PathLike, dst: Path, dtype: torch.dtype | None = None) -> list[str]:
    """Copy config/tokenizer/generation files (everything that is not weights), also in subfolders such as
    sentence-transformers' 1_Pooling/; record a cast dtype in config.json so transformers loads the output
    in it."""
    src = Path(src)
    copied = []
    if not src.is_dir():
        return copied
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if (not f.is_file() or f.name.endswith(WEIGHT_SUFFIXES) or f.name in WEIGHT_INDEXES
                or any(part.startswith(".") for part in rel.parts[:-1])):  # .git/, .cache/ ...
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / rel)
        copied.append(str(rel))
    cfg = dst / "config.json"
    if dtype is not None and cfg.exists():
        data = json.loads(cfg.read_text())
        name = str(dtype).removeprefix("torch.")
        for key in ("torch_dtype", "dtype"):
            if key in data:
                data[key] = name
        if "torch_dtype" not in data and "dtype" not in data:
            data["dtype"] = name
        cfg.write_text(json.dumps(data, indent=2) + "\n")
    return copied


def save_state_dict(state: dict[str, Tensor], folder: str | os.PathLike, *, support_from: str | os.PathLike | None = None,
                    max_shard_bytes: int = 2 * 1024**3, overwrite: bool = False) -> Path:
    """Atomically write an in-memory state dict as a HF folder (sharded safetensors + support files)."""
    infos = [TensorInfo(n, tuple(t.shape), t.dtype) for n, t in state.items()]
    with atomic_output_dir(folder, overwrite) as tmp:
        w = ShardedWriter(tmp, infos, max_shard_bytes)
        for n, t in state.items():
            w.write(n, t)
        w.close()
        if support_from is not None:
            copy_support_files(support_from, tmp)
    return Path(folder).resolve()
