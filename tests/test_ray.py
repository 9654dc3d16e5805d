"""``--ray`` against a real local Ray instance (in-process, 2 CPUs on 127.0.0.1): results equal to a
local run, a worker SIGKILLed mid-run (retried, or recorded as failed and re-run), the code check."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from fedarena.benchmarks.harness.engines.ray import ClusterTooSmallError, CodeMismatchError, RayBackend  # noqa: E402
from fedarena.benchmarks.harness.execute import execute_run  # noqa: E402
from fedarena.benchmarks.harness.provenance import current_provenance  # noqa: E402
from fedarena.benchmarks.harness.runner import run_suite  # noqa: E402
from fedarena.benchmarks.harness.store import RunResult, Store  # noqa: E402
from fedarena.benchmarks.harness.suite import RunSpec, parse_suite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"fl_seconds", "seconds_per_round", "attack_seconds"}
SUITE = """
suite: tiny_ray
runs:
  - task: robustness
    dataset: {name: digits, size: 300}
    test_dataset: {name: digits, split: test, size: 100}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 3, rounds: 3, local: {lr: 0.2, batch_size: 32}}
    attacks: [none]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.001}}]
    seeds: 2
"""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One real Ray instance for the module; the test module's functions travel by value."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
                                       **({"FEDARENA_DATA": os.environ["FEDARENA_DATA"]}
                                          if os.environ.get("FEDARENA_DATA") else {})}})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The suite run locally, one run after another, by ``fedarena run`` in a fresh process (as the
    Ray workers are: state other tests leave in this process cannot reach either side)."""
    out = tmp_path_factory.mktemp("local")
    (out / "tiny_ray.yaml").write_text(SUITE)
    proc = subprocess.run([sys.executable, "-m", "fedarena.benchmarks.harness.cli", "run", str(out / "tiny_ray.yaml"),
                           "--out", str(out / "store"), "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return _metrics(out / "store")


def _metrics(out: Path) -> dict[str, dict[str, Any]]:
    with Store.in_folder(out) as store:
        return {r.run_id: {k: v for k, v in r.metrics.items() if k not in TIMING} for r in store.runs()}


def _pid_then_hang(pid_file: str, victim: str) -> Callable[..., RunResult]:
    """A task whose victim run's first attempt writes its worker's pid and hangs until it is killed."""

    def task(spec: RunSpec, progress: bool, threads: int | None, device: str,
             client_workers: int | None = None) -> RunResult:
        if spec.run_id == victim and not os.path.exists(pid_file):
            Path(pid_file).write_text(str(os.getpid()))
            time.sleep(600)  # until killed (the killer below gives up after 300 s)
        return execute_run(spec, progress, threads, device, client_workers)

    return task


def _kill_when_written(pid_file: Path, killed: list[int]) -> threading.Thread:
    def kill() -> None:
        deadline = time.monotonic() + 300  # generous: a loaded 2-core machine starts Ray workers slowly
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text():
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("retries", [3, 0])
def test_worker_killed_mid_run_then_suite_equals_local_run(local_ray: Any, reference: dict[str, Any],
                                                           tmp_path: Path, retries: int) -> None:
    suite = parse_suite(SUITE, "tiny_ray.yaml")
    victim = suite.runs[1].run_id
    pid_file = tmp_path / "victim.pid"
    killed: list[int] = []
    thread = _kill_when_written(pid_file, killed)
    task = _pid_then_hang(str(pid_file), victim)
    backend = RayBackend("auto", ray=local_ray, task=task, max_retries=retries, check_code=True)
    summary = run_suite(suite, tmp_path / "out", backend=backend, progress=False)
    thread.join(timeout=5)
    assert killed and killed[0] != os.getpid()  # a Ray worker process died mid-run
    with Store.in_folder(tmp_path / "out") as store:
        rows = store.runs()
        assert sorted(r.run_id for r in rows) == sorted(r.run_id for r in suite.runs)  # each stored once
        if retries:  # Ray retried the killed task on a fresh worker: nothing lost
            assert summary.failed == 0 and all(r.status == "ok" for r in rows)
        else:
            assert [r.run_id for r in rows if r.status == "failed"] == [victim]
            assert "RayTaskError" in store.get(victim).error and "--retry-failed" in store.get(victim).error
    if not retries:
        again = run_suite(suite, tmp_path / "out", progress=False, retry_failed=True,
                          backend=RayBackend("auto", ray=local_ray, check_code=False))
        assert (again.executed, again.failed) == (1, 0)
    stored = _metrics(tmp_path / "out")
    assert stored.keys() == reference.keys()  # same run ids
    differ = {(k, m): (v, reference[k].get(m))
              for k in stored for m, v in stored[k].items() if v != reference[k].get(m)}
    assert not differ, f"metrics differing from the local run: {str(differ)[:2000]}"


def test_code_check_names_both_sides(local_ray: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    RayBackend("auto", ray=local_ray, check_code=True)  # the workers run this checkout: no complaint
    other = current_provenance().__class__("0.0.0-other", "abc", False, "0")
    monkeypatch.setattr("fedarena.benchmarks.harness.engines.ray.current_provenance", lambda: other)
    with pytest.raises(CodeMismatchError, match=r"workers run fedarena .* but this driver is fedarena 0\.0\.0-other"):
        RayBackend("auto", ray=local_ray, check_code=True)


def _pool_sizes_logged(log: str) -> Callable[..., RunResult]:
    """``execute_run`` that appends, from inside the Ray worker, the size of every ClientPool the run starts."""

    def task(spec: RunSpec, progress: bool, threads: int | None, device: str,
             client_workers: int | None = None) -> RunResult:
        import torch

        from fedarena.fl_core.parallel import ClientPool

        original = ClientPool.__init__

        def spy(self: ClientPool, workers: int, *args: Any, **kwargs: Any) -> None:
            with open(log, "a") as f:
                threads = args[6] if len(args) > 6 else kwargs.get("threads")
                f.write(f"{workers} {threads} {torch.get_num_threads()}\n")
            original(self, workers, *args, **kwargs)

        ClientPool.__init__ = spy  # type: ignore[method-assign]
        try:
            return execute_run(spec, progress, threads, device, client_workers)
        finally:
            ClientPool.__init__ = original  # type: ignore[method-assign]

    return task


def test_client_workers_inside_ray_tasks_equal_the_local_run(local_ray: Any, reference: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """Each Ray task (2 CPUs reserved) trains its federation's clients in its own pool of 2 processes."""
    suite = parse_suite("engine: {client_workers: 2}\n" + SUITE, "tiny_ray.yaml")
    suite = dataclasses.replace(suite, runs=suite.runs[:2])  # two of the reference's runs: each task is 2 CPUs
    log = tmp_path / "pools.log"
    backend = RayBackend("auto", ray=local_ray, task=_pool_sizes_logged(str(log)), check_code=False,
                         client_workers=suite.client_workers)
    summary = run_suite(suite, tmp_path / "out", backend=backend, progress=False)
    assert (summary.ok, summary.failed) == (len(suite.runs), 0)
    # one pool per run, 2 processes of 1 thread each, in a task of 2 torch threads
    assert log.read_text().splitlines() == ["2 1 2"] * len(suite.runs)
    assert _metrics(tmp_path / "out") == {r.run_id: reference[r.run_id] for r in suite.runs}
    with pytest.raises(ClusterTooSmallError, match="each run needs 3 CPUs on one Ray node .* largest node has 2"):
        RayBackend("auto", ray=local_ray, check_code=False, client_workers=3)
