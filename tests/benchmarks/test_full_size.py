"""benchmarks/full_size.py: a whole full-size claim run, timed, and its row merged into the reference file the
claim-run cost guard reads (core.check_cost)."""
import json

from theorylab.core.check_cost import claim_run_cost
from theorylab.core.study import get_study


def test_a_finished_run_replaces_its_studys_entry_and_keeps_the_others(tmp_path, benchmark_script):
    ref = tmp_path / "checks.json"
    ref.write_text(json.dumps({"machine": "m", "threads": 1, "measured": "d", "studies": {
        "dqn": {"full": {"seconds": 1.0, "how": "estimated"}}, "icl": {"full": {"seconds": 9.0, "how": "estimated"}}}}))
    rows = [{"study": "dqn", "threads": 1, "exit_code": 1, "wall_s": 60.0, "cpu_s": 42.0, "load": [1.0, 2.0],
             "verdicts": {}, "measured": "2026-12-03"},
            {"study": "graph", "threads": 1, "exit_code": 2, "wall_s": 1.0, "cpu_s": 1.0, "load": [1.0, 1.0],
             "verdicts": {}, "measured": "2026-12-03"}]
    benchmark_script("full_size").merge_reference(rows, ref)
    studies = json.loads(ref.read_text())["studies"]
    assert studies["dqn"]["full"]["seconds"] == 42.0 and studies["dqn"]["full"]["how"].startswith("measured end to end")
    assert studies["icl"]["full"] == {"seconds": 9.0, "how": "estimated"}  # not in the run: kept
    assert "graph" not in studies  # refused (exit 2): not a timing
    cost = claim_run_cost(get_study("dqn"), "full", None, None, {}, "cpu", path=ref)
    assert cost.seconds == 42.0 and "measured end to end" in cost.describe()
