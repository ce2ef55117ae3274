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


def test_every_study_gets_its_training_curves_drawn(tmp_path):
    """The main arm's curves become training_curves.png without any study code; curves with no x axis draw nothing."""
    curves = [{"step": [0, 10, 20], "loss": [1.0, 0.5, 0.1 * s], "error": [0.5, 0.2, 0.0]} for s in (1, 2)]
    out = tmp_path / "a"
    path = write_report(_study(lambda d, p: p.write_bytes(b"\x89PNG")), [ROW], out,
                        {"size": "tiny", "seeds": 2, "machine": "test"}, curves)
    assert (out / "training_curves.png").stat().st_size > 1000
    assert "training_curves.png" in path.read_text()
    out = tmp_path / "b"
    write_report(_study(lambda d, p: p.write_bytes(b"\x89PNG")), [ROW], out, {"size": "tiny", "seeds": 1, "machine": "t"},
                 [{"loss": [1.0, 0.5]}])
    assert not (out / "training_curves.png").exists()
