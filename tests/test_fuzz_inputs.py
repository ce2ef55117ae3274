"""Hostile input, generated: configs of every registered study and command lines. Each is either accepted or
refused with one clear line (exit 2), never a traceback, and a refused command writes nothing. The default
profile keeps CI fast; `-m slow` runs a longer one."""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.config import ConfigError
from theorylab.core.study import get_study, study_names

runner = CliRunner()
QUICK = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))

hostile_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**31, 2**62, 2**63, 2**64, 1e308, -1e308, 1e-320, "", "nan", "1e999", [], [0], [-1],
                     [2**63], None, True, "[1,", "{a: 1}"]),
    st.text(max_size=12), st.lists(st.integers(-5, 50), max_size=4))


def field_names(name):
    return st.one_of(st.sampled_from(sorted(get_study(name).config_cls.model_fields)), st.text(min_size=1, max_size=8))


def config_or_config_error(name, values):
    try:
        cfg = get_study(name).config("quick", **values)
    except ConfigError as e:
        assert str(e).strip(), "an error names what is wrong"
        return None
    for field, value in cfg:  # whatever is accepted is finite and hashable into a store row
        if isinstance(value, float):
            assert math.isfinite(value), f"{name}: {field}={value} accepted"
    assert len(cfg.hash) == 64
    return cfg


def fuzz_configs(name, data, max_size):
    config_or_config_error(name, data.draw(st.dictionaries(field_names(name), hostile_values, max_size=max_size)))


@pytest.mark.parametrize("name", study_names())
@QUICK
@given(data=st.data())
def test_every_study_config_accepts_or_names_the_field(name, data):
    fuzz_configs(name, data, 3)


def assignment(name):
    return st.builds(lambda k, v: f"{k}={v}", field_names(name),
                     st.one_of(st.text(max_size=10), hostile_values.map(str)))


def check_clean(result, tmp_path):
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.lstrip().startswith("error:") and result.output.strip().count("\n") == 0, result.output
    assert not any(tmp_path.iterdir()), "a refused or dry command wrote something"


@pytest.mark.parametrize("name", study_names())
@QUICK
@given(data=st.data())
def test_sweep_command_lines_are_validated_cleanly(name, data, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    sets = data.draw(st.lists(assignment(name), max_size=2))
    grid = data.draw(st.lists(st.one_of(assignment(name), st.text(max_size=12)), max_size=2))
    args = ["sweep", name, "--dry-run", "--store", str(tmp_path / "s.sqlite")]
    for s in sets:
        args += ["--set", s]
    for g in grid:
        args += ["--grid", g]
    args += data.draw(st.sampled_from([[], ["--seeds", "0"], ["--seeds", "3"], ["--max-models", "-1"],
                                       ["--size", "huge"], ["--backend", "nope"], ["--device", "tpu"]]))
    check_clean(runner.invoke(app, args), tmp_path)


@QUICK
@given(store=st.text(min_size=1, max_size=16).filter(lambda s: "\x00" not in s), claim=st.text(max_size=10),
       study=st.sampled_from(study_names() + ["nope", ""]))
def test_report_and_export_never_create_a_store(store, claim, study, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    path = str(tmp_path / store.lstrip("/"))
    check_clean(runner.invoke(app, ["report", study, "--store", path]), tmp_path)
    check_clean(runner.invoke(app, ["export", "--out", str(tmp_path / "o" / "x.csv"), "--store", path]), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", study_names())
@LONG
@given(data=st.data())
def test_every_study_config_long_profile(name, data):
    fuzz_configs(name, data, 4)
