"""Local engines: ``InlineBackend`` (runs one after another in the driver) and
``ProcessBackend`` (``--workers N`` spawned processes, a crashed worker recorded as a failed run)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool

from fedarena.fl_core.interrupts import sigint_held

from ..execute import execute_run
from ..store import RunResult
from ..suite import RunSpec


class InlineBackend:
    """Runs one after another in this process, with the runs' own progress bars."""

    def __init__(self, progress: bool = True, device: str = "cpu", client_workers: int = 1) -> None:
        self.progress, self.device, self.client_workers = progress, device, client_workers

    def run(self, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunResult]]:
        for spec in specs:
            yield spec, execute_run(spec, progress=self.progress, device=self.device,
                                    client_workers=self.client_workers)

    def close(self) -> None:
        pass


class ProcessBackend:
    """``workers`` spawned processes, at most ``workers`` runs in flight.

    Keeping only ``workers`` runs submitted bounds what a crash of the pool (a worker
    killed by the OOM killer, say) can take with it: those runs are recorded as failed
    with the reason, the pool is rebuilt, and the suite goes on. Each worker gets
    ``cpu_count // workers`` torch threads (shared out over a run's client workers, at least
    one each) and dies with the driver (Linux).
    """

    def __init__(self, workers: int, threads: int | None = None, device: str = "cpu", client_workers: int = 1) -> None:
        self.workers, self.device, self.client_workers = workers, device, client_workers
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
                with sigint_held():  # a submit may spawn a worker: Ctrl-C is the driver's alone
                    in_flight[self._pool.submit(execute_run, spec, False, self.threads, self.device,
                                                self.client_workers)] = spec
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
        """Stop the workers; runs still in flight (after a Ctrl-C, a store error) are lost and
        run again on resume. Without the kill, the interpreter's exit would wait for them."""
        if self._pool is not None:
            workers = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in workers:
                if proc.is_alive():
                    proc.kill()
            self._pool = None


def _crashed(spec: RunSpec, reason: str) -> RunResult:
    now = time.time()
    return RunResult(spec.run_id, "failed", {}, {}, f"WorkerCrash: {reason}; re-run with --retry-failed",
                     now, now, "")


def _init_worker() -> None:
    """Workers ignore Ctrl-C (the driver handles it; they start with it held, ``sigint_held``)
    and die with the driver on Linux."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except OSError:
            pass
