"""A store that cannot be used is one clear StoreError naming the file; readers never create a store; a store
lost while a sweep runs stops the sweep without re-creating it."""
import os
import sqlite3

import pytest
import torch

from theorylab.core.backends import LocalBackend
from theorylab.core.store import Store, StoreError
from theorylab.core.study import get_study
from theorylab.core.sweep import sweep


def test_a_folder_a_path_under_a_file_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "text.sqlite").write_text("hello, not a database")
    (tmp_path / "trunc.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x01" * 40)
    other = sqlite3.connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE cells (a INTEGER)")
    other.commit()
    other.close()
    cases = {"adir": "is a folder", "afile/s.sqlite": "is a file, not a folder", "text.sqlite": "not an SQLite",
             "trunc.sqlite": "trunc.sqlite", "other.sqlite": "another shape"}
    for name, words in cases.items():
        with pytest.raises(StoreError, match=words):
            Store(tmp_path / name)


def test_readers_never_create_a_store_or_its_folders(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "typo" / "store.sqlite", create=False)
    assert not (tmp_path / "typo").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files")
def test_a_read_only_store_is_readable_but_refused_for_writing(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path)
    path.chmod(0o444)
    with pytest.raises(StoreError, match="read-only"):
        Store(path)
    assert Store(path, create=False).count() == 0


def test_corrupt_claim_json_is_a_clear_error(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    st.put_claim("icl", "thm1_in_domain", "quick", 2, True, "holds", "ok", {"a": 1}, {}, 1.0)
    with sqlite3.connect(tmp_path / "s.sqlite") as con:
        con.execute("UPDATE claims SET numbers = '{broken'")
    with pytest.raises(StoreError, match="invalid JSON"):
        st.latest_claims("icl")


class DeletesTheStoreAfterOneChunk(LocalBackend):
    def __init__(self, path):
        super().__init__(torch.device("cpu"))
        self.path = path

    def map(self, study, chunks, bars):
        for i, (chunk, res) in enumerate(super().map(study, chunks, bars)):
            if i == 1:
                for suffix in ("", "-wal", "-shm"):
                    (self.path.parent / (self.path.name + suffix)).unlink(missing_ok=True)
            yield chunk, res


def test_a_store_deleted_mid_sweep_stops_it_and_is_not_recreated(tmp_path):
    path = tmp_path / "s.sqlite"
    study = get_study("icl")
    cfgs = study.seed_configs("quick", 3, **study.tiny)
    with pytest.raises(StoreError, match="gone.*1 cells it wrote before"):
        sweep(study, cfgs, Store(path), DeletesTheStoreAfterOneChunk(path), max_models=1)
    assert not path.exists()
