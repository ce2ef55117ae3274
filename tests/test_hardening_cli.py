"""Issue 24 (second hardening pass), through typer's real argument parsing: each hostile input is one line
`error: ...`, exit 2, within seconds, and no file is written or changed."""
import hashlib
import os
import sqlite3
import time

import pytest
import yaml
from typer.testing import CliRunner

from theorylab.cli import app

runner = CliRunner()


def snapshot(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def assert_clean(argv, tmp_path, seconds=20.0):
    before = snapshot(tmp_path)
    t = time.time()
    r = runner.invoke(app, argv)
    took = time.time() - t
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0], r.output
    assert len(lines[0]) < 400, lines[0]
    assert snapshot(tmp_path) == before, "a refused command wrote or changed a file"
    assert took < seconds, f"took {took:.1f} s"
    return lines[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("st") / "st.sqlite"
    r = runner.invoke(app, ["sweep", "icl", "--grid", "seed=0..1", "--set", "steps=5", "--set", "n_test=10",
                            "--store", str(path), "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return path


def test_export_never_writes_over_its_store(store):
    before = snapshot(store.parent)
    r = runner.invoke(app, ["export", "--store", str(store), "--out", str(store), "--format", "csv"])
    assert r.exit_code == 2 and "destroy" in r.output
    assert snapshot(store.parent) == before


def test_export_writes_atomically(store, tmp_path):
    r = runner.invoke(app, ["export", "--store", str(store), "--out", str(tmp_path / "o.csv"), "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["o.csv"]  # no temporary file left


@pytest.mark.parametrize("command", [["export", "--out", "x.csv"], ["report", "icl"], ["sweep", "icl", "--dry-run"],
                                     ["sweep", "icl", "--set", "steps=5", "--quiet"]])
def test_a_foreign_sqlite_file_is_never_changed(tmp_path, command):
    db = tmp_path / "foreign.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x)")
    argv = [*command, "--store", str(db)]
    argv = [a if a != "x.csv" else str(tmp_path / "x.csv") for a in argv]
    assert "not a theorylab store" in assert_clean(argv, tmp_path)


def test_a_fifo_store_or_merge_config_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_clean(["report", "icl", "--store", str(fifo)], tmp_path)
    assert_clean(["sweep", "icl", "--dry-run", "--store", str(fifo)], tmp_path)
    assert_clean(["merge", str(fifo), str(tmp_path / "out")], tmp_path)


def test_run_out_an_existing_file_is_refused_before_training(tmp_path):
    (tmp_path / "f").write_text("x")
    assert_clean(["run", "icl", "--out", str(tmp_path / "f"), "--store", str(tmp_path / "s.sqlite")], tmp_path)


@pytest.mark.parametrize("argv", [
    ["run", "icl", "--seeds", "1000000000"],
    ["check", "icl", "--seeds", str(2**63)],
    ["seeds", "icl", "--candidates", "100000000"],
    ["seeds", "icl", "--candidates", "3,3"],
    ["bench", "icl", "--models", "100000000"],
    ["bench", "icl", "--naive-models", "0"],
    ["sweep", "retrieval", "--set", "steps=10000000", "--set", "B=1048576", "--dry-run"],
    ["sweep", "icl", "--dry-run", "--set", "ks=[" + ",".join(["1"] * 100_000) + "]"],
    ["sweep", "icl", "--dry-run", "--set", "train_task_offsets=[&a [1,1], *a, *a]"],
], ids=lambda a: " ".join(a)[:50])
def test_work_is_bounded_before_it_starts(argv, tmp_path):
    store = [] if argv[0] == "bench" else ["--store", str(tmp_path / "s.sqlite")]
    assert_clean([*argv, *store], tmp_path, seconds=10)


def test_sweep_dry_run_of_a_billion_seeds_answers_at_once(tmp_path):
    t = time.time()
    r = runner.invoke(app, ["sweep", "icl", "--seeds", "1000000000", "--dry-run", "--store", str(tmp_path / "s.sqlite")])
    assert r.exit_code == 0 and "would be refused" in r.output and time.time() - t < 10


@pytest.mark.parametrize("study,sets", [
    ("icl", ["seed=true"]), ("dqn", ["lr=true"]), ("icl", ["seed=1", "seed=2"]),
    ("dqn", ["radii=[1,.nan]"]), ("dqn", ["radii=[-1]"]), ("vit", ["grid_alpha=[.inf]"]), ("vit", ["grid_N=[]"]),
    ("group_imbalance", ["n_grid=[-5]"]), ("icl_gpt2", ["train_task_offsets=[]"]), ("retrieval", ["ks=[1,.nan]"]),
], ids=str)
def test_silently_accepted_values_are_refused(study, sets, tmp_path):
    argv = ["sweep", study, "--dry-run", "--store", str(tmp_path / "s.sqlite")]
    for s in sets:
        argv += ["--set", s]
    assert_clean(argv, tmp_path)


@pytest.mark.parametrize("grid", ["seed=\u0661..\u0663", "lr=\u0661", "seed=1,1"])
def test_grid_non_ascii_digits_and_duplicates(grid, tmp_path):
    assert_clean(["sweep", "icl", "--dry-run", "--grid", grid, "--store", str(tmp_path / "s.sqlite")], tmp_path)


def _merge_yaml(tmp_path, text):
    (tmp_path / "m.yaml").write_text(text)
    return ["merge", str(tmp_path / "m.yaml"), str(tmp_path / "out"), "--no-progress"]


@pytest.mark.parametrize("body", [
    "merge_method: linear\nmerge_method: ties\nmodels: [{model: a}]\n",
    "merge_method: linear\nmodels: [{model: a, parameters: {weight: true}}]\n",
    "merge_method: linear\nparameters: {normalize: true}\nmodels: [{model: a, parameters: {weight: 1}}, {model: b, parameters: {weight: -1}}]\n",
    "merge_method: ties\nbase_model: a\nparameters: {density: 0}\nmodels: [{model: b}]\n",
    "merge_method: sce\nbase_model: a\nparameters: {select_topk: 0}\nmodels: [{model: b}]\n",
    "merge_method: task_arithmetic\nbase_model: a\nparameters: {lwptv: {ratio: 0.2, threshold: 0.1}}\nmodels: [{model: b}]\n",
], ids=["duplicate key", "weight true", "normalize by 0", "density 0", "select_topk 0", "lwptv ratio+threshold"])
def test_merge_configs_no_merge_means(body, tmp_path):
    line = assert_clean(_merge_yaml(tmp_path, body), tmp_path)
    assert "not found" not in line  # refused for what it says, before any model is looked up


@pytest.mark.parametrize("extra", [["--tolerance", "nan"], ["--tolerance", "-1"]])
def test_relate_tolerance(extra, tmp_path):
    assert "--tolerance" in assert_clean(["relate", "a", "b", "--base", "c", *extra], tmp_path)


@pytest.mark.parametrize("extra", [["--include", "("], ["--rank", "1000000000"], ["--energy", "nan"]])
def test_extract_lora_options_checked_up_front(extra, tmp_path):
    assert extra[0] in assert_clean(["extract-lora", "a", str(tmp_path / "o"), "--base", "c", *extra], tmp_path)


def _checkpoint(folder, **tensors):
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    return str(folder)


@pytest.fixture
def relate_models(tmp_path):
    """A tiny two-layer 'model' (safetensors only: relate's cosines need no config), its base and edits."""
    import torch

    g = torch.Generator().manual_seed(0)
    base = {f"h.{i}.w": torch.randn(4, 3, generator=g) for i in range(2)}
    shifted = lambda d: {k: v + d * torch.randn(v.shape, generator=g) for k, v in base.items()}
    nan = shifted(0.1)
    nan["h.1.w"][2, 1] = float("nan")
    inf = shifted(0.1)
    inf["h.0.w"][0, 0] = float("inf")
    paths = {name: _checkpoint(tmp_path / name, **sd) for name, sd in
             (("base", base), ("same", {k: v.clone() for k, v in base.items()}), ("a", shifted(0.1)),
              ("nan", nan), ("inf", inf))}
    return tmp_path, paths


@pytest.mark.parametrize("a, b, expect", [
    ("same", "a", "MODEL_A - BASE is zero"), ("a", "same", "MODEL_B - BASE is zero"),
    ("nan", "a", "MODEL_A: tensor 'h.1.w' has NaN or infinite"), ("a", "inf", "MODEL_B: tensor 'h.0.w' has NaN"),
], ids=["A equals base", "B equals base", "NaN in A", "inf in B"])
def test_relate_refuses_a_meaningless_relation(relate_models, a, b, expect):
    tmp_path, p = relate_models
    line = assert_clean(["relate", p[a], p[b], "--base", p["base"]], tmp_path)
    assert expect in line and not any(w in line for w in ("aligned", "irrelevant", "contradictory"))


def test_relate_refuses_a_base_with_nan(relate_models):
    tmp_path, p = relate_models
    assert "BASE: tensor 'h.1.w'" in assert_clean(["relate", p["a"], p["a"], "--base", p["nan"]], tmp_path)


def test_relate_still_relates_a_real_pair(relate_models):
    _, p = relate_models
    r = runner.invoke(app, ["relate", p["a"], p["a"], "--base", p["base"]])
    assert r.exit_code == 0 and "aligned (alpha = +1.000)" in r.output, r.output
