"""The result store: one SQLite file per output folder, one transaction per finished run.

Only the driver process writes (workers return results), and one driver holds an output
folder at a time (``harness.lock``), so there is a single writer. A run's row is written
in one upsert inside a transaction with ``synchronous=FULL``: after a crash the row is
either there completely or not at all, which is what lets ``fedarena run`` resume by
skipping the ids already stored. A failure never replaces a stored ``ok`` row (the
finished result is kept; the failure is reported to the caller).

Read-only commands (``show``, ``report``) open the store with ``readonly=True``: a
``mode=ro`` URI, or, when no driver holds the folder and no write-ahead log is pending,
``immutable=1``, which creates no ``-wal``/``-shm`` file (so a read-only folder can be
read and nothing is written). Every SQLite failure (not a database, truncated, damaged
schema, read-only, disk full) is a ``StoreError`` naming the file, what is wrong and
what to do.

Every run row and every cached unit records its ``Provenance`` (the code that computed
it); ``stale_runs`` and ``UnitCache`` refuse to reuse results written by other code.
The ``units`` table is the one cache of the reproduction scripts (``harness.units``):
one row per finished unit, written in one transaction like a run, so several script
processes (disjoint shards) may write to the same file (WAL, busy timeout).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ids import canonical_json
from .lock import held
from .provenance import Provenance, current_provenance, same_code

if TYPE_CHECKING:  # the store itself needs neither torch nor the registries
    from .suite import RunSpec, Suite

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = 2  # 2: runs.provenance, runs.device, the units table
STATUSES = ("ok", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    suite       TEXT NOT NULL,
    task        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    config      TEXT NOT NULL,
    meta        TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    artefacts   TEXT NOT NULL,
    error       TEXT,
    started_at  REAL,
    finished_at REAL,
    seconds     REAL,
    worker      TEXT,
    provenance  TEXT,
    device      TEXT
);
CREATE TABLE IF NOT EXISTS suites (
    suite       TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    description TEXT NOT NULL,
    source      TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS suite_runs (
    suite    TEXT NOT NULL,
    position INTEGER NOT NULL,
    run_id   TEXT NOT NULL,
    config   TEXT NOT NULL,
    meta     TEXT NOT NULL,
    PRIMARY KEY (suite, run_id)
);
CREATE TABLE IF NOT EXISTS units (
    benchmark   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    data        BLOB,
    provenance  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (benchmark, key)
);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_RUN_COLUMNS = ("run_id, suite, task, status, config, meta, metrics, artefacts, error, started_at, finished_at, "
                "seconds, worker, provenance, device")
_COLUMN_NAMES = [c.strip() for c in _RUN_COLUMNS.split(",")]
# Columns added after schema version 1, for stores written before them (NULL: unknown).
_ADDED_RUN_COLUMNS = {"provenance": "TEXT", "device": "TEXT"}
# What a store must have to be read (a version-1 store lacks only the added columns and units).
_REQUIRED = {"runs": set(_COLUMN_NAMES) - set(_ADDED_RUN_COLUMNS),
             "suites": {"suite", "path", "description", "source", "updated_at"},
             "suite_runs": {"suite", "position", "run_id", "config", "meta"}}
_RECOVER = ("move it aside (its finished runs are then recomputed by the next `fedarena run`) or restore it "
            "from a backup")


class StoreError(RuntimeError):
    """The result store cannot be used; the message names the file, what is wrong and what to do."""


class SuiteCollisionError(RuntimeError):
    """Another suite of the same name already owns stored runs in this folder."""


@dataclass
class RunResult:
    """A finished run as the worker hands it back; artefacts travel as bytes."""

    run_id: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    artefacts: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    worker: str = ""
    device: str = ""

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


@dataclass
class RunRecord:
    """A stored run; ``artefacts`` maps names to paths relative to the store's folder."""

    run_id: str
    suite: str
    task: str
    status: str
    config: dict[str, Any]
    meta: dict[str, Any]
    metrics: dict[str, Any]
    artefacts: dict[str, str]
    error: str | None
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    worker: str | None
    provenance: Provenance | None = None  # None: stored by a FedArena that recorded none
    device: str | None = None


class Store:
    """Results of every run executed into one output folder (``DIR/results.sqlite``)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a result store")
        exists = self.path.exists()
        # A 0-byte file is a new store to SQLite (and what a concurrent creator briefly leaves), so
        # writers accept it unless the folder shows earlier runs (artefacts); readers never do.
        if exists and self.path.stat().st_size == 0 and (readonly or _has_artefacts(self.path.parent)):
            raise StoreError(f"{self.path} is empty (0 bytes): not a result store (truncated, or never written)"
                             + ("" if readonly else " although the folder holds artefacts of earlier runs")
                             + "; delete it to start afresh, or restore it from a backup")
        if readonly and not exists:
            raise StoreError(f"{self.path} does not exist; run a suite into its folder first")
        with self._guard("open"):
            if readonly:
                self._conn = sqlite3.connect(self._readonly_uri(), uri=True, timeout=60.0, isolation_level=None)
                self._check_schema()
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            if exists:
                self._check_schema()
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        with self.transaction() as c:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    c.execute(statement)
            have = {row[1] for row in c.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_RUN_COLUMNS.items():
                if column not in have:
                    c.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            c.execute("INSERT OR REPLACE INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _readonly_uri(self) -> str:
        quoted = urllib.parse.quote(str(self.path.resolve()))
        wal = self.path.with_name(self.path.name + "-wal")
        if not wal.exists() and not held(self.path.parent):  # nobody writes: read the file as it is
            return f"file:{quoted}?mode=ro&immutable=1"
        return f"file:{quoted}?mode=ro"

    def _check_schema(self) -> None:
        """Refuse a file that is not a FedArena store, or whose tables lost columns."""
        tables = {name for (name,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables and not self.readonly:
            return  # a new, empty database: the schema is created next
        for table, columns in _REQUIRED.items():
            if table not in tables and table != "runs" and not self.readonly:
                continue  # created with the schema (a store written before that table)
            if table not in tables:
                raise StoreError(f"{self.path}: damaged or not a FedArena result store (table {table!r} is "
                                 f"missing; it has {sorted(tables) or 'no tables'}); {_RECOVER}")
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                raise StoreError(f"{self.path}: damaged result store (table {table!r} lacks columns "
                                 f"{sorted(columns - have)}); {_RECOVER}")

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn SQLite's exceptions into a ``StoreError`` that says what is wrong and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(self._explain(doing, exc)) from exc

    def _explain(self, doing: str, exc: sqlite3.Error) -> str:
        text = str(exc)
        low = text.lower()
        if "full" in low or _disk_full(self.path.parent):
            what = "the disk is full; free space, then run the same command to resume (finished runs are kept)"
        elif "readonly" in low or "read-only" in low or "unable to open" in low:
            what = ("the file or its folder is read-only, or cannot be opened; "
                    + ("copy the folder somewhere writable" if not self.readonly else
                       "a read-only folder can be read only when the store was closed cleanly; copy the folder "
                       "somewhere writable"))
        elif "locked" in low or "busy" in low:
            what = "another process keeps it locked; wait for it, or choose another folder"
        elif "disk i/o" in low:
            what = ("a disk I/O error (the disk may be failing, or the file changed under SQLite); check the disk "
                    f"and run the same command again; if it persists, {_RECOVER}")
        elif "not a database" in low or "malformed" in low or "corrupt" in low or "no such" in low:
            what = f"the file is damaged or not a FedArena result store; {_RECOVER}"
        else:
            what = _RECOVER
        return f"{self.path}: cannot {doing} the result store ({type(exc).__name__}: {text}): {what}"

    @classmethod
    def in_folder(cls, folder: str | Path) -> Store:
        return cls(Path(folder) / STORE_NAME)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def close(self) -> None:
        if hasattr(self, "_conn"):
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): all or nothing."""
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only; nothing may be written to it")
        c = self._conn
        with self._guard("write"):
            c.execute("BEGIN IMMEDIATE")
        try:
            yield c
            with self._guard("write"):
                c.execute("COMMIT")
        except BaseException as exc:
            if c.in_transaction:
                with suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(self._explain("write", exc)) from exc
            raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._guard("read"), closing(self._conn.execute(sql, args)) as cur:
            return cur.fetchall()

    # -- writing

    def register_suite(self, suite: Suite) -> None:
        """Record the suite and the runs it expands to (for progress and the report).

        Raises ``SuiteCollisionError`` when a suite of the same name is stored with runs the
        new plan lacks (another suite file reusing the name): replacing its plan would hide
        those runs from the report. Re-running the same suite, or one that only adds runs
        (more seeds, more defenses), is fine.
        """
        self.check_suite_name(suite)
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO suites VALUES (?, ?, ?, ?, ?)",
                      (suite.name, suite.path, suite.description, suite.source, time.time()))
            c.execute("DELETE FROM suite_runs WHERE suite = ?", (suite.name,))
            c.executemany("INSERT INTO suite_runs VALUES (?, ?, ?, ?, ?)",
                          [(suite.name, i, r.run_id, canonical_json(r.config), json.dumps(r.meta))
                           for i, r in enumerate(suite.runs)])

    def check_suite_name(self, suite: Suite) -> None:
        """``SuiteCollisionError`` if registering ``suite`` would orphan stored runs (see ``register_suite``)."""
        rows = self._read("SELECT path FROM suites WHERE suite = ?", (suite.name,))
        if not rows:
            return
        new = {r.run_id for r in suite.runs}
        stored = {rid for (rid,) in self._read("SELECT s.run_id FROM suite_runs s JOIN runs r ON r.run_id = s.run_id "
                                               "WHERE s.suite = ?", (suite.name,))}
        orphaned = stored - new
        if orphaned:
            raise SuiteCollisionError(
                f"{self.path} already holds suite {suite.name!r} from {rows[0][0]} with {len(stored)} stored runs, "
                f"{len(orphaned)} of which {suite.path or 'this suite'} does not plan (e.g. {min(orphaned)}): a "
                "second suite with the same `suite:` name would hide them from the report. Rename the suite, or "
                "choose another --out")

    def record(self, spec: RunSpec, result: RunResult, artefacts: dict[str, str],
               provenance: Provenance | None = None) -> bool:
        """Write one finished run in a single transaction (replacing an earlier attempt, except
        that a failure never replaces an ``ok`` row); ``provenance`` defaults to the running
        code's. Returns whether the row was written (False: an ``ok`` row was kept)."""
        if result.status not in STATUSES:
            raise ValueError(f"run status must be one of {STATUSES}, got {result.status!r}")
        row = (spec.run_id, spec.suite, spec.config["task"], result.status, canonical_json(spec.config),
               json.dumps(spec.meta, sort_keys=True), json.dumps(_finite(result.metrics), sort_keys=True),
               json.dumps(artefacts, sort_keys=True), result.error, result.started_at, result.finished_at,
               result.seconds, result.worker, _provenance_json(provenance or current_provenance()),
               result.device or None)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMN_NAMES[1:])
        with self.transaction() as c:
            cur = c.execute(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 15)}) "
                            f"ON CONFLICT(run_id) DO UPDATE SET {updates} "
                            "WHERE excluded.status = 'ok' OR runs.status != 'ok'", row)
            return cur.rowcount > 0

    def put_unit(self, benchmark: str, key: str, value: Any, data: bytes | None = None,
                 provenance: Provenance | None = None) -> None:
        """Store one finished unit of a reproduction script (JSON ``value``, optional binary ``data``)."""
        row = (benchmark, key, json.dumps(value, default=str), data,
               _provenance_json(provenance or current_provenance()), time.time())
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?)", row)

    # -- reading

    def stale_runs(self, run_ids: Iterable[str], current: Provenance) -> dict[Provenance | None, list[str]]:
        """Stored runs among ``run_ids`` written by other code than ``current``, by their provenance."""
        wanted = set(run_ids)
        out: dict[Provenance | None, list[str]] = {}
        for rid, prov in self._read("SELECT run_id, provenance FROM runs ORDER BY run_id"):
            stored = _provenance(prov)
            if rid in wanted and not same_code(stored, current):
                out.setdefault(stored, []).append(rid)
        return out

    def unit(self, benchmark: str, key: str) -> tuple[Any, bytes | None, Provenance | None] | None:
        """(value, data, provenance) of a stored unit, or None."""
        rows = self._read("SELECT value, data, provenance FROM units WHERE benchmark = ? AND key = ?",
                          (benchmark, key))
        return None if not rows else (json.loads(rows[0][0]), rows[0][1], _provenance(rows[0][2]))

    def statuses(self, run_ids: Iterable[str] | None = None) -> dict[str, str]:
        """``{run_id: status}`` of stored runs (all of them, or those among ``run_ids``)."""
        rows = self._read("SELECT run_id, status FROM runs")
        wanted = None if run_ids is None else set(run_ids)
        return {rid: st for rid, st in rows if wanted is None or rid in wanted}

    def runs(self, suite: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Stored runs, in the order their suite lists them (then by finish time)."""
        columns = ", ".join(f"r.{c.strip()}" for c in _RUN_COLUMNS.split(","))
        query = (f"SELECT {columns}, COALESCE(s.position, 1e18) AS pos FROM runs r "
                 "LEFT JOIN suite_runs s ON s.run_id = r.run_id AND s.suite = r.suite")
        where, args = [], []
        if suite is not None:
            where.append("r.suite = ?")
            args.append(suite)
        if status is not None:
            where.append("r.status = ?")
            args.append(status)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY r.suite, pos, r.finished_at"
        return [_record(row) for row in self._read(query, args)]

    def get(self, run_id_or_prefix: str) -> RunRecord:
        """The run with this id, or the only one whose id starts with it."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id LIKE ? ESCAPE '\\'",
                          (_like_prefix(run_id_or_prefix),))
        if not rows:
            raise KeyError(f"no run {run_id_or_prefix!r} in {self.path}")
        if len(rows) > 1:
            ids = ", ".join(sorted(r[0] for r in rows)[:10])
            raise KeyError(f"{run_id_or_prefix!r} matches {len(rows)} runs ({ids}); give more characters")
        return _record(rows[0])

    def suites(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT suite, path, description, source FROM suites ORDER BY suite")
        out = []
        for name, path, description, source in rows:
            planned = self._read("SELECT COUNT(*) FROM suite_runs WHERE suite = ?", (name,))[0][0]
            out.append({"suite": name, "path": path, "description": description, "source": source,
                        "planned": planned})
        return out

    def planned(self, suite: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(run_id, config, meta) of every run the suite expands to, in suite order."""
        rows = self._read("SELECT run_id, config, meta FROM suite_runs WHERE suite = ? ORDER BY position", (suite,))
        return [(rid, json.loads(cfg), json.loads(meta)) for rid, cfg, meta in rows]


def _has_artefacts(folder: Path) -> bool:
    artefacts = folder / "artefacts"
    return artefacts.is_dir() and any(artefacts.iterdir())


def _disk_full(folder: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding ``folder`` has less than ``margin`` bytes free."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


def artefact_path(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused (``ValueError``) when it would leave ``folder`` (``../``, absolute, links)."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"artefact path {relative!r} leaves the result folder {folder}")
    return path


def _record(row: tuple[Any, ...]) -> RunRecord:
    (run_id, suite, task, status, config, meta, metrics, artefacts, error, started, finished, seconds,
     worker, provenance, device) = row[:15]
    return RunRecord(run_id, suite, task, status, json.loads(config), json.loads(meta), json.loads(metrics),
                     json.loads(artefacts), error, started, finished, seconds, worker, _provenance(provenance),
                     device)


def _provenance_json(provenance: Provenance) -> str:
    return json.dumps(provenance.as_dict(), sort_keys=True)


def _provenance(text: str | None) -> Provenance | None:
    return None if text is None else Provenance.from_dict(json.loads(text))


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null (a metric that could not be computed)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
