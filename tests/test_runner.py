"""Running suites: resume after SIGKILL, failures recorded, process and Ray dispatch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from fedarena.benchmarks.harness.engines.ray import RayBackend, RayUnavailableError, import_ray
from fedarena.benchmarks.harness.runner import run_suite
from fedarena.benchmarks.harness.store import Store
from fedarena.benchmarks.harness.suite import parse_suite

from .helpers import suite_failing_at_run_time

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"fl_seconds", "seconds_per_round", "attack_seconds"}

TINY = """
suite: tiny
runs:
  - task: robustness
    dataset: {name: digits, size: 600}
    test_dataset: {name: digits, split: test, size: 200}
    model: {name: mlp, params: {hidden: [16]}}
    federation: {clients: 3, rounds: 6, local: {lr: 0.2, batch_size: 32}}
    attacks: [none]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.001}}]
    seeds: %d
"""


def _metrics(db: Path) -> dict[str, dict[str, Any]]:
    """Stored metrics per run id, without wall-clock timings (they differ run to run)."""
    with Store(db) as store:
        return {r.run_id: {k: v for k, v in r.metrics.items() if k not in TIMING} for r in store.runs()}


def _count_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # the driver is creating the schema
        return 0


def _fedarena(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedarena.benchmarks.harness.cli", *args]


def test_sigkill_mid_suite_then_resume_runs_each_once_with_same_metrics(tmp_path: Path) -> None:
    """Kill a real ``fedarena run`` mid-suite, resume it with 2 worker processes: every run is
    stored once, with the numbers of an uninterrupted run (same torch thread count)."""
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text(TINY % 4)  # 8 runs
    killed = tmp_path / "killed"
    threads = max(1, (os.cpu_count() or 1) // 2)  # what each of 2 workers uses
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(_fedarena("run", str(suite_file), "--out", str(killed), "--no-progress"), cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count_rows(killed / "results.sqlite") < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _count_rows(killed / "results.sqlite")
    assert 2 <= done_before < 8, f"kill was not mid-suite ({done_before} runs stored); {proc.stderr.read()}"
    first = _metrics(killed / "results.sqlite")

    again = subprocess.run(_fedarena("run", str(suite_file), "--out", str(killed), "--no-progress", "--workers", "2"),
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"{8 - done_before} ok, 0 failed, {done_before} already done" in again.stderr

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # the uninterrupted reference, in this process
        run_suite(parse_suite(TINY % 4, "tiny.yaml"), tmp_path / "clean", progress=False)
    finally:
        torch.set_num_threads(saved)
    resumed, reference = _metrics(killed / "results.sqlite"), _metrics(tmp_path / "clean" / "results.sqlite")
    with sqlite3.connect(killed / "results.sqlite") as conn:
        ids = [row[0] for row in conn.execute("SELECT run_id FROM runs")]
    assert len(ids) == len(set(ids)) == 8
    assert resumed == reference
    assert all(resumed[k] == v for k, v in first.items())  # runs finished before the kill were kept
    assert all(m["final_accuracy"] > 0.6 for m in reference.values())


FAILING = TINY + """
  - task: robustness
    dataset: {name: digits, indices: [0, 1, 2]}
    model: mlp
    attacks: [none]
"""


def test_a_failing_run_is_recorded_and_the_suite_goes_on(tmp_path: Path) -> None:
    suite = suite_failing_at_run_time(FAILING % 1, "failing.yaml", block=1, indices=[0, 1, 99999])
    summary = run_suite(suite, tmp_path, progress=False)
    assert (summary.ok, summary.failed, summary.skipped) == (2, 1, 0)
    with Store.in_folder(tmp_path) as store:
        failed = store.runs(status="failed")
        assert len(failed) == 1 and "indices [99999] are out of range" in failed[0].error
        assert "Traceback" in failed[0].error
        ok = store.runs(status="ok")
        assert {r.meta["defense_label"] for r in ok} == {"none", "gaussian_noise(sigma=0.001)"}
        assert all((tmp_path / p).is_file() for r in ok for p in r.artefacts.values())
    again = run_suite(suite, tmp_path, progress=False)
    assert (again.executed, again.skipped) == (0, 3)  # a failed run is finished: not retried...
    retried = run_suite(suite, tmp_path, progress=False, retry_failed=True)
    assert (retried.executed, retried.failed) == (1, 1)  # ...unless asked


class _Ref:
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args


class FakeRay:
    """A stand-in for the ``ray`` module that runs each task when it is waited for."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.initialized_with: str | None = None
        self.fail = fail
        self.options: dict[str, Any] = {}
        self.cancelled: list[_Ref] = []

    def is_initialized(self) -> bool:
        return self.initialized_with is not None

    def init(self, address: str, **options: Any) -> None:
        self.initialized_with = address

    def remote(self, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        self.options = options

        class Remote:
            def __init__(self, fn: Callable[..., Any]) -> None:
                self.fn = fn

            def remote(self, *args: Any) -> _Ref:
                return _Ref(self.fn, args)

        return lambda fn: Remote(fn)

    def wait(self, refs: list[_Ref], num_returns: int = 1) -> tuple[list[_Ref], list[_Ref]]:
        return refs[-num_returns:], refs[:-num_returns]  # out of submission order on purpose

    def get(self, ref: _Ref) -> Any:
        if ref.args[0].run_id in self.fail:
            raise RuntimeError("node lost")
        return ref.fn(*ref.args)

    def cancel(self, ref: _Ref) -> None:
        self.cancelled.append(ref)


def test_ray_dispatch_one_task_per_run_results_written_by_driver(tmp_path: Path) -> None:
    suite = parse_suite(TINY % 2, "tiny.yaml")
    lost = suite.runs[1].run_id
    fake = FakeRay(fail={lost})
    summary = run_suite(suite, tmp_path, backend=RayBackend("ray://head:10001", ray=fake), progress=False)
    assert fake.initialized_with == "ray://head:10001" and fake.options == {"num_cpus": 1.0}
    assert (summary.ok, summary.failed) == (3, 1)
    with Store.in_folder(tmp_path) as store:
        assert store.get(lost).status == "failed" and "RayTaskError: node lost" in store.get(lost).error
        assert [r.run_id for r in store.runs()] == [r.run_id for r in suite.runs]


def test_ray_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailableError, match=r"pip install 'fedarena\[ray\]'"):
        import_ray()
    (tmp_path / "ray").mkdir()  # a `ray` that fails to import, first on the path
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('ray is not installed (test)')\n")
    (tmp_path / "tiny.yaml").write_text(TINY % 1)
    out = tmp_path / "out"
    proc = subprocess.run(_fedarena("run", str(tmp_path / "tiny.yaml"), "--ray", "auto", "--out", str(out)),
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2 and "pip install 'fedarena[ray]'" in proc.stderr
    assert not out.exists()
