"""The contract every registered study keeps (a new study is checked the day it is registered).

At each study's `tiny` config: an ensemble trains the same weights and metrics as each model alone; the forward
equals the per-example reference; a bad field is named before anything trains; every claim runs without ERROR at
valid configs drawn jointly over every field of the config; every declared figure is drawn; a diverged model
never counts toward a verdict. The claim contract: every claim is built from the kit's types (core.contract), a
theorem claim declares hypotheses and a computed control whose values are measured (not constant), its criterion
text is the bound's own rendering, the contract's constants are declared once in core, and cells that differ only
in a swept field share their world. The protocol: every study is trained by core (training= -> core.protocol), holds
no training glue, and has its memory measured by a dry run.
"""
from __future__ import annotations

import ast
import math
import typing
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from theorylab.cli import app
from theorylab.core.claims import ClaimContext, run_claims
from theorylab.core.config import ConfigError, field_bounds
from theorylab.core.contract import CONTRACT_CONSTANTS
from theorylab.core.ensemble import rng_for
from theorylab.core.memory import footprint
from theorylab.core.progress import QUIET
from theorylab.core.report import write_report
from theorylab.core.store import Store
from theorylab.core.study import get_study, study_names
from theorylab.core.sweep import result_cells

CPU = torch.device("cpu")
STUDIES = study_names()
pytestmark = pytest.mark.usefixtures("one_thread")


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


class _TinyRuns(dict):
    """Every study's claims at its tiny config, 2 seeds, run the first time a test asks for that study (a run of
    `-k icl` trains icl alone, not all fourteen)."""

    def __missing__(self, name: str):
        s = get_study(name)
        self[name] = run_claims(ClaimContext(s, "quick", 2, CPU, overrides=dict(s.tiny)))
        return self[name]


@pytest.fixture(scope="module")
def tiny_runs():
    return _TinyRuns()


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
def test_every_figure_is_readable(name, tiny_runs, tmp_path, monkeypatch):
    """Each figure the claims return, drawn from the same tiny runs: labelled axes, every criterion line and every
    series named in a legend, no legend over the data, no overlapping ticks, no x axis far past its data, a colour
    bar that says what it shows, and the seed spread drawn wherever a figure says it averages seeds
    (core.plots.figure_defects)."""
    from matplotlib.figure import Figure

    from theorylab.core.plots import figure_defects

    drawn: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: drawn.append(self))  # kept, not written
    s = get_study(name)
    defects = []
    for r in tiny_runs[name]:
        for fig_name, data in (r.row(name).get("figures") or {}).items():
            if fig_name in s.plots:
                s.plots[fig_name](data, tmp_path / f"{fig_name}.png")
                defects += [f"{fig_name}: {d}" for d in figure_defects(drawn[-1])]
    assert drawn, "no figure was drawn"
    assert defects == [], "\n".join(defects)


def field_values(cls, name: str, base, extra: tuple) -> st.SearchStrategy:
    """Valid values of one field near the tiny config (0.5x to 2x of a number, every choice of a Literal or bool),
    plus the study's declared variations: the whole validated space, kept cheap enough to train in a test."""
    ann = cls.model_fields[name].annotation
    lo, hi, lo_open, hi_open = field_bounds(cls, name)
    lo, hi = (-math.inf if lo is None else lo), (math.inf if hi is None else hi)
    near: st.SearchStrategy
    if ann is bool:
        near = st.booleans()
    elif typing.get_origin(ann) is typing.Literal:
        near = st.sampled_from(typing.get_args(ann))
    elif ann is int and isinstance(base, int):
        a, b = max(lo + lo_open, base // 2), min(hi - hi_open, 2 * base + 2)
        near = st.integers(int(a), int(b)) if a <= b else st.just(base)
    elif ann is float and isinstance(base, (int, float)):
        a, b = (base / 2, base * 2) if base > 0 else (base * 2, base / 2) if base < 0 else (-1.0, 1.0)
        a, b = max(lo, a), min(hi, b)
        near = (st.floats(a, b, exclude_min=lo_open and a == lo, exclude_max=hi_open and b == hi)
                if a < b else st.just(base))
    else:
        near = st.just(base)
    return st.one_of(st.just(base), near, *([st.sampled_from(extra)] if extra else []))


@pytest.mark.parametrize("name", STUDIES)
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_every_claim_runs_without_error_at_jointly_drawn_valid_configs(name, data):
    """Every field is drawn at once (not one at a time from a list): a crash at a valid combination such as
    M1 = 6 with M1_ood = 2 is found the day it appears."""
    s = get_study(name)
    base = s.config("quick", **s.tiny)
    cls = s.config_cls
    changes: dict = {}
    for f in sorted(cls.model_fields):
        if f == "seed":
            continue
        v = data.draw(field_values(cls, f, getattr(base, f), tuple(s.variations.get(f, ()))), label=f)
        if v == getattr(base, f):
            continue
        try:  # kept only if the config stays valid with every change kept so far (a random joint draw of all
            s.config("quick", **{**s.tiny, **changes, f: v})  # fields is mostly rejected by cross-field checks)
            changes[f] = v
        except ConfigError:
            pass  # refused up front, naming the field: the other half of the contract
    ctx = ClaimContext(s, "quick", 2, CPU, overrides={**s.tiny, **changes})
    errors = {r.claim.id: r.error for r in run_claims(ctx) if r.verdict == "ERROR"}
    assert not errors, f"at {changes}: {errors}"


# ---- the claim contract ----
@pytest.mark.parametrize("name", STUDIES)
def test_every_claim_is_built_from_the_kit(name):
    """measure + typed criterion (+ hypotheses and a control arm for a theorem), never a hand-built Outcome."""
    for c in get_study(name).claims:
        assert c.declared, f"{c.id}: built by hand (check=...), not from core.contract's types"
        if c.kind == "theorem":
            assert c.hypotheses and c.control is not None, c.id


class _NeedsTraining(Exception):
    pass


class _BeforeTraining(ClaimContext):
    """A claim context that trains and measures nothing: a hypothesis that reads a trained model stops here."""

    def trained(self, cfgs):
        raise _NeedsTraining

    def reference(self, ref):
        raise _NeedsTraining


@pytest.mark.parametrize("size", ["quick", "full"])
@pytest.mark.parametrize("name", STUDIES)
def test_the_default_configs_meet_every_hypothesis_checkable_before_training(name, size):
    """A default that breaks a theorem's hypothesis is a bug in the default: at each size's defaults, every
    hypothesis that reads only the configs holds (those that read a trained model are checked by the run)."""
    s = get_study(name)
    for c in s.claims:
        for h in c.hypotheses or ():
            try:
                why = h.check(_BeforeTraining(s, size, c.seeds or s.default_seeds.get(size, 5)))
            except _NeedsTraining:
                continue
            assert why is None, f"{name} {size} {c.id}: {h.text}: {why}"


@pytest.mark.parametrize("name", STUDIES)
def test_controls_are_measured_and_criteria_render_themselves(name, tiny_runs):
    for r in tiny_runs[name]:
        if r.outcome is None or not r.claim.declared:
            continue
        assert r.outcome.criterion == r.claim.criterion.text()
        c = r.outcome.control
        if r.claim.kind == "theorem":
            assert c is not None and len(c.values) == len(r.seeds), r.claim.id
            finite = [v for v in c.values if math.isfinite(v)]
            main = [v for v in r.outcome.values if math.isfinite(v)]
            # a literal would be one value everywhere: on every seed and equal to the claim's own arm
            assert not (len(set(finite)) <= 1 and set(finite) == set(main)), \
                f"{r.claim.id}: control values {c.values} equal the claim's {r.outcome.values} on every seed"


CLAIM_SOURCES = sorted((Path(__file__).parents[1] / "theorylab" / "studies").glob("*/*.py"))
# the training glue core.protocol owns: a study that imports one of these writes its own loop around its science
GLUE = {"theorylab.core.progress": {"Bars"}, "theorylab.core.study": {"group_result", "GroupResult"}}
# studies whose training is not one loss minimised by one loop, each with the reason in its train_group docstring
OWN_LOOP: dict[str, str] = {"retrieval": "nothing here minimises a loss"}


@pytest.mark.parametrize("name", STUDIES)
def test_a_study_is_trained_by_the_protocol(name):
    """A study gives training(cfgs, rng, device) -> Training; core runs the loop, progress, divergence and records.
    Memory is measured by a dry run (core.memory), so no study writes a bytes-per-model formula."""
    s = get_study(name)
    if name in OWN_LOOP:
        assert s.training is None and OWN_LOOP[name] in (s.train_group.__doc__ or ""), \
            f"{name} keeps its own train_group: its docstring must say why ({OWN_LOOP[name]!r})"
    else:
        assert s.training is not None, f"{name} must give training= (core.protocol), not its own train_group"
    fp = footprint(s, s.config("quick", **s.tiny))
    assert fp.per_model > 0


@pytest.mark.parametrize("path", CLAIM_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_study_holds_no_training_glue(path):
    """No study module imports the glue (progress bars, per-model records, its own random streams), writes a
    memory formula, or hand-writes the per-model row gather (core.batch.gather_rows / Examples)."""
    tree = ast.parse(path.read_text())
    where = f"{path.parent.name}/{path.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in GLUE and path.parent.name not in OWN_LOOP:
            used = {a.name for a in node.names} & GLUE[node.module]
            assert not used, f"{where} imports {used} from {node.module}: core.protocol does that"
        if isinstance(node, ast.FunctionDef) and node.name == "training":  # its streams come from the protocol
            calls = {c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
            assert "rng_for" not in calls, f"{where}: training() makes its own random streams; use the rng it gets"
        if isinstance(node, ast.FunctionDef):
            assert node.name != "bytes_per_model", f"{where} writes a memory formula: core.memory measures it"
    text = path.read_text()
    assert "torch.gather(t, 1, idx.reshape" not in text, f"{where} hand-writes the row gather: use core.batch"


@pytest.mark.parametrize("path", CLAIM_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_contract_constants_are_declared_once_in_core(path):
    """A study uses core.contract's O_EPS, CLOSE_GAP, ... and never redeclares (or re-tunes) its own."""
    banned = set(CONTRACT_CONSTANTS) | {"EPS_MULT"}
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        assert not names & banned, f"{path.parent.name}/{path.name} declares {names & banned}"


@pytest.mark.parametrize("path", CLAIM_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_random_streams_are_keyed_by_the_world(path):
    """Every random stream derives from StudyConfig.world_hash (through core.ensemble.rng_for), so cells that
    differ only in a swept field share their draws; keying one by the full config hash would redraw the world."""
    text = path.read_text()
    assert "key_from_hash(" not in text or "world_hash" in text, \
        f"{path.parent.name}/{path.name} keys a random stream by something other than world_hash"


@pytest.mark.parametrize("name", STUDIES)
def test_cells_differing_only_in_a_swept_field_share_their_world(name):
    s = get_study(name)
    base = s.config("quick", **s.tiny)
    for f in sorted(s.config_cls.swept_fields):
        assert f in s.config_cls.model_fields and f != "seed", f
        other = next((v for v in (*s.variations.get(f, ()), ) if v != getattr(base, f)), None)
        if other is None:
            continue
        try:
            moved = base.replace(**{f: other})
        except ConfigError:
            continue
        assert moved.world_hash == base.world_hash and moved.hash != base.hash, f
        a, b = rng_for([base], CPU), rng_for([moved], CPU)
        assert torch.equal(a.normal((8,), "teacher"), b.normal((8,), "teacher")), f


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
