"""Tiny hand-built safetensors models and helpers to corrupt them and run ``theorylab merge`` on them."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
import yaml
from typer.testing import CliRunner

from theorylab.cli import app

runner = CliRunner()

CODES = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32", torch.float16: "F16"}


def tensors(seed: int = 0, scale: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(3, generator=g),
            "pos": torch.arange(4, dtype=torch.int64)}
    if scale:
        g2 = torch.Generator().manual_seed(seed)
        base = {k: v + scale * torch.randn(v.shape, generator=g2) if v.is_floating_point() else v
                for k, v in base.items()}
    return base


def header_and_data(sd: dict[str, torch.Tensor]) -> tuple[dict, bytes]:
    header, data, off = {"__metadata__": {"format": "pt"}}, b"", 0
    for k, t in sd.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    return header, data


def pack(header, data: bytes, *, header_bytes: bytes | None = None, length: int | None = None) -> bytes:
    raw = header_bytes if header_bytes is not None else json.dumps(header).encode()
    if header_bytes is None:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def safetensors_bytes(sd: dict[str, torch.Tensor]) -> bytes:
    return pack(*header_and_data(sd))


def write_model(folder: Path, content: bytes | dict[str, torch.Tensor], name: str = "model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content if isinstance(content, bytes) else safetensors_bytes(content))
    (folder / "config.json").write_text('{"model_type": "toy"}')
    return folder


def config(base: Path, models: list[Path], weights=None, method: str = "task_arithmetic") -> dict:
    weights = weights or [0.5] * len(models)
    return {"merge_method": method, "base_model": str(base),
            "models": [{"model": str(m), "parameters": {"weight": w}} for m, w in zip(models, weights)]}


def run_merge(root: Path, cfg: dict | str, out: Path | None = None, *extra: str):
    """(result, output folder) of ``theorylab merge`` through the top-level CLI app."""
    path = root / "merge.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    out = out or root / "merged"
    res = runner.invoke(app, ["merge", str(path), str(out), "--no-progress", *extra])
    return res, out


def assert_clean_error(res, out: Path, *fragments: str) -> str:
    """Exit 2, exactly one ``error:`` line (containing every fragment), no traceback, nothing written."""
    text = res.output
    assert res.exit_code == 2, (res.exit_code, text, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert not out.exists(), f"{out} was written"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, leftovers
    return lines[0]
