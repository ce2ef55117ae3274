"""The cost guard: estimates before anything trains, refuses above the limits without --yes, and a grid
too large to expand is never expanded."""
import time

import pytest
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.cost import MAX_CELLS, CostRefused, estimate
from theorylab.core.study import get_study

runner = CliRunner()


def test_counts_are_exact_and_the_guard_refuses_above_a_limit(monkeypatch, tmp_path):
    import theorylab.core.cost as cost_mod

    monkeypatch.setattr(cost_mod, "REFERENCE_RATES", tmp_path / "none.json")  # no store, no bench rates: unknown
    s = get_study("icl")
    cfgs = s.seed_configs("quick", 3, steps=100)
    cost = estimate(s, cfgs, 3, budget=1 << 30)
    assert (cost.cells, cost.model_steps) == (3, 300) and cost.seconds is None
    assert cost.eval_tokens == 3 * cfgs[0].n_test * (cfgs[0].l_ts + 1)
    cost.guard(yes=False)  # within the limits
    big = estimate(s, cfgs[:1], MAX_CELLS + 1, budget=1 << 30)
    with pytest.raises(CostRefused, match="cells >"):
        big.guard(yes=False)
    big.guard(yes=True)


def test_a_billion_cell_grid_is_refused_in_seconds_and_writes_nothing(tmp_path):
    t0 = time.perf_counter()
    r = runner.invoke(app, ["sweep", "icl", "--grid", "seed=0..1000000000", "--store", str(tmp_path / "s.sqlite")])
    assert r.exit_code == 2 and "refused" in r.output and "--yes" in r.output
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "s.sqlite").exists()
    r = runner.invoke(app, ["sweep", "icl", "--grid", "seed=0..1000000000", "--dry-run", "--store", str(tmp_path / "s")])
    assert r.exit_code == 0 and "would be refused" in r.output and not (tmp_path / "s").exists()


def test_a_claim_run_that_reads_too_many_test_tokens_is_refused_before_training(tmp_path):
    r = runner.invoke(app, ["check", "icl", "--set", "n_test=4194304", "--set", "l_ts=4096", "--store",
                            str(tmp_path / "s.sqlite")])
    assert r.exit_code == 2 and "test tokens" in r.output and not (tmp_path / "s.sqlite").exists()


def test_the_lazy_grid_checks_every_value_and_both_ends_of_a_range():
    r = runner.invoke(app, ["sweep", "icl", "--grid", "seed=0..200000", "--grid", "alpha=0.5,2", "--dry-run"])
    assert r.exit_code == 2 and "alpha" in r.output
    r = runner.invoke(app, ["sweep", "icl", "--grid", "l_tr=1..5000", "--grid", "seed=0..100", "--dry-run"])
    assert r.exit_code == 2 and "l_tr" in r.output
