"""Running a suite: skip what the store already has, execute the rest, record each result.

Backends decide *where* runs execute and yield ``(spec, result)`` as runs finish:
``InlineBackend`` (in this process, sequentially), ``ProcessBackend`` (``--workers N``
spawned processes) and ``ray_backend.RayBackend`` (``--ray ADDRESS``, one task per run).
Whatever the backend, the driver alone writes: artefacts first (atomically, under
``DIR/artefacts/<run_id>/``), then the run's row in one transaction. Killing the driver
therefore loses at most the runs in flight; re-running executes exactly those.

A stored run is skipped only if the same code wrote it (``provenance``): resuming into a
store that holds this suite's runs from other code stops before any run with
``ProvenanceError``; ``fresh=True`` (``--fresh``) recomputes every run instead. The
device (``--device``) is handed to every task; it is neither part of the run id nor of
the configuration, and each stored run records the device it ran on.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from .atomic import clean_temporaries, write_atomic
from .execute import execute_run
from .provenance import Provenance, current_provenance, mismatch_message
from .store import RunResult, Store
from .suite import RunSpec, Suite

ARTEFACTS = "artefacts"


class ProvenanceError(RuntimeError):
    """The output folder holds runs of this suite computed by other code."""


class Backend(Protocol):
    """Executes runs somewhere and yields each ``(spec, result)`` as soon as it is done."""

    def run(self, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunResult]]: ...

    def close(self) -> None: ...


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
              fresh: bool = False, device: str = "cpu", provenance: Provenance | None = None) -> RunSummary:
    """Execute every run of ``suite`` not yet in ``out``'s store; record each one as it finishes.

    Raises ``ProvenanceError`` (before running or writing anything) when runs it would
    skip were written by other code than ``provenance`` (default: the running code's),
    unless ``fresh``, which recomputes every run of the suite.
    """
    out = Path(out)
    provenance = provenance or current_provenance()
    if backend is None:  # first, so a missing Ray or a bad worker count fails before anything is written
        backend = make_backend(workers, ray_address, progress, device)
    store = Store.in_folder(out)
    try:
        done = {} if fresh else store.statuses(r.run_id for r in suite.runs)
        finished = ("ok",) if retry_failed else ("ok", "failed")
        try:
            _refuse_stale(store, [r.run_id for r in suite.runs if done.get(r.run_id) in finished], provenance)
        except ProvenanceError:
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
                store.record(spec, result, save_artefacts(out, spec.run_id, result.artefacts), provenance)
                if result.status == "ok":
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
    finally:
        store.close()


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


def make_backend(workers: int = 1, ray_address: str | None = None, progress: bool = True,
                 device: str = "cpu") -> Backend:
    if ray_address:
        from .ray_backend import RayBackend

        return RayBackend(ray_address, device=device)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    return InlineBackend(progress, device) if workers == 1 else ProcessBackend(workers, device=device)


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


class InlineBackend:
    """Runs one after another in this process, with the runs' own progress bars."""

    def __init__(self, progress: bool = True, device: str = "cpu") -> None:
        self.progress, self.device = progress, device

    def run(self, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunResult]]:
        for spec in specs:
            yield spec, execute_run(spec, progress=self.progress, device=self.device)

    def close(self) -> None:
        pass


class ProcessBackend:
    """``workers`` spawned processes, at most ``workers`` runs in flight.

    Keeping only ``workers`` runs submitted bounds what a crash of the pool (a worker
    killed by the OOM killer, say) can take with it: those runs are recorded as failed
    with the reason, the pool is rebuilt, and the suite goes on. Each worker gets
    ``cpu_count // workers`` torch threads and dies with the driver (Linux).
    """

    def __init__(self, workers: int, threads: int | None = None, device: str = "cpu") -> None:
        self.workers, self.device = workers, device
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self._pool: cf.ProcessPoolExecutor | None = None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_init_worker)

    def run(self, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunResult]]:
        queue = list(reversed(specs))
        in_flight: dict[cf.Future[RunResult], RunSpec] = {}
        self._pool = self._new_pool()
        while queue or in_flight:
            while queue and len(in_flight) < self.workers:
                spec = queue.pop()
                in_flight[self._pool.submit(execute_run, spec, False, self.threads, self.device)] = spec
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in done:
                spec = in_flight.pop(future)
                try:
                    yield spec, future.result()
                except BrokenProcessPool as exc:
                    broken = True
                    yield spec, _crashed(spec, f"worker process died while running it ({exc})")
            if broken:
                for future, spec in list(in_flight.items()):
                    in_flight.pop(future)
                    yield spec, _crashed(spec, "worker pool broke while running it (another worker died)")
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _crashed(spec: RunSpec, reason: str) -> RunResult:
    now = time.time()
    return RunResult(spec.run_id, "failed", {}, {}, f"WorkerCrash: {reason}; re-run with --retry-failed",
                     now, now, "")


def _init_worker() -> None:
    """Workers ignore Ctrl-C (the driver handles it) and die with the driver on Linux."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except OSError:
            pass
