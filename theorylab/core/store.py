"""The results store: one embedded SQLite file (WAL mode).

A cell (one config hash) is written in one transaction when its ensemble group finishes, together
with its final weights, so a killed run resumes at the next unfinished group and never holds a
half-written or duplicated cell (the hash is the primary key). Several processes may write to one
store: SQLite serialises the short write transactions and readers never block writers in WAL mode.
`Store(":memory:")` is a private in-process store (one shared connection), for throwaway runs.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
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
        self.memory = str(path) == ":memory:"
        self.path = Path(path)
        # an in-memory database lives as long as its connection, so it keeps exactly one
        self._memory_con = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False) if self.memory else None
        if not self.memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._con() as con:
            if not self.memory:
                con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        if self._memory_con is not None:
            return self._memory_con
        con = sqlite3.connect(self.path, timeout=120.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=120000")  # concurrent sweeps wait for each other's commits
        con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process never loses a commit
        return con

    @contextmanager
    def _con(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        finally:
            if con is not self._memory_con:
                con.close()

    def _in_chunks(self, con, query: str, keys: Sequence[str]):
        """Rows of `query` (with one `{}` for the placeholders) over keys, 900 at a time (SQLite's
        limit on bound variables)."""
        for i in range(0, len(keys), 900):
            chunk = list(keys[i : i + 900])
            yield from con.execute(query.format(",".join("?" * len(chunk))), chunk)

    # ----------------------------------------------------------------- cells
    def done(self, hashes: Iterable[str], with_params: bool = False) -> set[str]:
        """The hashes already stored (with weights, if `with_params`)."""
        table = "params" if with_params else "cells"
        with self._con() as con:
            q = f"SELECT config_hash FROM {table} WHERE config_hash IN ({{}})"
            return {r[0] for r in self._in_chunks(con, q, list(hashes))}

    def put_cells(self, cells: Sequence[Cell]) -> int:
        """Writes cells (and their weights) in one transaction; existing rows are left alone, so a
        cell written twice (a resumed or a concurrent sweep) is stored once. Returns new cells."""
        now = time.time()
        with self._con() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                written = 0
                for c in cells:
                    cur = con.execute(
                        "INSERT OR IGNORE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (c.config_hash, c.study, c.group_key, json.dumps(c.config), json.dumps(c.metrics),
                         json.dumps(c.curves), c.status, c.seconds, c.device, now),
                    )
                    written += cur.rowcount
                    if c.params is not None:  # also fills in weights of a cell first stored without them
                        blob = st_save({k: v.detach().cpu().contiguous() for k, v in c.params.items()})
                        con.execute("INSERT OR IGNORE INTO params VALUES (?,?)", (c.config_hash, blob))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return written

    def get_cells(self, hashes: Sequence[str], with_params: bool = False) -> dict[str, Cell]:
        out: dict[str, Cell] = {}
        hashes = list(hashes)
        with self._con() as con:
            for r in self._in_chunks(con, "SELECT * FROM cells WHERE config_hash IN ({})", hashes):
                out[r[0]] = Cell(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), json.loads(r[5]), r[6], r[7], r[8])
            if with_params:
                q = "SELECT config_hash, blob FROM params WHERE config_hash IN ({})"
                for h, blob in self._in_chunks(con, q, hashes):
                    if h in out:
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
        with self._con() as con:
            for h, st, cfg, met, status, sec, dev, created in con.execute(q, args):
                metrics = {k: v for k, v in json.loads(met).items() if not isinstance(v, (list, dict))}
                rows.append({"config_hash": h, "study": st, "status": status, "seconds": sec, "device": dev,
                             "created": created, **json.loads(cfg), **metrics})
        return pd.DataFrame(rows)

    def count(self, study: str | None = None) -> int:
        with self._con() as con:
            if study:
                return con.execute("SELECT COUNT(*) FROM cells WHERE study=?", (study,)).fetchone()[0]
            return con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]

    # ---------------------------------------------------------------- claims
    def put_claim(self, study: str, claim: str, size: str, seeds: int, passed: bool, verdict: str,
                  summary: str, numbers: dict, figures: dict, seconds: float) -> None:
        with self._con() as con:
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
        with self._con() as con:
            cur = con.execute(q, args)
            names = [c[0] for c in cur.description]
            for r in cur:
                d = dict(zip(names, r))
                d["numbers"], d["figures"] = json.loads(d["numbers"]), json.loads(d["figures"])
                latest[d["claim"]] = d
        return list(latest.values())
