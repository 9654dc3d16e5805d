"""Issue 14 (harness part): one driver per folder, no ok row lost, stale temporaries only, store and
--out errors explained, read-only commands that never write, bad artefacts skipped, LPIPS refusal,
ε under both adjacencies; and a fault-injection test over the whole harness (real processes)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fedarena.benchmarks.harness.atomic import clean_temporaries
from fedarena.benchmarks.harness.cli import main
from fedarena.benchmarks.harness.lock import LOCK_NAME, OutputFolderError, held
from fedarena.benchmarks.harness.report import write_report
from fedarena.benchmarks.harness.runner import run_suite
from fedarena.benchmarks.harness.store import STORE_NAME, RunResult, Store, SuiteCollisionError
from fedarena.benchmarks.harness.suite import RunSpec, Suite, parse_suite
from fedarena.benchmarks.metrics import privacy as privacy_metrics
from fedarena.benchmarks.metrics.lpips import ALEXNET_FILE, HEADS_FILE, load_lpips

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _suite(name: str = "one", seeds: str = "[0]", rounds: int = 2, extra: str = "") -> str:
    return f"""
suite: {name}
runs:
  - task: robustness
    dataset: {{name: digits, size: 300}}
    test_dataset: {{name: digits, split: test, size: 100}}
    model: {{name: mlp, params: {{hidden: [8]}}}}
    federation: {{clients: 2, rounds: {rounds}, local: {{lr: 0.2, batch_size: 32}}}}
    attacks: [none]
    defenses: [none{extra}]
    seeds: {seeds}
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "fedarena.benchmarks.harness.cli", *args], cwd=ROOT, env=_env(),
                          capture_output=True,
                          text=True, timeout=timeout)


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root or "
                    "CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)


# ------------------------------------------------------------------ 1: one driver per folder; ok never replaced


def test_a_second_driver_is_refused_and_the_lock_dies_with_its_holder(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen([PY, "-c", "import sys, time; from fedarena.benchmarks.harness.lock import FolderLock; "
                               f"FolderLock({str(out)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
                              cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert held(out)
        with pytest.raises(OutputFolderError, match=rf"in use by another `fedarena run` \(pid {holder.pid} since"):
            run_suite(parse_suite(_suite()), out, progress=False)
        suite_file = tmp_path / "one.yaml"
        suite_file.write_text(_suite())
        assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 2
        assert "one driver per output folder" in capsys.readouterr().err
        assert not (out / STORE_NAME).exists()  # refused before anything was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not held(out)  # the kernel released the lock with its (killed) holder
    assert run_suite(parse_suite(_suite()), out, progress=False).ok == 1


def test_a_failure_never_replaces_an_ok_row(tmp_path: Path) -> None:
    spec = RunSpec("a" * 16, "s", {"task": "robustness", "seed": 0}, {})
    with Store.in_folder(tmp_path) as store:
        store.register_suite(Suite("s", "", (spec,), "s.yaml", ""))
        assert store.record(spec, RunResult(spec.run_id, "ok", {"acc": 0.9}), {})
        assert not store.record(spec, RunResult(spec.run_id, "failed", error="WorkerCrash: died"), {})
        assert store.get(spec.run_id).status == "ok" and store.get(spec.run_id).metrics == {"acc": 0.9}
        assert store.record(spec, RunResult(spec.run_id, "ok", {"acc": 0.8}), {})  # --fresh: ok over ok
        assert store.get(spec.run_id).metrics == {"acc": 0.8}


# ------------------------------------------------------------------ 2: only provably stale temporaries


def test_clean_temporaries_spares_a_live_writers_file(tmp_path: Path) -> None:
    folder = tmp_path / "artefacts" / "r"
    writer = subprocess.Popen([PY, "-c", "import os, sys, tempfile, time; "
                               f"fd, p = tempfile.mkstemp(prefix='.history.json.' + str(os.getpid()) + '.', "
                               f"suffix='.tmp', dir={str(folder)!r}); print(p, flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True) if folder.mkdir(parents=True) is None else None
    assert writer is not None and writer.stdout is not None
    try:
        tmp = Path(writer.stdout.readline().strip())
        old = folder / ".fig.png.abcdef.tmp"  # no owner in the name (an older FedArena): cannot be proven stale
        old.write_bytes(b"?")
        assert clean_temporaries(tmp_path) == 0 and tmp.exists() and old.exists()  # the writer is alive
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert clean_temporaries(tmp_path) == 1 and not tmp.exists() and old.exists()


# ------------------------------------------------------------------ 3: damaged stores; read-only commands


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif how == "garbage":
        path.write_bytes(b"this is not a database " * 400)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "schema":
        with contextlib.closing(sqlite3.connect(path)) as c:
            c.execute("ALTER TABLE runs DROP COLUMN metrics")
            c.execute("DROP TABLE suites")
            c.commit()


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "schema"])
def test_a_damaged_store_is_an_explained_error_in_run_report_and_show(tmp_path: Path, how: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    suite_file = tmp_path / "one.yaml"
    suite_file.write_text(_suite(rounds=1))
    assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 0
    with Store.in_folder(out) as store:
        rid = store.runs()[0].run_id
    capsys.readouterr()
    _damage(out / STORE_NAME, how)
    before = _sha(out)
    for argv in (["report", str(out)], ["show", rid[:8], "--out", str(out)],
                 ["run", str(suite_file), "--out", str(out), "--no-progress"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "\nerror: " in "\n" + err and str(out / STORE_NAME) in err and "Traceback" not in err, (argv, err)
        assert any(w in err for w in ("damaged", "empty (0 bytes)", "not a FedArena")), err
        assert any(w in err for w in ("move it aside", "delete it", "restore it")), err
        if argv[0] != "run":
            assert _sha(out) == before  # read-only commands wrote nothing, report files included


def test_read_only_commands_read_a_read_only_folder_and_write_nothing(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    suite_file = tmp_path / "one.yaml"
    suite_file.write_text(_suite(rounds=1))
    with _tmpfs(tmp_path / "ro") as mnt:
        out = mnt / "out"
        assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 0
        with Store.in_folder(out) as store:
            rid = store.runs()[0].run_id
        listing = sorted(p.name for p in out.iterdir())
        _remount(mnt, "ro")
        capsys.readouterr()
        assert main(["show", rid[:8], "--out", str(out)]) == 0
        assert f"run {rid}" in capsys.readouterr().out
        assert main(["report", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"cannot write the report into {out}" in err and "the store was only read" in err
        assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 2
        assert f"--out {out}: cannot create {LOCK_NAME}" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == listing
        _remount(mnt, "rw")
        assert main(["show", rid[:8], "--out", str(out)]) == 0  # writable again, no driver: nothing created
        assert sorted(p.name for p in out.iterdir()) == listing


# ------------------------------------------------------------------ 9: --out


def test_out_that_is_a_file_or_under_a_file_is_an_explained_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    suite_file = tmp_path / "one.yaml"
    suite_file.write_text(_suite())
    file = tmp_path / "file"
    file.write_text("x")
    for out, message in ((file, f"--out {file} is a file, not a folder"),
                         (file / "sub" / "dir", f"{file} is a file, so no folder can be created under it")):
        assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    if os.geteuid() != 0:  # root ignores permission bits; the read-only tmpfs test covers root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["run", str(suite_file), "--out", str(locked / "x"), "--no-progress"]) == 2
        assert "cannot create the folder" in capsys.readouterr().err


# ------------------------------------------------------------------ 10: artefacts, collisions, escaping


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_report_skips_bad_reconstructions_keeps_paths_inside_and_escapes_html(tmp_path: Path) -> None:
    good = {"truth": torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "reconstruction": torch.ones(2, 1, 8, 8,
                                                                                               dtype=torch.uint8),
            "psnr": torch.tensor([10.0, 11.0])}
    bad = {"keyless": {"truth": good["truth"]}, "shape": {**good, "reconstruction": torch.ones(3, 1, 8, 8,
                                                                                               dtype=torch.uint8)},
           "list": [1, 2, 3]}
    specs, files = [], {}
    for i, name in enumerate(["good", "malicious", "truncated", "keyless", "shape", "list", "escape", "missing"]):
        spec = RunSpec(f"{i:016d}", "s", {"task": "privacy", "seed": 0, "attack": {"name": f"a{i}"},
                                          "defense": {"name": "none"}},
                       {"attack_label": f"<script>alert({i})</script>", "defense_label": "none", "block_label": "b"})
        specs.append(spec)
        path = tmp_path / "artefacts" / spec.run_id / "reconstruction.pt"
        path.parent.mkdir(parents=True)
        if name == "good":
            torch.save(good, path)
        elif name == "malicious":
            torch.save({"truth": _Payload()}, path)
        elif name == "truncated":
            torch.save(good, path)
            path.write_bytes(path.read_bytes()[:100])
        elif name in bad:
            torch.save(bad[name], path)
        files[spec.run_id] = ("../" * 8 + "etc/passwd" if name == "escape" else
                              f"artefacts/{spec.run_id}/reconstruction.pt")
        if name == "missing":
            path.unlink(missing_ok=True)
    with Store.in_folder(tmp_path) as store:
        store.register_suite(Suite("s", "", tuple(specs), "s.yaml", ""))
        for spec in specs:
            store.record(spec, RunResult(spec.run_id, "ok", {"psnr": 10.0}), {"reconstruction.pt": files[spec.run_id]})
    md = write_report(tmp_path).markdown.read_text()
    skipped = md.split("## Skipped artefacts", 1)[1]
    for spec in specs[1:]:
        assert spec.run_id in skipped, spec.run_id
    assert "leaves the result folder" in skipped and "not a valid tensor file" in skipped
    assert "lacks truth/reconstruction/psnr" in skipped and "shaped unlike a reconstruction" in skipped
    assert "is missing" in skipped and "pwned" not in md
    assert specs[0].run_id not in skipped and "reconstructions" in md  # the good one is drawn
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md


def test_a_second_suite_with_the_same_name_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_suite(parse_suite(_suite(seeds="[0, 1]"), "first.yaml"), out, progress=False)
    with pytest.raises(SuiteCollisionError, match=r"already holds suite 'one' from first.yaml with 2 stored runs"):
        run_suite(parse_suite(_suite(seeds="[5]"), "second.yaml"), out, progress=False)
    grown = run_suite(parse_suite(_suite(seeds="[0, 1, 2]"), "first.yaml"), out, progress=False)  # adds a seed: fine
    assert (grown.skipped, grown.ok) == (2, 1)
    with Store.in_folder(out) as store:
        assert store.suites()[0]["planned"] == 3 and len(store.runs()) == 3


# ------------------------------------------------------------------ 11: tampered LPIPS weights


def test_tampered_lpips_weights_are_refused_once_and_privacy_runs_go_on(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    for parts in (ALEXNET_FILE, HEADS_FILE):
        path = root.joinpath("weights", *parts)
        path.parent.mkdir(parents=True)
        torch.save({"w": _Payload()}, path)
    feats = root.joinpath("weights", *ALEXNET_FILE)
    result = load_lpips(root)
    assert result.reason == f"LPIPS unavailable: {feats} is not a valid weights file"  # type: ignore[union-attr]
    monkeypatch.setenv("FEDARENA_DATA", str(root))
    privacy_metrics._lpips.cache_clear()
    try:
        suite = parse_suite("""
suite: lp
runs:
  - task: privacy
    dataset: {name: digits, indices: [0, 7]}
    model: {name: mlp, params: {hidden: [16]}}
    federation: {clients: 2, local: {algorithm: fedsgd, batch_size: 1}}
    attacks: [{name: inverting_gradients, params: {iterations: 5}}]
    defenses: [none]
""")
        assert run_suite(suite, tmp_path / "out", progress=False).ok == 1
    finally:
        privacy_metrics._lpips.cache_clear()
    with Store.in_folder(tmp_path / "out") as store:
        metrics = store.runs()[0].metrics
    assert metrics["lpips"] is None and metrics["lpips_note"] == result.reason  # type: ignore[union-attr]


# ------------------------------------------------------------------ ε under both adjacencies (issue 13)


def test_local_dp_runs_store_and_report_epsilon_under_both_adjacencies(tmp_path: Path) -> None:
    from fedarena.benchmarks.reproductions.privacy_utility.table import _eps_cell

    suite = parse_suite(_suite(extra=", {name: dp_fedavg, params: {mode: local, noise_multiplier: 1.0}}"))
    run_suite(suite, tmp_path, progress=False)
    with Store.in_folder(tmp_path) as store:
        runs = {r.meta["defense_label"]: r.metrics for r in store.runs()}
    none, dp = runs.pop("none"), next(iter(runs.values()))
    assert none["epsilon"] is None and none["epsilon_by_adjacency"] == {}
    eps = dp["epsilon_by_adjacency"]
    assert set(eps) == {"add_remove", "replace"} and eps["add_remove"] == dp["epsilon"] < eps["replace"]
    md = write_report(tmp_path).markdown.read_text()
    assert "| ε add/remove | ε replace |" in md and f"| {eps['add_remove']:.2f} | {eps['replace']:.2f} |" in md
    assert "replace-one adjacency (sensitivity 2C" in md
    assert _eps_cell(19.047, {"add_remove": 19.047, "replace": 48.8}) == "19.05 / 48.80"
    assert _eps_cell(19.047, None) == "19.05 / ?" and _eps_cell(None, {}) == "–"
    assert _eps_cell(3.0, {"add_remove": 3.0}) == "3.00 / –"  # replace not accounted (DP-SGD)


# ------------------------------------------------------------------ fault injection over the whole harness


def _rows(out: Path) -> list[tuple[str, str, float, str | None]]:
    with Store.in_folder(out) if not held(out) else Store(out / STORE_NAME, readonly=True) as store:
        return [(r.run_id, r.status, r.finished_at or 0.0, r.error) for r in store.runs()]


def _spawned_worker(driver: int) -> int | None:
    """The pid of one of ``driver``'s spawned pool workers (not its resource tracker), if it has one."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == driver and b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            return int(proc.name)
    return None


def _wait(condition: object, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_fault_injection_two_drivers_killed_worker_and_driver_full_disk_corrupted_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite_file = tmp_path / "faults.yaml"
    suite_file.write_text(_suite(name="faults", seeds="[0, 1, 2, 3, 4, 5]", rounds=60))
    planned = 6
    with _tmpfs(tmp_path / "disk", "8m") as mnt:
        out = mnt / "out"
        driver = subprocess.Popen([PY, "-m", "fedarena.benchmarks.harness.cli", "run", str(suite_file), "--out",
                                   str(out),
                                   "--workers", "2", "--no-progress"], cwd=ROOT, env=_env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait(lambda: held(out) and (out / STORE_NAME).exists(), "driver A to lock the folder")
            # a second driver on the same folder: refused at once, nothing of A's touched
            assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 2
            assert "in use by another `fedarena run`" in capsys.readouterr().err
            # a worker killed mid-suite: its run is recorded as failed with the reason, the suite goes on
            _wait(lambda: any(st == "ok" for _, st, _, _ in _rows(out)), "a first finished run")
            _wait(lambda: _spawned_worker(driver.pid) is not None, "the pool worker")
            os.kill(_spawned_worker(driver.pid) or 0, signal.SIGKILL)
            _wait(lambda: any(st == "failed" for _, st, _, _ in _rows(out)) or driver.poll() is not None,
                  "the crash to be recorded")
            # then the driver itself killed (-9): the lock dies with it
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        assert not held(out)
        first = _rows(out)
        ok_before = {rid: at for rid, st, at, _ in first if st == "ok"}
        failed = [err for _, st, _, err in first if st == "failed"]
        assert ok_before and failed and all(e and e.startswith("WorkerCrash: worker") for e in failed)

        # disk full: the resume stops with an explained error; nothing stored is lost
        filler = mnt / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        capsys.readouterr()
        assert main(["run", str(suite_file), "--out", str(out), "--retry-failed", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "error: " in err and ("disk is full" in err or "No space left" in err) and "Traceback" not in err, err
        filler.unlink()
        assert {rid: at for rid, st, at, _ in _rows(out) if st == "ok"} == ok_before

        # a corrupted store: explained errors from run, report and show; the backup restores it
        store_file = out / STORE_NAME
        backup = store_file.read_bytes()
        store_file.write_bytes(b"\x00garbage" * 500)
        for argv in (["run", str(suite_file), "--out", str(out), "--no-progress"], ["report", str(out)],
                     ["show", "0", "--out", str(out)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert str(store_file) in err and "not a FedArena result store" in err and "Traceback" not in err
        store_file.write_bytes(backup)

        # resume: every planned run once, every earlier ok result untouched
        assert main(["run", str(suite_file), "--out", str(out), "--retry-failed", "--no-progress"]) == 0
        final = _rows(out)
        assert len(final) == len({rid for rid, *_ in final}) == planned  # zero duplicates
        assert all(st == "ok" for _, st, _, _ in final)
        assert {rid: at for rid, st, at, _ in final if rid in ok_before} == ok_before  # zero finished results lost
        assert not list((out / "artefacts").rglob(".*.tmp"))  # the killed driver's temporaries cleaned
