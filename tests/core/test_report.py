"""write_report writes every file atomically: a full disk leaves no half-written PNG and no new folder."""
import errno

import pytest

from theorylab.core.report import write_report
from theorylab.core.study import get_study

ROW = {"claim": "c", "theorem": "T", "kind": "figure", "statement": "", "verdict": "agrees", "summary": "s",
       "seconds": 0.0, "numbers": {}, "figures": {"fig": {}}}


def _study(plot):
    s = get_study("icl")
    s.plots = {"fig": plot}
    return s


def test_a_report_is_written_with_its_figures(tmp_path):
    def plot(data, path):
        path.write_bytes(b"\x89PNG")
        assert path.suffix == ".png"  # matplotlib reads the format from the name
    out = tmp_path / "new"
    write_report(_study(plot), [ROW], out, {"size": "tiny", "seeds": 1, "machine": "test"})
    assert sorted(p.name for p in out.iterdir()) == ["fig.png", "report.md"]


def test_a_full_disk_leaves_nothing_and_names_the_file(tmp_path):
    def plot(data, path):
        path.write_bytes(b"\x89P")  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    out = tmp_path / "new"
    with pytest.raises(OSError, match="fig.png"):
        write_report(_study(plot), [ROW], out, {"size": "tiny", "seeds": 1, "machine": "test"})
    assert not out.exists()


def test_an_existing_folder_keeps_its_files(tmp_path):
    (tmp_path / "keep.txt").write_text("x")

    def plot(data, path):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError):
        write_report(_study(plot), [ROW], tmp_path, {"size": "tiny", "seeds": 1, "machine": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
