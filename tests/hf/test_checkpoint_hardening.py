"""Hostile inputs to ``theorylab merge``: each is one ``error:`` line, exit 2, nothing written, or a note."""
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load, load_file

from tests.hf.corrupt_kit import (assert_clean_error, config, header_and_data, pack, run_merge, safetensors_bytes,
                                  tensors, write_model)
from theorylab.hf.checkpoint import STALE_AGE_S, atomic_output_dir
from theorylab.hf.safetensors_io import CheckpointError, SafetensorsFile


@pytest.fixture
def base(tmp_path):
    return write_model(tmp_path / "base", tensors())


def _merge_with_model(tmp_path, base, content, *fragments, name="model.safetensors"):
    ft = write_model(tmp_path / "ft", content, name)
    res, out = run_merge(tmp_path, config(base, [ft]))
    return assert_clean_error(res, out, *fragments)


def _mutated(mutate):
    h, d = header_and_data(tensors(1, 0.1))
    out = mutate(h, d)
    return out if isinstance(out, bytes) else pack(h, d)


def _set(key, field, value):
    def m(h, d):
        h[key][field] = value
    return m


HEADER_CASES = {
    # name: (mutation, fragments the error line must contain)
    "overlapping offsets": (_set("a.bias", "data_offsets", [40, 52]), ["'a.bias'", "overlaps"]),
    "span shorter than shape": (_set("a.weight", "data_offsets", [0, 44]), ["'a.weight'", "needs 48"]),
    "offsets past the end": (_set("pos", "data_offsets", [64, 96]), ["'pos'", "gap of 4 bytes"]),
    "trailing bytes": (lambda h, d: pack(h, d + b"\0" * 8), ["cover 92 bytes", "holds 100 after the header"]),
    "truncated data": (lambda h, d: pack(h, d[:-5]), ["truncated"]),
    "header is a list": (lambda h, d: pack(None, d, header_bytes=b"[1, 2]  "), ["must start with '{'"]),
    "header not JSON": (lambda h, d: pack(None, d, header_bytes=b"{nope}  "), ["not valid UTF-8 JSON"]),
    "header is a JSON string": (lambda h, d: pack(None, d, header_bytes=b'{"a": 1}'), ["'a'", "entry must be an object"]),
    "entry lacks dtype": (lambda h, d: h["a.bias"].pop("dtype") and None, ["'a.bias'", "lacks 'dtype'"]),
    "unknown dtype": (_set("a.bias", "dtype", "Q7"), ["'a.bias'", "unsupported dtype 'Q7'"]),
    "negative dim": (_set("a.weight", "shape", [-4, 3]), ["'a.weight'", "non-negative integers"]),
    "float dim": (_set("a.weight", "shape", [4.0, 3]), ["'a.weight'", "non-negative integers"]),
    "reversed offsets": (_set("a.bias", "data_offsets", [60, 48]), ["'a.bias'", "begin <= end"]),
    "bad metadata": (lambda h, d: h.update({"__metadata__": {"format": 1}}), ["__metadata__", "strings to strings"]),
    "duplicate names": (lambda h, d: pack(None, d, header_bytes=json.dumps(h).encode()[:-1] + b', "pos": '
                                          + json.dumps(h["pos"]).encode() + b"}"), ["duplicate key 'pos'"]),
    "header length 2^60": (lambda h, d: pack(h, d, length=2**60), ["header length 1152921504606846976"]),
    "header length past the file": (lambda h, d: pack(h, d, length=len(json.dumps(h)) + len(d) + 9),
                                    ["impossible"]),
    "empty file": (lambda h, d: b"", ["0 bytes, too short"]),
    "five bytes": (lambda h, d: b"\x01\x02\x03\x04\x05", ["5 bytes, too short"]),
    "invalid utf-8": (lambda h, d: pack(None, d, header_bytes=b'{"\xff": 1}'), ["not valid UTF-8"]),
}


OFFICIAL_ACCEPTS = {"duplicate names"}  # safetensors keeps the last entry; theorylab refuses the ambiguity


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_corrupt_model_file_is_one_clean_error(case, tmp_path, base):
    mutate, fragments = HEADER_CASES[case]
    content = _mutated(mutate)
    if case not in OFFICIAL_ACCEPTS:
        with pytest.raises(Exception):  # the official loader refuses these too
            load(content)
    line = _merge_with_model(tmp_path, base, content, *fragments)
    assert str(tmp_path / "ft" / "model.safetensors") in line or "duplicate" in line or "entry" in line


def test_corrupt_base_file_is_one_clean_error(tmp_path):
    h, d = header_and_data(tensors())
    h["a.bias"]["data_offsets"] = [40, 52]
    base = write_model(tmp_path / "base", pack(h, d))
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert_clean_error(res, out, str(base / "model.safetensors"), "overlaps")


def test_file_shrunk_after_open_is_an_error_not_short_data(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes(tensors()))
    with SafetensorsFile(path) as f:
        os.truncate(path, path.stat().st_size - 80)
        with pytest.raises(CheckpointError, match="file ends inside tensor 'a.weight'"):
            f.read("a.weight")


def test_integer_tensor_where_the_base_is_float_names_the_tensor(tmp_path, base):
    sd = tensors(1, 0.1)
    sd["a.bias"] = torch.tensor([1, 2, 3], dtype=torch.int32)
    _merge_with_model(tmp_path, base, sd, "tensor 'a.bias' is integer/bool (int32)", "base's is float (float32)")


def _sharded(tmp_path, index_text, shard="shard-1.safetensors"):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1), shard)
    (ft / "model.safetensors.index.json").write_text(index_text)
    return ft


@pytest.mark.parametrize("index,fragments", [
    ({"weight_map": {"a.weight": "../outside.safetensors"}}, ["'../outside.safetensors' points outside"]),
    ({"weight_map": {"a.weight": "sub/../../outside.safetensors"}}, ["points outside"]),
    ({"weight_map": {"a.weight": "/etc/passwd"}}, ["'/etc/passwd' points outside"]),
    ({"metadata": {}}, ["weight_map"]),
    ({"weight_map": ["shard-1.safetensors"]}, ["weight_map"]),
    ({"weight_map": {"a.weight": 7}}, ["weight_map['a.weight'] must be a file name"]),
    ({"weight_map": {"a.weight": "missing.safetensors"}}, ["missing.safetensors", "does not exist"]),
    ("{not json", ["model.safetensors.index.json", "not valid UTF-8 JSON"]),
    ({"weight_map": {"zz": "shard-1.safetensors"}}, ["weight_map puts tensor 'zz' in", "does not hold it"]),
    ({"weight_map": {}}, ["weight_map is empty"]),
])
def test_bad_index_is_one_clean_error(tmp_path, base, index, fragments):
    # a real file outside the model folder, which a confined index must not reach
    (tmp_path / "outside.safetensors").write_bytes(safetensors_bytes(tensors(1, 0.1)))
    ft = _sharded(tmp_path, index if isinstance(index, str) else json.dumps(index))
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert_clean_error(res, out, *fragments)


def test_index_inside_the_folder_still_reads(tmp_path, base):
    ft = _sharded(tmp_path, json.dumps({"weight_map": {k: "./sub/../shard-1.safetensors" for k in tensors()}}))
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("weight,shown", [(".nan", "got nan"), (".inf", "got inf"), ("-.inf", "got -inf"),
                                          ("1.0e308", "|weight| <= 1e+06, got 1e+308"), ("[1.0, .nan]", "got nan")])
def test_non_finite_or_huge_weight_names_model_and_field(tmp_path, base, weight, shown):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    cfg = f"merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n  - model: {ft}\n    parameters:\n      weight: {weight}\n"
    res, out = run_merge(tmp_path, cfg)
    assert_clean_error(res, out, "models[0].parameters.weight", f"(model '{ft}')", shown)


def test_nan_lambda_is_refused(tmp_path, base):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    cfg = config(base, [ft]) | {"parameters": {"lambda": float("nan")}}
    res, out = run_merge(tmp_path, cfg)
    assert_clean_error(res, out, "parameters.lambda must be a finite number")


def test_bounded_weight_still_merges(tmp_path, base):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    res, out = run_merge(tmp_path, config(base, [ft], weights=[1e6]))
    assert res.exit_code == 0, res.output
    assert all(torch.isfinite(t).all() for t in load_file(out / "model.safetensors").values())


def test_extra_tensor_and_nan_input_are_noted(tmp_path, base):
    sd = tensors(1, 0.1)
    sd["a.weight"][1, 2] = float("nan")
    sd["extra.weight"] = torch.ones(2)
    ft = write_model(tmp_path / "ft", sd)
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "1 tensor(s) not in the base are left out of the output: 'extra.weight'" in text
    assert "tensor 'a.weight' holds NaN or inf values" in text
    assert "'a.bias' holds NaN" not in text  # only the tensor that has them
    merged = load_file(out / "model.safetensors")
    assert "extra.weight" not in merged and torch.isnan(merged["a.weight"][1, 2])


def test_nan_in_base_is_noted_once_for_the_base_not_the_model(tmp_path):
    sd = tensors()
    sd["a.bias"][0] = float("inf")
    base = write_model(tmp_path / "base", sd)
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    res, _ = run_merge(tmp_path, config(base, [ft]))
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"base model ({base}): tensor 'a.bias' holds NaN or inf" in text
    assert text.count("holds NaN or inf") == 1  # the model's delta is inf there too, but only the base has it


def test_malicious_bin_is_one_clean_error(tmp_path, base):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    ft = tmp_path / "ft"
    ft.mkdir()
    torch.save({"a.weight": Evil()}, ft / "pytorch_model.bin")
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert_clean_error(res, out, "pytorch_model.bin", "weights_only=True")
    assert not (tmp_path / "pwned").exists()


def test_garbage_bin_is_one_clean_error(tmp_path, base):
    ft = tmp_path / "ft"
    ft.mkdir()
    (ft / "pytorch_model.bin").write_bytes(b"\x80\x02garbage")
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert_clean_error(res, out, "pytorch_model.bin")


def test_unwritable_output_parent_is_one_clean_error(tmp_path, base):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    (tmp_path / "afile").write_text("x")
    res, out = run_merge(tmp_path, config(base, [ft]), tmp_path / "afile" / "merged")
    assert res.exit_code == 2 and res.output.startswith("error: ") and "Traceback" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and "cannot create it" in res.output


@pytest.mark.parametrize("where", ["base", "ft", "parent", "inside"])
def test_input_folders_are_never_an_output_even_with_overwrite(tmp_path, base, where):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    out = {"base": base, "ft": ft, "parent": tmp_path, "inside": base / "merged"}[where]
    before = {p: p.read_bytes() for p in (base / "model.safetensors", ft / "model.safetensors")}
    res, _ = run_merge(tmp_path, config(base, [ft]), out, "--overwrite")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    line = " ".join(res.output.split())
    assert line.startswith("error: output folder") and "input model folder" in line
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not (base / "merged").exists()


def test_output_folder_has_normal_permissions(tmp_path, base):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    old = os.umask(0o022)
    try:
        res, out = run_merge(tmp_path, config(base, [ft]))
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert out.stat().st_mode & 0o777 == 0o755


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temp_folders_of_killed_merges_are_removed(tmp_path, base):
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    host = socket.gethostname()
    dead = tmp_path / f".merged.tmp-{host}-{_dead_pid()}-deadbeef"
    dead_old = tmp_path / f".merged.old-{host}-{_dead_pid()}-0badf00d"  # a killed --overwrite swap
    alive = tmp_path / f".other.tmp-{host}-{os.getpid()}-cafe0001"
    legacy_old = tmp_path / ".merged.tmp-ab12cd_3"  # mkdtemp's name: no pid, goes by age
    legacy_new = tmp_path / ".merged.tmp-zz99yy_1"
    unrelated = tmp_path / ".merged.tmp-notes"  # not a name this module (or mkdtemp) makes: never touched
    for p in (dead, dead_old, alive, legacy_old, legacy_new, unrelated):
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"partial")
    stale = time.time() - STALE_AGE_S - 60
    os.utime(legacy_old, (stale, stale))
    os.utime(unrelated, (stale, stale))
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert res.exit_code == 0, res.output
    assert not dead.exists() and not dead_old.exists() and not legacy_old.exists()
    assert alive.exists() and legacy_new.exists() and unrelated.exists()
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".merged.")
                                 and p not in (legacy_new, unrelated)]


def test_temp_folder_names_carry_the_owner(tmp_path):
    with atomic_output_dir(tmp_path / "o") as tmp:
        assert tmp.name.startswith(f".o.tmp-{socket.gethostname()}-{os.getpid()}-")
        assert tmp.stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_failed_merge_removes_its_temp_folder(tmp_path, base, monkeypatch):
    import theorylab.hf.merge as M
    ft = write_model(tmp_path / "ft", tensors(1, 0.1))

    def boom(*a, **k):
        raise ValueError("boom in the middle")

    monkeypatch.setattr(M, "_merge_one", boom)
    res, out = run_merge(tmp_path, config(base, [ft]))
    assert_clean_error(res, out, "boom in the middle")


def test_extract_lora_never_writes_over_its_inputs(tmp_path, base):
    from theorylab.cli import app
    from tests.hf.corrupt_kit import runner

    ft = write_model(tmp_path / "ft", tensors(1, 0.1))
    before = (ft / "model.safetensors").read_bytes()
    res = runner.invoke(app, ["extract-lora", str(ft), str(ft), "--base", str(base), "--rank", "1", "--overwrite"])
    assert res.exit_code == 2 and "input model folder" in res.output and "Traceback" not in res.output, res.output
    assert (ft / "model.safetensors").read_bytes() == before
