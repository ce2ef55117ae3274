"""The contract every registered study keeps (a new study is checked the day it is registered).

At each study's `tiny` config: an ensemble trains the same weights and metrics as each model alone; the forward
equals the per-example reference; a bad field is named before anything trains; every claim runs without ERROR at
randomly drawn valid configs; every declared figure is drawn; a diverged model never counts toward a verdict.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError
from theorylab.core.progress import QUIET
from theorylab.core.report import write_report
from theorylab.core.store import Store
from theorylab.core.study import get_study, study_names
from theorylab.core.sweep import result_cells

CPU = torch.device("cpu")
STUDIES = study_names()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_configs(name: str, seeds: int, **changes):
    s = get_study(name)
    return s, s.seed_configs("quick", seeds, **{**s.tiny, **changes})


@pytest.mark.parametrize("name", STUDIES)
def test_study_declares_the_contract_hooks(name):
    s = get_study(name)
    assert s.tiny, "a `tiny` config (trains in about a second) is needed by these tests"
    assert s.forward_check is not None, "a forward check against a per-example reference is needed"
    assert s.variations, "valid alternative values for some fields are needed (random-config claim runs)"
    assert {c.kind for c in s.claims} <= {"theorem", "mechanism", "figure"} and s.claims
    assert len({c.id for c in s.claims}) == len(s.claims)


@pytest.mark.parametrize("name", STUDIES)
def test_an_ensemble_trains_what_each_model_trains_alone(name):
    s, cfgs = tiny_configs(name, 3)
    together = s.train_group(cfgs, CPU, QUIET)
    alone = s.train_group([cfgs[1]], CPU, QUIET)
    for k, v in alone.params.items():
        torch.testing.assert_close(together.params[k][1], v[0], atol=1e-5, rtol=1e-5, msg=f"weights {k}")
    for k, v in alone.metrics[0].items():
        assert together.metrics[1][k] == pytest.approx(v, abs=1e-5), f"metric {k}"
    assert together.status == ["done"] * 3


@pytest.mark.parametrize("name", STUDIES)
def test_the_forward_equals_the_per_example_reference(name):
    s, cfgs = tiny_configs(name, 2)
    params = s.train_group(cfgs, CPU, QUIET).params
    assert s.forward_check(cfgs, params, CPU) <= 1e-4


@pytest.mark.parametrize("name", STUDIES)
def test_a_bad_field_is_named_before_anything_trains(name, tmp_path):
    store = tmp_path / "s.sqlite"
    runner = CliRunner()
    for args, needle in ((["--set", "seed=-1"], "seed"), (["--set", "no_such_field=1"], "no_such_field")):
        r = runner.invoke(app, ["run", name, *args, "--store", str(store), "--device", "cpu"])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output
    assert not store.exists() and not (tmp_path / name).exists()
    with pytest.raises(ConfigError, match="seed"):
        get_study(name).config("quick", seed=-1)


@pytest.fixture(scope="module")
def tiny_runs():
    """Every study's claims at its tiny config, 2 seeds (shared by the figure and verdict tests)."""
    out = {}
    for name in STUDIES:
        s = get_study(name)
        ctx = ClaimContext(s, "quick", 2, CPU, overrides=dict(s.tiny))
        out[name] = run_claims(ctx)
    return out


@pytest.mark.parametrize("name", STUDIES)
def test_every_claim_runs_and_every_declared_figure_is_drawn(name, tiny_runs, tmp_path):
    results = tiny_runs[name]
    assert [r.verdict for r in results if r.verdict == "ERROR"] == [], [r.error for r in results if r.error]
    s = get_study(name)
    rows = [r.row(name) for r in results]
    write_report(s, rows, tmp_path, {"size": "tiny", "seeds": 2, "machine": "test"})
    drawn = {p.stem for p in tmp_path.glob("*.png")}
    assert set(s.plots) <= drawn, f"declared but not drawn: {set(s.plots) - drawn}"


@pytest.mark.parametrize("name", STUDIES)
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_every_claim_runs_without_error_at_random_valid_configs(name, data):
    s = get_study(name)
    fields = data.draw(st.lists(st.sampled_from(sorted(s.variations)), max_size=4, unique=True), label="fields")
    changes = {f: data.draw(st.sampled_from(s.variations[f]), label=f) for f in fields}
    try:
        s.config("quick", **{**s.tiny, **changes})
    except ConfigError:
        return  # an invalid combination is rejected up front, which is the other half of the contract
    ctx = ClaimContext(s, "quick", 2, CPU, overrides={**s.tiny, **changes})
    errors = {r.claim.id: r.error for r in run_claims(ctx) if r.verdict == "ERROR"}
    assert not errors, f"at {changes}: {errors}"


@pytest.mark.parametrize("name", STUDIES)
def test_a_diverged_model_never_counts_toward_a_verdict(name):
    """Seed 0's model is recorded as diverged (weights not finite): every claim fails it, none errors."""
    s, cfgs = tiny_configs(name, 2)
    res = s.train_group(cfgs, CPU, QUIET)
    res.params = {k: torch.cat([torch.full_like(v[:1], float("nan")), v[1:]]) if v.is_floating_point() else v
                  for k, v in res.params.items()}
    res.status = ["diverged", res.status[1]]
    store = Store(":memory:")
    store.put_cells(result_cells(s, cfgs, res, CPU))
    ctx = ClaimContext(s, "quick", 2, CPU, store, overrides=dict(s.tiny))
    for r in run_claims(ctx):
        assert r.verdict != "ERROR", r.error
        if r.outcome is not None:
            assert r.passed_seeds[0] is False and r.diverged == [cfgs[0].seed]


def test_a_diverging_icl_model_is_recorded_and_not_scored_as_perfect():
    """lr = 1000 diverges: the cell is stored as diverged and thm1 cannot hold on it."""
    s = get_study("icl")
    ctx = ClaimContext(s, "quick", 1, CPU, overrides={**s.tiny, "lr": 1000.0, "seed": 5})
    (r,) = run_claims(ctx, ["thm1_in_domain"])
    assert ctx.diverged == {5} and r.verdict != "holds" and r.passed_seeds == [False]
