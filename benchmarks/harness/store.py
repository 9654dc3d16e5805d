"""The result store: one SQLite file per output folder, one transaction per finished run.

Only the driver process writes (workers return results), so there is a single writer.
A run's row is written in one ``INSERT OR REPLACE`` inside a transaction with
``synchronous=FULL``: after a crash the row is either there completely or not at all,
which is what lets ``fedarena run`` resume by skipping the ids already stored.

Every run row and every cached unit records its ``Provenance`` (the code that computed
it); ``stale_runs`` and ``UnitCache`` refuse to reuse results written by other code.
The ``units`` table is the one cache of the reproduction scripts (``harness.units``):
one row per finished unit, written in one transaction like a run, so several script
processes (disjoint shards) may write to the same file (WAL, busy timeout).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ids import canonical_json
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
# Columns added after schema version 1, for stores written before them (NULL: unknown).
_ADDED_RUN_COLUMNS = {"provenance": "TEXT", "device": "TEXT"}


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

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
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

    @classmethod
    def in_folder(cls, folder: str | Path) -> Store:
        return cls(Path(folder) / STORE_NAME)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): all or nothing."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    # -- writing

    def register_suite(self, suite: Suite) -> None:
        """Record the suite and the runs it expands to (for progress and the report)."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO suites VALUES (?, ?, ?, ?, ?)",
                      (suite.name, suite.path, suite.description, suite.source, time.time()))
            c.execute("DELETE FROM suite_runs WHERE suite = ?", (suite.name,))
            c.executemany("INSERT INTO suite_runs VALUES (?, ?, ?, ?, ?)",
                          [(suite.name, i, r.run_id, canonical_json(r.config), json.dumps(r.meta))
                           for i, r in enumerate(suite.runs)])

    def record(self, spec: RunSpec, result: RunResult, artefacts: dict[str, str],
               provenance: Provenance | None = None) -> None:
        """Write one finished run in a single transaction (replacing an earlier attempt);
        ``provenance`` defaults to the running code's."""
        if result.status not in STATUSES:
            raise ValueError(f"run status must be one of {STATUSES}, got {result.status!r}")
        row = (spec.run_id, spec.suite, spec.config["task"], result.status, canonical_json(spec.config),
               json.dumps(spec.meta, sort_keys=True), json.dumps(_finite(result.metrics), sort_keys=True),
               json.dumps(artefacts, sort_keys=True), result.error, result.started_at, result.finished_at,
               result.seconds, result.worker, _provenance_json(provenance or current_provenance()),
               result.device or None)
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 15)})", row)

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
        for rid, prov in self._conn.execute("SELECT run_id, provenance FROM runs ORDER BY run_id").fetchall():
            stored = _provenance(prov)
            if rid in wanted and not same_code(stored, current):
                out.setdefault(stored, []).append(rid)
        return out

    def unit(self, benchmark: str, key: str) -> tuple[Any, bytes | None, Provenance | None] | None:
        """(value, data, provenance) of a stored unit, or None."""
        row = self._conn.execute("SELECT value, data, provenance FROM units WHERE benchmark = ? AND key = ?",
                                 (benchmark, key)).fetchone()
        return None if row is None else (json.loads(row[0]), row[1], _provenance(row[2]))

    def statuses(self, run_ids: Iterable[str] | None = None) -> dict[str, str]:
        """``{run_id: status}`` of stored runs (all of them, or those among ``run_ids``)."""
        rows = self._conn.execute("SELECT run_id, status FROM runs").fetchall()
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
        with closing(self._conn.execute(query, args)) as cur:
            return [_record(row) for row in cur.fetchall()]

    def get(self, run_id_or_prefix: str) -> RunRecord:
        """The run with this id, or the only one whose id starts with it."""
        rows = self._conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id LIKE ? ESCAPE '\\'",
                                  (_like_prefix(run_id_or_prefix),)).fetchall()
        if not rows:
            raise KeyError(f"no run {run_id_or_prefix!r} in {self.path}")
        if len(rows) > 1:
            ids = ", ".join(sorted(r[0] for r in rows)[:10])
            raise KeyError(f"{run_id_or_prefix!r} matches {len(rows)} runs ({ids}); give more characters")
        return _record(rows[0])

    def suites(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT suite, path, description, source FROM suites ORDER BY suite").fetchall()
        out = []
        for name, path, description, source in rows:
            planned = self._conn.execute("SELECT COUNT(*) FROM suite_runs WHERE suite = ?", (name,)).fetchone()[0]
            out.append({"suite": name, "path": path, "description": description, "source": source,
                        "planned": planned})
        return out

    def planned(self, suite: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(run_id, config, meta) of every run the suite expands to, in suite order."""
        rows = self._conn.execute("SELECT run_id, config, meta FROM suite_runs WHERE suite = ? ORDER BY position",
                                  (suite,)).fetchall()
        return [(rid, json.loads(cfg), json.loads(meta)) for rid, cfg, meta in rows]


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
