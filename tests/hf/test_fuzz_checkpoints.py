"""Fuzzing ``theorylab merge`` with corrupt safetensors files, index JSON and YAML configs.

Property: the CLI never shows a traceback; it exits 0 or exits 2 with exactly one ``error:`` line and no
output folder (nor temp folder) left. Where the official ``safetensors`` loader refuses a file, theorylab
must refuse it too (exit 2): no merge from the wrong bytes. The default run keeps max_examples small (a few
seconds per test); ``-m slow`` runs the same properties with many more examples.
"""
import json
import math
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors.torch import load

from tests.hf.corrupt_kit import (assert_clean_error, config, header_and_data, pack, run_merge, safetensors_bytes,
                                  tensors, write_model)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow], derandomize=True, database=None)
SLOW = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow], database=None)

VALID = safetensors_bytes(tensors(1, 0.1))
HEADER, DATA = header_and_data(tensors(1, 0.1))
HEADER_END = 8 + struct.unpack("<Q", VALID[:8])[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("fuzz") / "base", tensors())


def official_accepts(content: bytes) -> bool:
    try:
        load(content)
        return True
    except Exception:
        return False


def check_merge(base: Path, content: bytes | None = None, *, index: str | None = None, cfg=None,
                must_fail: bool = False):
    """Run a merge with the given model file / index / config; assert the property; return the result."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        ft = write_model(root / "ft", content if content is not None else VALID,
                         "shard.safetensors" if index is not None else "model.safetensors")
        if index is not None:
            (ft / "model.safetensors.index.json").write_text(index)
        res, out = run_merge(root, cfg if cfg is not None else config(base, [ft]))
        if content is not None and not official_accepts(content):
            must_fail = True
        if must_fail or res.exit_code != 0:
            assert_clean_error(res, out)
        else:
            assert res.exception is None and "Traceback" not in res.output
            assert out.is_dir() and not [p for p in root.iterdir() if p.name.startswith(".merged.")]
        return res
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- strategies --------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
FIELDS = ("dtype", "shape", "data_offsets")


@st.composite
def header_mutations(draw) -> bytes:
    """The valid header with 1-3 random edits: a field of a tensor set to a random JSON value, a field or
    tensor dropped, a tensor or __metadata__ replaced, offsets nudged, or the length field changed."""
    h = json.loads(json.dumps(HEADER))
    data, length = DATA, None
    for _ in range(draw(st.integers(1, 3))):
        names = [k for k in h if k != "__metadata__"]
        kind = draw(st.sampled_from(["field", "drop_field", "drop_tensor", "entry", "metadata", "nudge", "length",
                                     "add_tensor", "dtype"]))
        if not names and kind not in ("metadata", "length", "add_tensor"):
            continue
        name = draw(st.sampled_from(names)) if names else None
        if kind == "field" and isinstance(h[name], dict):
            h[name][draw(st.sampled_from(FIELDS))] = draw(json_values)
        elif kind == "drop_field" and isinstance(h[name], dict) and h[name]:
            h[name].pop(draw(st.sampled_from(sorted(h[name]))))
        elif kind == "drop_tensor":
            h.pop(name)
        elif kind == "entry":
            h[name] = draw(json_values)
        elif kind == "metadata":
            h["__metadata__"] = draw(json_values)
        elif kind == "nudge" and isinstance(h[name], dict) and isinstance(h[name].get("data_offsets"), list):
            h[name]["data_offsets"] = [o + draw(st.integers(-16, 16)) if isinstance(o, int) else o
                                       for o in h[name]["data_offsets"]]
        elif kind == "length":
            length = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 400)))
        elif kind == "add_tensor":
            h[draw(st.text(max_size=6))] = {"dtype": draw(st.sampled_from(["F32", "I8", "BOOL", "F64"])),
                                           "shape": draw(st.lists(st.integers(0, 4), max_size=3)),
                                           "data_offsets": [len(data), len(data) + draw(st.integers(0, 64))]}
        elif kind == "dtype" and isinstance(h[name], dict):
            h[name]["dtype"] = draw(st.sampled_from(["F16", "BF16", "I32", "I64", "U8", "F8_E4M3", "U16", "f32", ""]))
    return pack(h, data, length=length)


@st.composite
def byte_mutations(draw) -> bytes:
    """Truncation, garbage appended, or random bytes written over the header or the data."""
    kind = draw(st.sampled_from(["truncate", "append", "overwrite_header", "overwrite_any", "garbage"]))
    if kind == "truncate":
        return VALID[:draw(st.integers(0, len(VALID) - 1))]
    if kind == "append":
        return VALID + draw(st.binary(min_size=1, max_size=64))
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    buf = bytearray(VALID)
    hi = HEADER_END if kind == "overwrite_header" else len(buf)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, hi - 1))
        chunk = draw(st.binary(min_size=1, max_size=8))
        buf[at:at + len(chunk)] = chunk
    return bytes(buf)


def index_texts():
    shard_names = st.sampled_from(["shard.safetensors", "./shard.safetensors", "../shard.safetensors", "/tmp/x.safetensors", "", ".",
                                   "sub/../../base/model.safetensors", "missing.safetensors"])
    weight_maps = st.dictionaries(st.sampled_from(["a.weight", "a.bias", "pos", "zz"]), shard_names | json_values,
                                  max_size=4)
    as_json = st.one_of(json_values, st.fixed_dictionaries({"weight_map": weight_maps}),
                        st.fixed_dictionaries({"weight_map": json_values}), st.fixed_dictionaries({"metadata": json_values}))
    return st.one_of(as_json.map(json.dumps), st.text(max_size=60), st.binary(max_size=60).map(
        lambda b: b.decode("latin-1")))


def _index_is_valid(text: str) -> bool:
    """A weight_map that puts only real tensors (at least one) in the one real shard; extra tensors of a
    shard that the map does not list are read too, as transformers does."""
    try:
        wm = json.loads(text)["weight_map"]
    except Exception:
        return False
    return (isinstance(wm, dict) and bool(wm) and set(wm) <= {"a.weight", "a.bias", "pos"}
            and all(v in ("shard.safetensors", "./shard.safetensors") for v in wm.values()))


weights = st.one_of(st.floats(), st.just(1e308), st.just(float("nan")), st.integers(-10**9, 10**9),
                    st.lists(st.floats(), max_size=3), st.text(max_size=5), st.none())


def _weight_bad(w) -> bool:
    vals = w if isinstance(w, list) else [w]
    return any(isinstance(v, (int, float)) and not isinstance(v, bool) and not (math.isfinite(v) and abs(v) <= 1e6)
               for v in vals)


# --- properties: each runs under FAST by default and under SLOW with -m slow -------------------------------

PROFILES = [pytest.param(FAST, id="fast"), pytest.param(SLOW, id="long", marks=pytest.mark.slow)]
yaml_extras = st.dictionaries(st.sampled_from(["parameters", "dtype", "slices", "merge_method"]), json_values,
                              max_size=2)
yaml_texts = st.none() | st.text(max_size=80) | json_values.map(yaml.safe_dump)


@pytest.mark.parametrize("mutations", [header_mutations, byte_mutations], ids=["header", "bytes"])
@pytest.mark.parametrize("profile", PROFILES)
def test_corrupt_safetensors(base, profile, mutations):
    @profile
    @given(content=mutations())
    def prop(content):
        check_merge(base, content)

    prop()


@pytest.mark.parametrize("profile", PROFILES)
def test_index_json(base, profile):
    @profile
    @given(text=index_texts())
    def prop(text):
        check_merge(base, index=text, must_fail=not _index_is_valid(text))

    prop()


@pytest.mark.parametrize("profile", PROFILES)
def test_yaml_config(base, profile, tmp_path):
    ft = write_model(tmp_path / "ft", VALID)

    @profile
    @given(w=weights, extra=yaml_extras, text=yaml_texts)
    def prop(w, extra, text):
        if text is not None:
            check_merge(base, cfg=text)
            return
        cfg = config(base, [ft]) | extra
        cfg["models"][0]["parameters"]["weight"] = w
        check_merge(base, cfg=yaml.safe_dump(cfg), must_fail=_weight_bad(w))

    prop()


def test_fuzz_strategies_reach_refusals(base):
    """The strategies are not vacuous: a known-corrupt sample of each kind is refused by the CLI."""
    check_merge(base, VALID[:-3], must_fail=True)
    check_merge(base, pack(HEADER, DATA, length=2**60), must_fail=True)
    check_merge(base, index=json.dumps({"weight_map": {"a.weight": "../shard.safetensors"}}), must_fail=True)
    check_merge(base, cfg=yaml.safe_dump(config(base, [base]) | {"models": [{"model": str(base),
                                                                           "parameters": {"weight": 1e308}}]}),
                must_fail=True)
