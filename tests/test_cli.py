"""The command line as a user meets it (typer's runner, in-process)."""
import json
import re

from typer.testing import CliRunner

from theorylab.cli import app

runner = CliRunner()
TINY = ["--set", "steps=40", "--set", "n_test=100", "--seeds", "2", "--device", "cpu"]


def test_list_shows_studies_and_claims():
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "icl" in r.output and "thm3_pruning" in r.output


def test_bad_input_fails_early_naming_the_field(tmp_path):
    store = str(tmp_path / "s.sqlite")
    r = runner.invoke(app, ["run", "icl", "--set", "alpha=2", "--store", store])
    assert r.exit_code == 2 and "alpha" in r.output and "(0, 1]" in r.output
    r = runner.invoke(app, ["run", "icl", "--set", "nope=1", "--store", store])
    assert r.exit_code == 2 and "nope" in r.output
    r = runner.invoke(app, ["run", "icl", "--size", "huge", "--store", store])
    assert r.exit_code == 2 and "quick" in r.output
    r = runner.invoke(app, ["run", "nosuchstudy", "--store", store])
    assert r.exit_code == 2 and "icl" in r.output
    assert not (tmp_path / "icl").exists()  # nothing trained, nothing written


def test_run_writes_report_and_figures_then_report_redraws_from_the_store(tmp_path):
    store = tmp_path / "s.sqlite"
    r = runner.invoke(app, ["run", "icl", *TINY, "--store", str(store)])
    assert r.exit_code == 0, r.output
    path = re.search(r"report: (\S+report\.md)", r.output.replace("\n", "")).group(1)
    folder = tmp_path / "icl"
    reports = list(folder.glob("*/report.md"))
    assert len(reports) == 1 and str(reports[0]).endswith(path.split("/")[-2] + "/report.md")
    assert {p.name for p in reports[0].parent.glob("*.png")} >= {"attention_concentration.png", "pruning.png"}
    r = runner.invoke(app, ["report", "icl", "--store", str(store), "--out", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "again" / "report.md").read_text().count("| thm") >= 3


def test_check_exit_codes_follow_the_contract(tmp_path):
    """0: all hold; 1: some fail; 3: none fails but some inconclusive; 2: bad input (nothing trains)."""
    store = ["--store", str(tmp_path / "s.sqlite")]
    r = runner.invoke(app, ["check", "icl", *TINY, "--claim", "prop1_attention", *store])
    assert r.exit_code == 1 and "fails" in r.output  # 40 SGD steps concentrate no attention
    # untrained-like models: the control (the untrained model) passes thm1's test too, so it shows nothing
    r = runner.invoke(app, ["check", "icl", *TINY, "--claim", "thm1_in_domain", *store])
    assert r.exit_code == 3 and "inconclusive" in r.output
    r = runner.invoke(app, ["check", "icl", *TINY, "--claim", "nope", *store])
    assert r.exit_code == 2 and "nope" in r.output and "thm1_in_domain" in r.output


def test_check_json_prints_the_contract_fields(tmp_path):
    r = runner.invoke(app, ["check", "icl", *TINY, "--claim", "prop1_attention", "--claim", "fig_pruning", "--json",
                            "--store", str(tmp_path / "s.sqlite")])
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert [x["claim"] for x in rows] == ["prop1_attention", "fig_pruning"]
    for x in rows:
        assert {"study", "claim", "theorem", "kind", "verdict", "seeds", "numbers", "interval"} <= set(x)
        assert x["seeds"] == 2 and x["study"] == "icl"
    assert rows[0]["kind"] == "mechanism" and rows[1]["kind"] == "figure"
    assert rows[1]["verdict"] in ("agrees", "differs", "inconclusive")


def test_one_error_path_internal_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch):
    import sys

    cli_app = sys.modules["theorylab.cli.app"]  # (the package attribute `app` is the Typer object)

    def boom():
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_app, "study_names", boom)
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0
    assert r.output.startswith("error: internal error (RuntimeError: boom)") and "--debug" in r.output
    r = runner.invoke(app, ["--debug", "list"])
    assert isinstance(r.exception, RuntimeError)


def test_a_file_error_is_a_user_error_naming_the_file(tmp_path):
    (tmp_path / "s.sqlite").write_text("not sqlite")
    r = runner.invoke(app, ["report", "icl", "--store", str(tmp_path / "s.sqlite")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "s.sqlite" in r.output
