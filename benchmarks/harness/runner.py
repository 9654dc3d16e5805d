"""Running a suite: skip what the store already has, execute the rest, record each result.

Backends decide *where* runs execute and yield ``(spec, result)`` as runs finish:
``engines.local.InlineBackend`` (in this process, sequentially), ``engines.local.ProcessBackend``
(``--workers N`` spawned processes) and ``engines.ray.RayBackend`` (``--ray ADDRESS``, one task
per run).
Whatever the backend, the driver alone writes: artefacts first (atomically, under
``DIR/artefacts/<run_id>/``), then the run's row in one transaction. Killing the driver
therefore loses at most the runs in flight; re-running executes exactly those.

One driver per output folder: ``run_suite`` holds ``DIR/.fedarena.lock`` (``harness.lock``)
while it runs, so a second driver on the same folder stops at once with
``OutputFolderError``; the lock dies with its holder, so a killed driver never blocks the
resume. A failure never replaces a stored ``ok`` run. When a result cannot be recorded
(disk full, the store damaged) the suite stops with ``StoreError``: every run recorded
before it is kept, and running the same command resumes.

A stored run is skipped only if the same code wrote it (``provenance``): resuming into a
store that holds this suite's runs from other code stops before any run with
``ProvenanceError``; ``fresh=True`` (``--fresh``) recomputes every run instead. The
device (``--device``) is handed to every task; it is neither part of the run id nor of
the configuration, and each stored run records the device it ran on.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .atomic import clean_temporaries, write_atomic
from .engines import Backend, make_backend
from .lock import FolderLock
from .provenance import Provenance, current_provenance, mismatch_message
from .store import Store, StoreError
from .suite import Suite
from .tasks.common import client_workers as tasks_client_workers

ARTEFACTS = "artefacts"


class ProvenanceError(RuntimeError):
    """The output folder holds runs of this suite computed by other code."""


@dataclass
class RunSummary:
    suite: str
    out: Path
    planned: int
    skipped: int
    ok: int = 0
    failed: int = 0

    @property
    def executed(self) -> int:
        return self.ok + self.failed


def run_suite(suite: Suite, out: str | Path, *, workers: int = 1, ray_address: str | None = None,
              retry_failed: bool = False, progress: bool = True, backend: Backend | None = None,
              fresh: bool = False, device: str = "cpu", provenance: Provenance | None = None,
              client_workers: int | None = None) -> RunSummary:
    """Execute every run of ``suite`` not yet in ``out``'s store; record each one as it finishes.

    Each run trains a round's clients in ``client_workers`` processes (``--client-workers``;
    None: the suite's ``engine.client_workers``, else ``FEDARENA_CLIENT_WORKERS``, else 1).

    Raises ``ProvenanceError`` (before running or writing anything) when runs it would
    skip were written by other code than ``provenance`` (default: the running code's),
    unless ``fresh``, which recomputes every run of the suite; ``OutputFolderError`` when
    ``out`` cannot be used or another driver holds it; ``SuiteCollisionError`` when another
    suite of the same name owns runs there; ``StoreError`` when the store is unusable.
    """
    out = Path(out)
    provenance = provenance or current_provenance()
    lock = FolderLock(out).acquire()  # before the backend: a busy or unusable folder costs nothing
    try:
        if backend is None:  # before the store, so a missing Ray or a bad worker count writes nothing
            if client_workers is None:
                client_workers = suite.client_workers if suite.client_workers is not None else tasks_client_workers()
            backend = make_backend(workers, ray_address, progress, device, client_workers)
        try:
            store = Store.in_folder(out)
        except BaseException:
            backend.close()
            raise
        try:
            return _run(suite, out, store, backend, retry_failed, progress, fresh, provenance)
        finally:
            store.close()
    finally:
        lock.release()


def _run(suite: Suite, out: Path, store: Store, backend: Backend, retry_failed: bool, progress: bool, fresh: bool,
         provenance: Provenance) -> RunSummary:
    """The body of ``run_suite``, under the folder lock with the store open."""
    done = {} if fresh else store.statuses(r.run_id for r in suite.runs)
    finished = ("ok",) if retry_failed else ("ok", "failed")
    try:
        _refuse_stale(store, [r.run_id for r in suite.runs if done.get(r.run_id) in finished], provenance)
        store.check_suite_name(suite)
    except BaseException:
        backend.close()
        raise
    store.register_suite(suite)
    clean_temporaries(out / ARTEFACTS) if (out / ARTEFACTS).exists() else None
    pending = [r for r in suite.runs if done.get(r.run_id) not in finished]
    summary = RunSummary(suite.name, out, len(suite.runs), len(suite.runs) - len(pending))
    if not pending:
        backend.close()
        return summary
    bar = tqdm(total=len(suite.runs), initial=summary.skipped, desc=f"suite {suite.name}", unit="run",
               disable=not progress, dynamic_ncols=True)
    try:
        for spec, result in backend.run(pending):
            try:
                written = store.record(spec, result, save_artefacts(out, spec.run_id, result.artefacts),
                                       provenance)
            except OSError as exc:  # an artefact could not be written (disk full, folder gone read-only)
                raise StoreError(f"{out}: cannot write run {spec.run_id}'s artefacts ({exc.strerror or exc}); "
                                 f"runs recorded before it are kept in {store.path}: free space (or fix the "
                                 "folder), then run the same command to resume") from exc
            if not written:
                tqdm.write(f"run {spec.run_id} failed here, but the store already holds it as ok: the "
                           f"finished result is kept ({(result.error or '').splitlines()[0][:160]})",
                           file=sys.stderr)
                summary.skipped += 1
            elif result.status == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
                first = (result.error or "").splitlines()[0] if result.error else "unknown error"
                tqdm.write(f"run {spec.run_id} ({spec.meta.get('attack_label')} vs "
                           f"{spec.meta.get('defense_label')}, seed {spec.config['seed']}) failed: {first}",
                           file=sys.stderr)
            bar.update(1)
            bar.set_postfix(failed=summary.failed, refresh=False)
    finally:
        bar.close()
        backend.close()
    return summary


def _refuse_stale(store: Store, skipped: Sequence[str], provenance: Provenance) -> None:
    stale = store.stale_runs(skipped, provenance)
    if not stale:
        return
    n = sum(len(ids) for ids in stale.values())
    stored = next(iter(stale))  # the first provenance (of the smallest run id)
    others = f" (and {len(stale) - 1} other code versions)" if len(stale) > 1 else ""
    raise ProvenanceError(mismatch_message(
        f"{store.path} ({n} of the suite's stored runs, e.g. {stale[stored][0]}){others}", stored, provenance,
        "resume with --fresh to recompute, or choose a new --out"))


def save_artefacts(out: Path, run_id: str, artefacts: dict[str, bytes]) -> dict[str, str]:
    """Write a run's artefacts atomically; return ``{name: path relative to out}``."""
    paths = {}
    for name, data in sorted(artefacts.items()):
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"artefact name {name!r} must be a plain file name")
        rel = Path(ARTEFACTS) / run_id / name
        write_atomic(out / rel, data)
        paths[name] = rel.as_posix()
    return paths
