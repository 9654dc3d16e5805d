"""``fedarena run --ray auto|ADDRESS``: one Ray task per run, results written by the driver.

Ray is an optional extra (``pip install 'fedarena[ray]'``). ``--ray auto`` starts a local
Ray instance in the driver (``ray.init(num_cpus=--workers × --client-workers)``, no dashboard); any other
value joins that cluster (``ray.init(address=...)``). Every node needs FedArena installed
(the same code as the driver: checked at start, see ``CodeMismatchError``) and, for
datasets that need files, the data root: the driver's ``FEDARENA_DATA`` and a torch
thread count go to every worker through ``runtime_env`` env vars.

Client workers (``--client-workers N`` or a suite's ``engine.client_workers``) compose with
Ray as processes, not actors: a run is one task, all its rounds on one node, and the
task starts its own ``fedarena.fl_core.parallel.ClientPool`` of N spawned processes there, which
keep the model and their clients' data for the whole federation (per round only the
global state goes out and updates come back, over pipes on the node). The task reserves
``N`` CPUs (``num_cpus`` × N) and ``threads`` × N torch threads, so each client worker gets
``threads``. Ray actors would let one federation's clients spread over nodes, but every
round would then ship the global state across the cluster and wait for its slowest node;
for the models here a round is seconds, so one node per run and Ray for the grid is the
better split. Tasks return the same
``RunResult`` as local workers, artefacts included as bytes, so the driver writes
artefacts and store rows exactly as for a local suite. A task whose worker process dies
is retried by Ray (``max_retries``, Ray's default 3); one that still fails is recorded as
a failed run (``--retry-failed`` re-runs it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..provenance import REPO_ROOT, Provenance, current_provenance
from ..store import RunResult

if TYPE_CHECKING:
    from ..suite import RunSpec

LOCAL = "auto"


class RayUnavailableError(RuntimeError):
    """``--ray`` was asked for but Ray cannot be imported."""


class ClusterTooSmallError(RayUnavailableError):
    """No node of the Ray cluster has the CPUs one run asks for (``--client-workers``)."""


class CodeMismatchError(RuntimeError):
    """The cluster's workers run other FedArena code than the driver (version, commit or edits)."""


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"--ray needs the optional Ray extra, which is not installed ({exc}); "
            "install it with: pip install 'fedarena[ray]'") from None
    return ray


def worker_env(threads: int) -> dict[str, str]:
    """Env vars every Ray worker gets: the driver's data root and the thread count (client workers
    travel with each task, as an argument of ``execute_run``)."""
    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if os.environ.get("FEDARENA_DATA"):
        env["FEDARENA_DATA"] = os.environ["FEDARENA_DATA"]
    return env


def _worker_provenance() -> dict[str, Any]:
    return current_provenance().as_dict()


class RayBackend:
    """Submits every run as a task (``num_cpus`` × ``client_workers`` CPUs each) and yields results as they finish.

    ``address`` is ``"auto"`` (start a local instance with ``workers`` × ``client_workers`` CPUs,
so ``workers`` runs go at once) or a cluster
    address. ``task`` is what each task runs (default ``execute_run``; tests wrap it).
    ``check_code`` (default: with the real Ray) runs one task first and raises
    ``CodeMismatchError`` when the worker's provenance differs from the driver's.
    """

    def __init__(self, address: str, *, num_cpus: float = 1.0, threads: int = 1, ray: Any = None,
                 device: str = "cpu", workers: int = 1, max_retries: int | None = None,
                 task: Callable[..., RunResult] | None = None, check_code: bool | None = None,
                 client_workers: int = 1) -> None:
        if client_workers < 1:
            raise ValueError(f"client_workers must be >= 1, got {client_workers}")
        real = ray is None
        self.ray = import_ray() if real else ray
        self.threads, self.device, self.client_workers = threads, device, client_workers
        self.started_here = False
        if not self.ray.is_initialized():
            env = {"env_vars": worker_env(threads)}
            if address == LOCAL:  # workers import this checkout, as the driver does
                path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
                env["env_vars"]["PYTHONPATH"] = path
                self.ray.init(num_cpus=workers * client_workers, include_dashboard=False, runtime_env=env)
            else:
                self.ray.init(address=address, runtime_env=env)
            self.started_here = True
        if task is None:
            from ..execute import execute_run  # torch and the registries: only once Ray is there

            task = execute_run
        options: dict[str, Any] = {"num_cpus": num_cpus * client_workers}
        if max_retries is not None:
            options["max_retries"] = max_retries
        self._check_fits(options["num_cpus"])
        self._remote = self.ray.remote(**options)(task)
        self._pending: list[Any] = []
        if real if check_code is None else check_code:
            self.check_code()

    def _check_fits(self, cpus: float) -> None:
        """A task that no node can hold would wait forever: say so now."""
        nodes = self.ray.nodes() if hasattr(self.ray, "nodes") else []
        largest = max((n.get("Resources", {}).get("CPU", 0.0) for n in nodes if n.get("Alive", True)), default=None)
        if largest is not None and largest < cpus:
            raise ClusterTooSmallError(f"each run needs {cpus:g} CPUs on one Ray node (--client-workers "
                                       f"{self.client_workers}), but the largest node has {largest:g}: lower "
                                       "--client-workers or add larger nodes")

    def check_code(self) -> None:
        """Raise ``CodeMismatchError`` naming both sides when a worker runs other code than this driver."""
        theirs = Provenance.from_dict(self.ray.get(self.ray.remote(num_cpus=0)(_worker_provenance).remote()))
        ours = current_provenance()
        if theirs != ours:
            raise CodeMismatchError(
                f"the Ray cluster's workers run {theirs.describe()}, but this driver is {ours.describe()}: "
                "install the driver's FedArena on every node (or run the driver from the cluster's checkout)")

    def run(self, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunResult]]:
        refs = {self._remote.remote(spec, False, self.threads * self.client_workers, self.device,
                                    self.client_workers): spec for spec in specs}
        self._pending = list(refs)
        while refs:
            done, _ = self.ray.wait(list(refs), num_returns=1)
            for ref in done:
                spec = refs.pop(ref)
                self._pending = list(refs)
                try:
                    result = self.ray.get(ref)
                except Exception as exc:  # the task died past its retries (worker killed, node lost): record it
                    now = time.time()
                    result = RunResult(spec.run_id, "failed", {}, {},
                                       f"RayTaskError: {exc}; re-run with --retry-failed", now, now, "ray")
                yield spec, result

    def close(self) -> None:
        for ref in self._pending:
            try:
                self.ray.cancel(ref)
            except Exception:
                pass
        self._pending = []
        if self.started_here and hasattr(self.ray, "shutdown"):
            self.ray.shutdown()
            self.started_here = False
