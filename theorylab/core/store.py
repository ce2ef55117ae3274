"""The results store: one embedded SQLite file (WAL mode).

A cell (one config hash) is written in one transaction when its ensemble group finishes, together
with its final weights, so a killed run resumes at the next unfinished group and never holds a
half-written or duplicated cell (the hash is the primary key). Several processes may write to one
store: SQLite serialises the short write transactions and readers never block writers in WAL mode.
`Store(":memory:")` is a private in-process store (one shared connection), for throwaway runs.

Anything that is not a usable store (a folder, a path under a file, a file that is not SQLite or is
corrupt, a read-only file when writing, a store deleted while a sweep runs) raises StoreError naming the
file; readers (`create=False`) never create a file or a folder. Concurrent sweeps split their work through
leases (see `lease`): a cell leased by a live sweep is left to it; a dead sweep's lease expires.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import threading
import time
import uuid
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
    created REAL NOT NULL,
    run_id TEXT,
    source TEXT
);
CREATE INDEX IF NOT EXISTS cells_study ON cells(study);
CREATE TABLE IF NOT EXISTS params (
    config_hash TEXT PRIMARY KEY,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    config_hash TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
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
    created REAL NOT NULL,
    run_id TEXT,
    source TEXT
);
"""

# chunk timings, added later: one row per trained ensemble chunk (what the cost guard's time estimate is fitted
# on). A writer creates the table when it opens a store; a reader of a store written before finds none and
# rebuilds the timings from the cells (see Store.chunk_timings).
_CHUNKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study TEXT NOT NULL,
    group_key TEXT NOT NULL,
    models INTEGER NOT NULL,
    model_steps INTEGER NOT NULL,
    seconds REAL NOT NULL,
    device TEXT,
    threads INTEGER,
    created REAL NOT NULL,
    run_id TEXT,
    source TEXT
);
CREATE INDEX IF NOT EXISTS chunks_study ON chunks(study);
"""

SQLITE_MAGIC = b"SQLite format 3\x00"
CELL_COLUMNS = ["config_hash", "study", "group_key", "config", "metrics", "curves", "status", "seconds", "device",
                "created"]
# provenance, added later as nullable columns of cells and claims: which run wrote a row, and what that run was
# (sweep, run, check, seeds, api). A store written before has NULL there; a writer adds the columns when it opens
# the store (ALTER TABLE ADD COLUMN, in one transaction), a reader reads either shape.
PROVENANCE = ["run_id", "source"]
SOURCES = ("sweep", "run", "check", "seeds", "api")


def new_run_id() -> str:
    """A run's id: when it started (UTC) and a random tag, so ids sort by time and never collide."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def iso_time(seconds: float | None) -> str | None:
    """A stored time (seconds since the epoch) as ISO-8601 in UTC, e.g. 2026-12-03T08:42:24.123+00:00."""
    if seconds is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds")
LEASE_SECONDS = 60.0  # a lease not renewed for this long belongs to a dead sweep (on this host: as soon as its pid is gone)
RENEW_EVERY = 10.0


def _owner_is_dead(owner: str) -> bool:
    """A lease owner (host:pid:tag) on this machine whose process is gone: its lease need not run out first
    (a sweep resumed after a crash starts at once). Owners on other hosts wait for expiry."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


class StoreError(ValueError):
    """The results store cannot be used; the message names the file and what is wrong with it."""


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


@dataclass
class ChunkTiming:
    """One trained ensemble chunk: its models, their optimizer steps in all, and the chunk's wall seconds (set-up,
    training and grading). from_cells: rebuilt from the cells of a store written before chunks were recorded (the
    cells kept only the training loop's seconds, so set-up and grading are missing)."""
    study: str
    group_key: str
    models: int
    model_steps: int
    seconds: float
    device: str = "cpu"
    threads: int | None = None  # torch threads of the process that trained it (None: not known)
    from_cells: bool = False


class Store:
    def __init__(self, path: str | Path = DEFAULT_STORE, create: bool = True, source: str = "api"):
        """create=False: the store must exist (readers such as `report` and `export` never create one).
        source: what this process is (sweep, run, check, seeds, api); stored with every row it writes, beside
        this Store's run_id."""
        if source not in SOURCES:
            raise ValueError(f"store source must be one of {', '.join(SOURCES)} (got {source!r})")
        self.source = source
        self.run_id = new_run_id()
        self.memory = str(path) == ":memory:"
        self.path = Path(path)
        self.writable = True
        self._opened = False  # after the first connection, a missing file is an error, not a new store
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this process's leases
        # an in-memory database lives as long as its connection, so it keeps exactly one
        self._memory_con = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False) if self.memory else None
        if not self.memory:
            self._check_file(create)
        with self._con() as con:
            # checked before anything is written: a file that is not a theorylab store is never changed
            self._check_schema(con, missing_ok=self.writable)
            if self.writable:
                if not self.memory:
                    con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA + _CHUNKS_SCHEMA)
                self._add_provenance(con)
        self._opened = True

    def _add_provenance(self, con: sqlite3.Connection) -> None:
        """Adds the provenance columns to a store written before they existed (new nullable columns: old rows
        read NULL, nothing else changes). Two processes opening one old store at once: the second finds them."""
        for table in ("cells", "claims"):
            if set(PROVENANCE) <= {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
                continue  # the usual case: no write lock taken
            con.execute("BEGIN IMMEDIATE")
            try:
                have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
                for col in PROVENANCE:
                    if col not in have:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN {col} TEXT")
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def _check_file(self, create: bool) -> None:
        p = self.path
        if p.is_dir():
            raise StoreError(f"store {p} is a folder; give a file path such as {p / 'store.sqlite'}")
        if not p.exists():
            if not create:
                raise StoreError(f"no store at {p}; pass --store PATH of an existing store (a sweep or run creates one)")
            parent = next(a for a in p.parents if a.exists())
            if not parent.is_dir():
                raise StoreError(f"store {p}: {parent} is a file, not a folder")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"store {p}: cannot create its folder ({e.strerror})") from None
            if not os.access(p.parent, os.W_OK):
                raise StoreError(f"store {p}: its folder {p.parent} is not writable")
            self.writable = True
            return
        try:  # stat, not open: opening a FIFO or a device would block or read forever
            mode = os.stat(p).st_mode
        except OSError as e:
            raise StoreError(f"store {p}: cannot read it ({e.strerror})") from None
        if not stat.S_ISREG(mode):
            raise StoreError(f"store {p} is not a regular file (a pipe, socket or device); give an SQLite file")
        try:
            with open(p, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise StoreError(f"store {p}: cannot read it ({e.strerror})") from None
        if head and head != SQLITE_MAGIC:
            raise StoreError(f"{p} is not a theorylab store (not an SQLite database)")
        # a reader (create=False) opens the file read-only: it never adds tables or switches the journal mode
        self.writable = create and os.access(p, os.W_OK) and os.access(p.parent, os.W_OK)
        if create and not self.writable:
            raise StoreError(f"store {p} is read-only; a run writes to its store (pass another --store)")

    def _check_schema(self, con: sqlite3.Connection, missing_ok: bool) -> None:
        cols = [r[1] for r in con.execute("PRAGMA table_info(cells)")]
        # a new (empty) database may become a store; an SQLite file holding other tables is someone else's
        empty = con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        if cols not in (CELL_COLUMNS, CELL_COLUMNS + PROVENANCE) and (cols or not (missing_ok and empty)):
            what = "has no 'cells' table" if not cols else "has a 'cells' table of another shape"
            raise StoreError(f"{self.path} is not a theorylab store (an SQLite file that {what})")

    def _connect(self) -> sqlite3.Connection:
        if self._memory_con is not None:
            return self._memory_con
        # mode=rw / ro: a store deleted under a running sweep is an error, never silently re-created empty
        mode = ("rw" if self.path.exists() or self._opened else "rwc") if self.writable else "ro"
        con = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode={mode}", uri=True, timeout=120.0,
                              isolation_level=None)
        con.execute("PRAGMA busy_timeout=120000")  # concurrent sweeps wait for each other's commits
        con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process never loses a commit
        return con

    @contextmanager
    def _con(self) -> Iterator[sqlite3.Connection]:
        con = None
        try:
            con = self._connect()
            yield con
        except sqlite3.Error as e:  # corrupt, truncated, deleted or read-only mid-run: one clear error
            gone = "" if self.memory or self.path.exists() else " (the file is gone)"
            raise StoreError(f"store {self.path}: {e}{gone}") from None
        finally:
            if con is not None and con is not self._memory_con:
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

    def put_cells(self, cells: Sequence[Cell], chunk: ChunkTiming | None = None) -> int:
        """Writes cells (and their weights) in one transaction; existing rows are left alone, so a
        cell written twice (a resumed or a concurrent sweep) is stored once. Returns new cells.
        chunk: the timing of the chunk that trained them, stored in the same transaction (even when a concurrent
        sweep stored the cells first: the work was done and timed)."""
        now = time.time()
        # serialized before the write lock is taken: a sweep stopped (SIGSTOP) or slowed while it holds the
        # lock blocks every other sweep on the store, so the locked part is kept to the inserts
        blobs = {c.config_hash: st_save({k: v.detach().cpu().contiguous() for k, v in c.params.items()})
                 for c in cells if c.params is not None}
        with self._con() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                written = 0
                for c in cells:
                    cur = con.execute(
                        f"INSERT OR IGNORE INTO cells ({', '.join(CELL_COLUMNS + PROVENANCE)}) VALUES "
                        "(?,?,?,?,?,?,?,?,?,?,?,?)",
                        (c.config_hash, c.study, c.group_key, json.dumps(c.config), json.dumps(c.metrics),
                         json.dumps(c.curves), c.status, c.seconds, c.device, now, self.run_id, self.source),
                    )
                    written += cur.rowcount
                    if c.config_hash in blobs:  # also fills in weights of a cell first stored without them
                        con.execute("INSERT OR IGNORE INTO params VALUES (?,?)", (c.config_hash, blobs[c.config_hash]))
                    con.execute("DELETE FROM leases WHERE config_hash = ?", (c.config_hash,))
                if chunk is not None:
                    con.execute("INSERT INTO chunks (study, group_key, models, model_steps, seconds, device, threads,"
                                " created, run_id, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                (chunk.study, chunk.group_key, chunk.models, chunk.model_steps, chunk.seconds,
                                 chunk.device, chunk.threads, now, self.run_id, self.source))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # SQLite itself rolls back on some errors (a full disk): keep that error
                    con.execute("ROLLBACK")
                raise
        return written

    # ---------------------------------------------------------------- leases
    def lease(self, hashes: Sequence[str], with_params: bool = False) -> set[str]:
        """Takes the cells of `hashes` that are neither stored nor leased by another live sweep, and returns
        them: this process trains those, other sweeps leave them alone until the lease expires."""
        table = "params" if with_params else "cells"
        now = time.time()
        with self._con() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("DELETE FROM leases WHERE expires < ?", (now,))
                taken = set()
                for h in hashes:
                    if con.execute(f"SELECT 1 FROM {table} WHERE config_hash = ?", (h,)).fetchone():
                        continue
                    row = con.execute("SELECT owner FROM leases WHERE config_hash = ?", (h,)).fetchone()
                    if row is None or row[0] == self.owner or _owner_is_dead(row[0]):
                        con.execute("INSERT OR REPLACE INTO leases VALUES (?,?,?)", (h, self.owner, now + LEASE_SECONDS))
                        taken.add(h)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # SQLite itself rolls back on some errors (a full disk): keep that error
                    con.execute("ROLLBACK")
                raise
        return taken

    def renew_leases(self) -> None:
        with self._con() as con:
            con.execute("UPDATE leases SET expires = ? WHERE owner = ?", (time.time() + LEASE_SECONDS, self.owner))

    def release_leases(self) -> None:
        with self._con() as con:
            con.execute("DELETE FROM leases WHERE owner = ?", (self.owner,))

    @contextmanager
    def leasing(self) -> Iterator[None]:
        """Keeps this process's leases alive while the body trains (a thread renews them), and gives them
        back at the end; a killed process stops renewing, so its leases expire after LEASE_SECONDS."""
        if self.memory:
            yield
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(RENEW_EVERY):
                try:
                    self.renew_leases()
                except StoreError:
                    return  # the sweep itself reports a lost store

        keeper = threading.Thread(target=renew, name="theorylab-leases", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
            try:
                self.release_leases()
            except StoreError:
                pass

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

    def _rows(self, table: str, study: str | None, order: str) -> list[dict]:
        """Every row of `table` (of one study, if given) as {column: value}, whatever columns the store has."""
        q = f"SELECT * FROM {table}" + (" WHERE study = ?" if study else "") + order
        with self._con() as con:
            cur = con.execute(q, (study,) if study else ())
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r)) for r in cur]

    def cells_df(self, study: str | None = None) -> pd.DataFrame:
        """One row per cell: config_hash, study, run_id and source (what wrote it: sweep, run, check, seeds, api;
        empty for cells stored before they were recorded), status, created (ISO-8601, UTC), the config fields,
        and the final metrics."""
        rows = []
        for d in self._rows("cells", study, ""):  # either shape of the table (old stores)
            metrics = {k: v for k, v in json.loads(d["metrics"]).items() if not isinstance(v, (list, dict))}
            rows.append({"config_hash": d["config_hash"], "study": d["study"], "run_id": d.get("run_id"),
                         "source": d.get("source"), "status": d["status"], "seconds": d["seconds"],
                         "device": d["device"], "created": iso_time(d["created"]), **json.loads(d["config"]),
                         **metrics})
        return pd.DataFrame(rows)

    def claims_df(self, study: str | None = None) -> pd.DataFrame:
        """One row per stored claim result (every run, not only the latest): study, claim, run_id, source,
        created (ISO-8601, UTC), size, seeds, verdict, passed, seconds, summary."""
        rows = []
        for d in self._rows("claims", study, " ORDER BY id"):
            rows.append({"study": d["study"], "claim": d["claim"], "run_id": d.get("run_id"),
                         "source": d.get("source"), "created": iso_time(d["created"]), "size": d["size"],
                         "seeds": d["seeds"], "verdict": d["verdict"], "passed": bool(d["passed"]),
                         "seconds": d["seconds"], "summary": d["summary"]})
        return pd.DataFrame(rows)

    def chunk_timings(self, study: str, limit: int) -> list[ChunkTiming]:
        """The timings of a study's newest `limit` trained chunks. A store with none recorded for the study (written
        before chunks were) has them rebuilt from its cells: a chunk's cells were written in one transaction, so
        they share their `created` time; its seconds are the sum of theirs (each cell holds its share)."""
        with self._con() as con:
            if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks'").fetchone():
                q = ("SELECT group_key, models, model_steps, seconds, device, threads FROM chunks WHERE study = ?"
                     " ORDER BY id DESC LIMIT ?")
                rows = [ChunkTiming(study, *r) for r in con.execute(q, (study, limit))]
                if rows:
                    return rows
            q = ("SELECT group_key, created, device, config, seconds FROM cells WHERE study = ? AND seconds > 0"
                 " ORDER BY created DESC LIMIT ?")
            cells = con.execute(q, (study, limit * 64)).fetchall()
        chunks: dict[tuple, ChunkTiming] = {}
        for key, created, device, config, seconds in cells:
            c = chunks.setdefault((key, created, device), ChunkTiming(study, key, 0, 0, 0.0, device or "cpu",
                                                                       from_cells=True))
            c.models += 1
            c.model_steps += int(json.loads(config).get("steps", 1))
            c.seconds += seconds
        return list(chunks.values())[:limit]

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
                " seconds, created, run_id, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (study, claim, size, seeds, int(passed), verdict, summary, json.dumps(numbers),
                 json.dumps(figures), seconds, time.time(), self.run_id, self.source),
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
                try:
                    d["numbers"], d["figures"] = json.loads(d["numbers"]), json.loads(d["figures"])
                except (TypeError, ValueError) as e:
                    raise StoreError(f"store {self.path}: claim row {d['id']} ({d['claim']}) holds invalid JSON ({e})") from None
                latest[d["claim"]] = d
        return list(latest.values())
