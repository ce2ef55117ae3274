"""install.sh says what it installs, step by step with elapsed time, and leaves pip's own progress visible.
Run against a stand-in python that records its arguments (nothing is installed, no network)."""
import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "{log}"
case "$*" in
  *"import torch"*) {torch} ;;
  *sys.prefix*) echo /fake/venv ;;
esac
exit 0
"""


def _install(tmp_path, torch_installed: bool) -> tuple[str, list[str]]:
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    torch = "echo 2.13.0; exit 0" if torch_installed else "exit 1"
    fake.write_text(FAKE_PYTHON.format(log=log, torch=torch))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    res = subprocess.run(["bash", str(ROOT / "install.sh")], env={**os.environ, "PYTHON": str(fake)},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout, log.read_text().splitlines()


def test_every_step_is_announced_and_timed(tmp_path):
    shown, calls = _install(tmp_path, torch_installed=False)
    for n in (1, 2, 3):
        assert f"==> [{n}/3] " in shown and f"==> [{n}/3] done in " in shown, shown
    assert "torch==2.13.0" in shown and "pytest" in shown and "/fake/venv" in shown
    pips = [c for c in calls if c.startswith("-m pip install")]
    assert len(pips) == 3 and "torch==2.13.0" in pips[0] and pips[-1].endswith('-e .[test]')
    assert not any(" -q" in c or "--quiet" in c for c in pips)  # pip's own progress stays visible


def test_an_installed_torch_is_kept_and_said(tmp_path):
    shown, calls = _install(tmp_path, torch_installed=True)
    assert "[1/3] torch 2.13.0 already installed: kept" in shown
    assert not any("torch==" in c for c in calls)
