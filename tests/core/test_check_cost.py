"""The claim run's time estimate and guard (core.check_cost): from the reference machine's timings of whole runs."""
import json

import pytest
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.check_cost import REFERENCE_CHECKS, claim_run_cost, reference_checks
from theorylab.core.config import ConfigError
from theorylab.core.cost import MAX_SECONDS
from theorylab.core.store import Store
from theorylab.core.study import get_study, study_names

runner = CliRunner()


def _reference(tmp_path, study: str, seconds: float):
    path = tmp_path / "checks.json"
    path.write_text(json.dumps({"machine": "a test machine", "threads": 1, "measured": "today",
                                "studies": {study: {"full": {"seconds": seconds, "how": "measured end to end"}}}}))
    return path


def test_every_study_has_its_full_size_timed_or_estimated_with_how():
    ref = reference_checks()
    assert {"machine", "threads", "measured"} <= set(ref)
    for name in study_names():
        entry = ref["studies"].get(name, {}).get("full")
        assert entry is not None, f"{name}: no full-size time in {REFERENCE_CHECKS.name}"
        assert entry["seconds"] > 0 and entry["how"].split()[0] in {"measured", "estimated", "estimated:"}


def test_over_the_limit_is_refused_unless_yes_and_scales_with_seeds(tmp_path):
    study = get_study("icl")
    path = _reference(tmp_path, "icl", 2 * MAX_SECONDS)
    cost = claim_run_cost(study, "full", None, None, {}, "cpu", path=path)
    with pytest.raises(ConfigError, match=r"about 12\.0 h .*measured end to end.*--yes"):
        cost.guard(False)
    cost.guard(True)
    default = study.default_seeds["full"]
    half = claim_run_cost(study, "full", default // 2, None, {}, "cpu", path=path)
    assert half.seconds == pytest.approx(cost.seconds * (default // 2) / default)
    assert "scaled to" in half.describe()


def test_a_subset_is_an_upper_bound_and_another_config_or_device_does_not_refuse(tmp_path):
    study = get_study("icl")
    path = _reference(tmp_path, "icl", 2 * MAX_SECONDS)
    subset = claim_run_cost(study, "full", None, [study.claims[0].id], {}, "cpu", path=path)
    assert "at most" in subset.describe() and subset.over_limits()  # still refused: it may be the costly claim
    every = claim_run_cost(study, "full", None, [c.id for c in study.claims], {}, "cpu", path=path)
    assert "about" in every.describe()
    overridden = claim_run_cost(study, "full", None, None, {"steps": 10}, "cpu", path=path)
    assert overridden.over_limits() == [] and "--set" in overridden.describe()
    assert claim_run_cost(study, "full", None, None, {}, "cuda:0", path=path) is None
    assert claim_run_cost(study, "quick", None, None, {}, "cpu", path=path) is None


def test_a_store_holding_the_default_cells_does_not_refuse_a_rerun(tmp_path):
    study = get_study("icl")
    path = _reference(tmp_path, "icl", 20 * MAX_SECONDS)
    assert claim_run_cost(study, "full", 2, None, {}, "cpu", Store(tmp_path / "s.sqlite"), path).over_limits()
    held = {c.hash for c in study.seed_configs("full", 2)}

    class Holding:  # a store whose cells of these configs are done
        def get_cells(self, hashes):
            return {h: type("Cell", (), {"status": "done"})() for h in hashes if h in held}

    rerun = claim_run_cost(study, "full", 2, None, {}, "cpu", Holding(), path)
    assert rerun.reused and rerun.over_limits() == [] and "rerun" in rerun.describe()


def _over_the_limit() -> list[str]:
    """The studies whose full size the reference machine took over the limit for (skips the test if none)."""
    ref = reference_checks()["studies"]
    long = [name for name in study_names() if ref[name]["full"]["seconds"] > MAX_SECONDS]
    if not long:
        pytest.skip("no study's full size is over the limit on the reference machine")
    return long


def test_check_refuses_a_run_over_the_limit_in_one_line_before_anything_trains(tmp_path):
    long = _over_the_limit()
    store = tmp_path / "s.sqlite"
    r = runner.invoke(app, ["check", long[0], "--size", "full", "--device", "cpu", "--store", str(store)])
    assert r.exit_code == 2 and r.output.startswith("error:") and "--yes" in r.output
    assert "Traceback" not in r.output and not store.exists()


def test_the_notebook_api_refuses_the_same_run_before_creating_a_store(tmp_path):
    import theorylab as tl

    long = _over_the_limit()
    store = tmp_path / "s.sqlite"
    with pytest.raises(ConfigError, match="--yes|yes"):
        tl.check(long[0], size="full", device="cpu", store=store, progress=False)
    assert not store.exists()
