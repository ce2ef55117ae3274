"""The results store: one embedded SQLite file (WAL mode).

A cell (one config hash) is written in one transaction when its ensemble group finishes, together
with its final weights, so a killed run resumes at the next unfinished group and never holds a
half-written or duplicated cell (the hash is the primary key). Several processes may write to one
store: SQLite serialises the short write transactions and readers never block writers in WAL mode.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

DEFAULT_STORE = Path("theorylab-runs") / "store.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    config_hash TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    group_key TEXT NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    curves TEXT NOT NULL,
    status TEXT NOT NULL,
    seconds REAL,
    device TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_study ON cells(study);
CREATE TABLE IF NOT EXISTS params (
    config_hash TEXT PRIMARY KEY,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study TEXT NOT NULL,
    claim TEXT NOT NULL,
    size TEXT NOT NULL,
    seeds INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    summary TEXT NOT NULL,
    numbers TEXT NOT NULL,
    figures TEXT NOT NULL,
    seconds REAL,
    created REAL NOT NULL
);
"""


@dataclass
class Cell:
    config_hash: str
    study: str
    group_key: str
    config: dict
    metrics: dict
    curves: dict
    status: str = "done"
    seconds: float = 0.0
    device: str = "cpu"
    params: dict[str, torch.Tensor] | None = None


class Store:
    def __init__(self, path: str | Path = DEFAULT_STORE):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=120.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=120000")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    # ----------------------------------------------------------------- cells
    def done(self, hashes: Iterable[str]) -> set[str]:
        hashes = list(hashes)
        found: set[str] = set()
        with self._connect() as con:
            for i in range(0, len(hashes), 900):
                chunk = hashes[i : i + 900]
                q = f"SELECT config_hash FROM cells WHERE config_hash IN ({','.join('?' * len(chunk))})"
                found.update(r[0] for r in con.execute(q, chunk))
        return found

    def put_cells(self, cells: Sequence[Cell]) -> int:
        """Writes cells (and their weights) in one transaction; existing hashes are left alone."""
        now = time.time()
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            written = 0
            for c in cells:
                cur = con.execute(
                    "INSERT OR IGNORE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (c.config_hash, c.study, c.group_key, json.dumps(c.config), json.dumps(c.metrics),
                     json.dumps(c.curves), c.status, c.seconds, c.device, now),
                )
                if cur.rowcount and c.params is not None:
                    blob = st_save({k: v.detach().cpu().contiguous() for k, v in c.params.items()})
                    con.execute("INSERT OR REPLACE INTO params VALUES (?,?)", (c.config_hash, blob))
                written += cur.rowcount
            con.execute("COMMIT")
            return written
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def get_cells(self, hashes: Sequence[str], with_params: bool = False) -> dict[str, Cell]:
        out: dict[str, Cell] = {}
        with self._connect() as con:
            for i in range(0, len(hashes), 900):
                chunk = list(hashes[i : i + 900])
                q = f"SELECT * FROM cells WHERE config_hash IN ({','.join('?' * len(chunk))})"
                for r in con.execute(q, chunk):
                    out[r[0]] = Cell(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), json.loads(r[5]),
                                     r[6], r[7], r[8])
                if with_params:
                    q = f"SELECT config_hash, blob FROM params WHERE config_hash IN ({','.join('?' * len(chunk))})"
                    for h, blob in con.execute(q, chunk):
                        out[h].params = st_load(blob)
        return out

    def cells_df(self, study: str | None = None) -> pd.DataFrame:
        """One row per cell: config_hash, study, status, the config fields, and final metrics."""
        q = "SELECT config_hash, study, config, metrics, status, seconds, device, created FROM cells"
        args: tuple = ()
        if study:
            q += " WHERE study = ?"
            args = (study,)
        rows = []
        with self._connect() as con:
            for h, st, cfg, met, status, sec, dev, created in con.execute(q, args):
                metrics = {k: v for k, v in json.loads(met).items() if not isinstance(v, (list, dict))}
                rows.append({"config_hash": h, "study": st, "status": status, "seconds": sec, "device": dev,
                             "created": created, **json.loads(cfg), **metrics})
        return pd.DataFrame(rows)

    def count(self, study: str | None = None) -> int:
        with self._connect() as con:
            if study:
                return con.execute("SELECT COUNT(*) FROM cells WHERE study=?", (study,)).fetchone()[0]
            return con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]

    # ---------------------------------------------------------------- claims
    def put_claim(self, study: str, claim: str, size: str, seeds: int, passed: bool, verdict: str,
                  summary: str, numbers: dict, figures: dict, seconds: float) -> None:
        with self._connect() as con:
            con.execute(
                "INSERT INTO claims (study, claim, size, seeds, passed, verdict, summary, numbers, figures,"
                " seconds, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (study, claim, size, seeds, int(passed), verdict, summary, json.dumps(numbers),
                 json.dumps(figures), seconds, time.time()),
            )

    def latest_claims(self, study: str, size: str | None = None) -> list[dict]:
        """The newest stored result of each claim of a study (optionally of one size)."""
        q = "SELECT * FROM claims WHERE study = ?" + (" AND size = ?" if size else "") + " ORDER BY id"
        args = (study, size) if size else (study,)
        latest: dict[str, dict] = {}
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            for r in con.execute(q, args):
                d = dict(r)
                d["numbers"], d["figures"] = json.loads(d["numbers"]), json.loads(d["figures"])
                latest[d["claim"]] = d
        return list(latest.values())
