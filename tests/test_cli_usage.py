"""Usage errors through typer's real argument parsing (issue 24/28): one line `error: ...`, exit code 2, never
"internal error". typer >= 0.2x raises its bundled click's exceptions, which the click package's never match."""
import pytest
from typer.testing import CliRunner

from theorylab.cli import app

runner = CliRunner()

USAGE = [
    ["run", "icl", "--seeds", "abc"],
    ["run"],
    ["merge"],
    ["relate", "A", "B"],
    ["run", "icl", "--set", "a=1", "b=2"],
    ["check", "icl", "--claim", "x", "y"],
    ["extract-lora", "a", "b", "--base", "c", "--rank", "two"],
    ["sweep", "icl", "--seeds", "1.5"],
    ["bench", "icl", "--models", "many"],
    ["relate", "A", "B", "--base", "C", "--tolerance", "small"],
    ["--bogus"],
    ["nosuchcommand"],
    ["run", "icl", "--no-such-option"],
]


@pytest.mark.parametrize("argv", USAGE, ids=" ".join)
def test_usage_error_is_one_line_exit_2(argv):
    r = runner.invoke(app, argv)
    assert r.exit_code == 2, r.output
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "internal error" not in r.output and "Traceback" not in r.output


def test_help_still_shows_and_bare_command_shows_help():
    assert runner.invoke(app, ["run", "--help"]).exit_code == 0
    r = runner.invoke(app, [])
    assert "Usage" in r.output and "error:" not in r.output
