"""The benchmark runs and reports what BENCHMARKS.md quotes (tiny sizes: a smoke test, not a timing)."""
import json

import pytest
import torch
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.bench import run_bench
from theorylab.core.study import get_study
from theorylab.studies.icl.bench import icl_train_seconds

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = {"ensemble_model_steps_per_s", "naive_model_steps_per_s", "ratio", "device", "models"}


def test_run_bench_reports_rates_and_ratio(monkeypatch):
    monkeypatch.setenv("THEORYLAB_COMPILE", "0")  # the bench's mechanics; the compiled sampler has its own test
    res = run_bench(get_study("icl"), torch.device("cpu"), models=4, steps=3, naive_models=2, repeats=1)
    assert KEYS <= set(res) and res["models"] == 4 and res["naive_models_timed"] == 2
    assert res["ensemble_model_steps_per_s"] > 0 and res["naive_model_steps_per_s"] > 0
    assert res["ratio"] == pytest.approx(res["ensemble_model_steps_per_s"] / res["naive_model_steps_per_s"])
    assert res["device"].startswith("cpu")


def test_bench_cli_json(monkeypatch):
    monkeypatch.setenv("THEORYLAB_COMPILE", "0")
    res = CliRunner().invoke(app, ["bench", "--device", "cpu", "--models", "2", "--steps", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert KEYS <= set(json.loads(res.output.strip().splitlines()[-1]))
    res = CliRunner().invoke(app, ["bench", "--device", "cpu", "--models", "0"])
    assert res.exit_code == 2 and "--models" in res.output
    res = CliRunner().invoke(app, ["bench", "nosuchstudy", "--device", "cpu"])
    assert res.exit_code == 2 and "icl" in res.output


def test_bench_trains_the_reference_config():
    from theorylab.studies.icl.config import ICLConfig

    cfg = ICLConfig(B=64, l_tr=20, d_X=30, d_Y=10, m=64)
    assert cfg.d == 40 and icl_train_seconds([cfg], torch.device("cpu"), 1, compiled_sampler=False) > 0


def test_a_training_time_lost_in_the_noise_is_reported_unresolved_not_as_a_huge_rate():
    import dataclasses
    import time as _time

    from theorylab.core.study import GroupResult

    real = get_study("dqn")

    done: dict[int, GroupResult] = {}

    def evaluation_bound(cfgs, device, bars) -> GroupResult:  # the same 50 ms whatever the number of steps
        if len(cfgs) not in done:
            done[len(cfgs)] = real.train_group([c.replace(steps=1) for c in cfgs], device, bars)
        _time.sleep(0.05)
        return done[len(cfgs)]

    study = dataclasses.replace(real, train_group=evaluation_bound, bench=None)
    res = run_bench(study, torch.device("cpu"), models=2, steps=3, naive_models=1, repeats=1)
    assert res["ensemble_model_steps_per_s"] != res["ensemble_model_steps_per_s"]  # NaN, not 1e9 model-steps/s
    assert res["ratio"] != res["ratio"]


def test_a_study_without_a_peer_is_named_in_one_line_before_any_work(monkeypatch, tmp_path):
    import theorylab.core.bench as bench

    monkeypatch.setattr(bench, "PEERS", tmp_path)  # no peer files at all
    res = CliRunner().invoke(app, ["bench", "dqn", "--device", "cpu", "--models", "2", "--steps", "2", "--peer"])
    assert res.exit_code == 2 and "no peer for 'dqn'" in res.output and "Traceback" not in res.output


def test_a_peer_is_timed_in_the_same_run_and_compared(monkeypatch, tmp_path):
    import theorylab.core.bench as bench

    (tmp_path / "dqn.py").write_text(
        "import time\nNAME = 'sleeper'\nbuilt = []\n"
        "def build(cfgs, steps):\n    built.append((len(cfgs), steps))\n    return time.sleep, (0.05,)\n"
        "def wait(x):\n    return x\n")
    monkeypatch.setattr(bench, "PEERS", tmp_path)
    res = run_bench(get_study("dqn"), torch.device("cpu"), models=2, steps=2, naive_models=1, repeats=2, peer=True)
    assert res["peer"] == "sleeper" and res["peer_model_steps_per_s"] == pytest.approx(2 * 2 / 0.05, rel=0.5)
    assert res["ratio_to_peer"] == pytest.approx(res["ensemble_model_steps_per_s"] / res["peer_model_steps_per_s"])


def test_a_peer_is_built_once_per_ensemble_size_step_count_and_config(monkeypatch, tmp_path):
    import theorylab.core.bench as bench

    (tmp_path / "dqn.py").write_text("NAME = 'counter'\nbuilt = []\nruns = []\n"
                                     "def build(cfgs, steps):\n    built.append((len(cfgs), steps))\n"
                                     "    return runs.append, (steps,)\n"
                                     "def wait(x):\n    return x\n")
    monkeypatch.setattr(bench, "PEERS", tmp_path)
    peer = bench.load_peer("dqn")
    cfgs = get_study("dqn").seed_configs("quick", 2)
    for steps in (3, 3, 4):
        assert bench.peer_seconds(peer, cfgs, steps) >= 0
    assert peer.built == [(2, 3), (2, 4)] and peer.runs == [3, 3, 3, 4, 4]  # a first (compiling) run per build


def test_every_protocol_study_is_benchmarked_on_its_bare_training_step():
    from theorylab.core.bench import on_protocol, train_seconds
    from theorylab.core.study import study_names

    for name in study_names():
        s = get_study(name)
        if not on_protocol(s) or s.bench is not None:
            continue
        base = s.config("quick", **{**s.tiny, **s.bench_config})
        seconds, model_steps = train_seconds(s, [base.replace(seed=i) for i in range(2)], torch.device("cpu"), 2)
        assert seconds > 0 and model_steps == 4, name


def test_the_step_footprint_extrapolates_the_bare_steps_measured_peak():
    """Measured at 2 and 4 models, the bare step's memory predicts what 8 models hold at the step's peak."""
    import gc

    from theorylab.core.bench import protocol_train_seconds, step_footprint
    from theorylab.core.memory import LiveBytes

    s = get_study("graph")
    base = s.config("quick", **s.tiny)
    fp = step_footprint(s, base, (2, 4))
    meter = LiveBytes()
    gc.collect()
    gc.disable()
    try:
        with meter:
            protocol_train_seconds(s, [base.replace(seed=i) for i in range(8)], torch.device("cpu"), 2)
    finally:
        gc.enable()
    assert fp.per_model > 0
    assert abs(fp.bytes_for(8) - meter.peak) <= 0.1 * meter.peak
