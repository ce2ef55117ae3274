"""The sweep's time estimate: a rate model in ensemble size fitted on stored chunk timings, predicted chunk by chunk
for the chunks the planner will form; stores written before chunks were timed are read through their cells."""
import hashlib
import json
import sqlite3

import pytest
import torch

from theorylab.core import store as store_mod
from theorylab.core.cost import estimate, fit_rate, rate_model
from theorylab.core.grid import expand_grid
from theorylab.core.store import ChunkTiming, Store
from theorylab.core.study import get_study
from theorylab.core.sweep import plan_chunks, split_group, sweep

pytestmark = pytest.mark.usefixtures("one_thread")

# a made-up machine: 3 s per chunk, 2 ms per step however many models it carries, 0.1 ms per model-step
OVERHEAD, PER_STEP, PER_MODEL_STEP = 3.0, 2e-3, 1e-4


def _seconds(models: int, steps: int) -> float:
    return OVERHEAD + PER_STEP * steps + PER_MODEL_STEP * models * steps


def _timing(models: int, steps: int, threads: int | None = 1, study: str = "icl") -> ChunkTiming:
    return ChunkTiming(study, "g", models, models * steps, _seconds(models, steps), "cpu", threads)


def test_the_fit_recovers_overhead_per_step_and_per_model_step_cost_exactly():
    chunks = [_timing(e, s) for e in (1, 2, 5, 16, 64) for s in (100, 400, 4000)]
    m = fit_rate(chunks)
    assert (m.overhead, m.per_step, m.per_model_step) == pytest.approx((OVERHEAD, PER_STEP, PER_MODEL_STEP), rel=1e-6)
    assert m.seconds(128, 4000) == pytest.approx(_seconds(128, 4000), rel=1e-6)
    assert m.bounds(32, 4000) == (m.seconds(32, 4000),) * 2  # within the sizes fitted: the fit
    # beyond them: between the fit and the largest size's per-model rate (no more amortisation)
    assert m.bounds(128, 4000) == pytest.approx((_seconds(128, 4000), 2 * _seconds(64, 4000)), rel=1e-6)
    assert m.describe((128, 128)) == "from 15 stored chunks of 1-64 models, cpu, 1 thread; extrapolated to 128 models"
    assert m.describe((16, 32)) == "from 15 stored chunks of 1-64 models, cpu, 1 thread"


def test_a_big_chunk_is_predicted_far_faster_per_model_than_the_small_ones_it_was_fitted_on():
    """The issue's case: claims ran chunks of 2-5 models; a sweep chunk of 128 amortises the per-step cost."""
    m = fit_rate([_timing(e, 4000) for e in (2, 3, 5)])
    per_model_small = _seconds(2, 4000) / 2
    assert m.seconds(128, 4000) == pytest.approx(_seconds(128, 4000), rel=1e-6)  # one step count: no separate overhead
    assert m.seconds(128, 4000) < 0.2 * 128 * per_model_small


def test_one_chunk_size_only_is_an_extrapolation_between_two_bounds_and_says_so():
    m = fit_rate([_timing(2, 4000), _timing(2, 4000)])
    seen = _seconds(2, 4000)
    assert (m.overhead, m.per_step) == (0.0, 0.0) and m.seconds(2, 4000) == pytest.approx(seen)
    # a 16-model chunk takes at least as long as the 2-model one, at most 8 times as long (the per-model rate)
    assert m.bounds(16, 4000) == pytest.approx((seen, 8 * seen), rel=1e-6)
    assert m.bounds(1, 4000) == pytest.approx((seen / 2, seen), rel=1e-6)
    assert "extrapolated to 16 models from one chunk size" in m.describe((16, 16))
    assert "extrapolated" not in m.describe((2, 2))
    assert fit_rate([]) is None


def test_chunks_timed_at_this_thread_count_are_preferred():
    st = Store(":memory:")
    slow = ChunkTiming("icl", "g", 4, 400, 100.0, "cpu", threads=2)
    st.put_cells([], chunk=slow)
    assert rate_model(get_study("icl"), st, "cpu").seconds(4, 100) == pytest.approx(100.0)  # only 2-thread chunks
    st.put_cells([], chunk=ChunkTiming("icl", "g", 4, 400, 10.0, "cpu", threads=torch.get_num_threads()))
    assert rate_model(get_study("icl"), st, "cpu").seconds(4, 100) == pytest.approx(10.0)
    assert rate_model(get_study("icl"), st, "cuda") is None


OLD_SCHEMA = store_mod._SCHEMA  # a store written before chunks were timed: the tables of today less `chunks`


def test_an_old_store_without_chunk_timings_is_read_through_its_cells_and_left_untouched(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    # two chunks as a sweep wrote them: each chunk's cells share `created` and hold their share of its seconds
    for i, (created, models, chunk_seconds) in enumerate([(100.0, 2, 10.0)] * 2 + [(200.0, 8, 16.0)] * 8):
        con.execute("INSERT INTO cells (config_hash, study, group_key, config, metrics, curves, status, seconds, device,"
                    " created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (f"h{i}", "icl", "g", json.dumps({"steps": 100, "seed": i}), "{}", "{}", "done",
                     chunk_seconds / models, "cpu", created))
    con.commit()
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    st = Store(path, create=False)
    got = sorted(st.chunk_timings("icl", 10), key=lambda t: t.models)
    assert [(t.models, t.model_steps, t.seconds, t.from_cells) for t in got] == [(2, 200, 10.0, True), (8, 800, 16.0, True)]
    m = rate_model(get_study("icl"), st, "cpu")
    assert m.seconds(2, 100) == pytest.approx(10.0) and m.seconds(8, 100) == pytest.approx(16.0)
    assert m.describe() == "from 2 stored chunks of 2-8 models, cpu, rebuilt from the cells: training loop only"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # a reader never adds the table


def test_a_sweep_stores_the_timing_of_each_chunk(tmp_path, tiny):
    icl = get_study("icl")
    st = Store(tmp_path / "s.sqlite", source="sweep")
    cfgs = expand_grid(icl, "quick", tiny, {"seed": list(range(5))})
    sweep(icl, cfgs, st, max_models=3)  # chunks of 3 and 2
    got = sorted(st.chunk_timings("icl", 10), key=lambda t: t.models)
    assert [(t.models, t.model_steps, t.threads, t.from_cells) for t in got] == [(2, 60, 1, False), (3, 90, 1, False)]
    cells = st.get_cells([c.hash for c in cfgs])
    # the whole train_group call (set-up and grading too), not only the training loop each cell holds its share of
    assert sum(t.seconds for t in got) > sum(c.seconds for c in cells.values()) > 0


def test_the_estimate_of_a_chunked_plan_sums_the_predictions_of_its_chunks(tiny):
    icl = get_study("icl")
    st = Store(":memory:")
    for e in (1, 3, 8):  # a store holding chunks of three sizes at the tiny config's 30 steps
        st.put_cells([], chunk=ChunkTiming("icl", "g", e, e * 30, _seconds(e, 30), "cpu", torch.get_num_threads()))
    cfgs = expand_grid(icl, "quick", tiny, {"seed": list(range(11)), "alpha": [0.6, 1.0]})
    budget = 1 << 30
    cost = estimate(icl, cfgs, len(cfgs), budget, st, device="cpu", max_models=4)
    planned = [len(c) for c in plan_chunks(icl, cfgs, budget, max_models=4)]
    assert sorted(planned) == [3, 3, 4, 4, 4, 4] and cost.chunks == len(planned)
    assert cost.seconds == pytest.approx(sum(_seconds(e, 30) for e in planned), rel=1e-6)
    assert "from 3 stored chunks of 1-8 models" in cost.describe()
    # a lazily expanded grid (a sample standing for many more cells) is split the same way, in pairs
    assert split_group(10**9, 4) == [(4, 250_000_000)] and split_group(11, 4, workers=2) == [(4, 2), (3, 1)]


def test_with_no_stored_chunk_the_estimate_falls_back_on_the_shipped_bench_rates(tmp_path):
    import json

    from theorylab.core.cost import bench_rate_model
    from theorylab.core.study import get_study

    ref = tmp_path / "rates.json"
    ref.write_text(json.dumps({"machine": "test box", "measured": "2026-12-03",
                               "studies": {"dqn": {"1": {"1": 100.0, "64": 1600.0}, "2": {"64": 3000.0}}}}))
    model = bench_rate_model(get_study("dqn"), "cpu", 1, ref)
    # 1 model: 1/100 s per step; 64 models: 64/1600 = 0.04 s per step -> per_step + E per_model_step fits both
    assert model.seconds(1, 100) == pytest.approx(1.0, rel=1e-6)
    assert model.seconds(64, 100) == pytest.approx(4.0, rel=1e-6)
    assert "test box" in model.describe() and "lower bound" in model.describe()
    assert bench_rate_model(get_study("dqn"), "cpu", 2, ref).seconds(64, 100) == pytest.approx(64 * 100 / 3000.0)
    assert bench_rate_model(get_study("dqn"), "cuda", 1, ref) is None  # CPU rates say nothing of a GPU
    assert bench_rate_model(get_study("icl"), "cpu", 1, ref) is None
