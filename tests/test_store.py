"""The SQLite result store and atomic artefact writes."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fedarena.benchmarks.harness.atomic import clean_temporaries, write_atomic
from fedarena.benchmarks.harness.runner import save_artefacts
from fedarena.benchmarks.harness.store import RunResult, Store
from fedarena.benchmarks.harness.suite import RunSpec, Suite


def _spec(i: int, suite: str = "s") -> RunSpec:
    config = {"task": "robustness", "seed": i, "x": [1, 2]}
    return RunSpec(str(i) * 16, suite, config, {"attack_label": "none", "defense_label": f"d{i}"})


def _result(spec: RunSpec, status: str = "ok", **metrics: float) -> RunResult:
    return RunResult(spec.run_id, status, dict(metrics), {}, None if status == "ok" else "boom", 10.0, 12.5, "w:1")


def test_record_roundtrip_order_and_lookup(tmp_path: Path) -> None:
    specs = [_spec(i) for i in range(3)]
    with Store.in_folder(tmp_path) as store:
        store.register_suite(Suite("s", "demo", tuple(specs), "s.yaml", "runs: []"))
        assert store.record(specs[1], _result(specs[1], "failed"), {})  # a first attempt fails
        for spec in reversed(specs):  # finish out of order; the ok retry replaces the failed row
            assert store.record(spec, _result(spec, acc=0.5 + spec.config["seed"], bad=math.nan),
                                {"a.png": "x/a.png"})
        assert not store.record(specs[1], _result(specs[1], "failed"), {})  # never a failure over an ok row
    with Store(tmp_path / "results.sqlite") as store:
        runs = store.runs("s")
        assert [r.run_id for r in runs] == [s.run_id for s in specs]  # suite order, one row each
        assert runs[0].metrics == {"acc": 0.5, "bad": None} and runs[0].artefacts == {"a.png": "x/a.png"}
        assert runs[0].config == specs[0].config and runs[0].meta == specs[0].meta
        assert runs[0].seconds == pytest.approx(2.5) and runs[0].worker == "w:1"
        assert runs[1].status == "ok" and runs[1].error is None and runs[1].metrics["acc"] == 1.5
        assert store.statuses() == {specs[0].run_id: "ok", specs[1].run_id: "ok", specs[2].run_id: "ok"}
        assert store.get("22").run_id == specs[2].run_id == store.get(specs[2].run_id).run_id
        with pytest.raises(KeyError, match="matches 3 runs"):
            store.get("")
        with pytest.raises(KeyError, match="no run"):
            store.get("zzz")
        assert store.suites()[0]["planned"] == 3
        assert [rid for rid, _, _ in store.planned("s")] == [s.run_id for s in specs]
        with pytest.raises(ValueError, match="status"):
            store.record(specs[0], _result(specs[0], "running"), {})


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    spec = _spec(1)
    with Store.in_folder(tmp_path) as store:
        with pytest.raises(RuntimeError), store.transaction() as c:
            c.execute("INSERT INTO runs (run_id, suite, task, status, config, meta, metrics, artefacts) "
                      "VALUES (?, 's', 't', 'ok', '{}', '{}', '{}', '{}')", (spec.run_id,))
            raise RuntimeError("killed mid-write")
        assert store.statuses() == {}


def test_killed_writer_never_leaves_a_partial_row(tmp_path: Path) -> None:
    """A process killed right after opening its transaction: the store shows no trace of it."""
    db = tmp_path / "results.sqlite"
    Store(db).close()
    root = str(Path(__file__).resolve().parent.parent)
    code = "\n".join([
        f"import os, signal, sys; sys.path.insert(0, {root!r})",
        "from fedarena.benchmarks.harness.store import Store",
        f"s = Store({str(db)!r})",
        "with s.transaction() as c:",
        "    c.execute(\"INSERT INTO runs (run_id, suite, task, status, config, meta, metrics, artefacts) "
        "VALUES ('abc', 's', 't', 'ok', '{}', '{}', '{}', '{}')\")",
        "    os.kill(os.getpid(), signal.SIGKILL)",
    ])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_write_atomic_replaces_or_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "fig.png"
    write_atomic(target, b"old")
    assert target.read_bytes() == b"old" and oct(target.stat().st_mode & 0o777) == "0o644"
    write_atomic(target, "new text")
    assert target.read_text() == "new text"

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"x" * 100_000)
    assert target.read_text() == "new text"
    assert [p.name for p in target.parent.iterdir()] == ["fig.png"]  # no temporary left behind


def test_clean_temporaries_and_artefact_names(tmp_path: Path) -> None:
    (tmp_path / "r1").mkdir()
    gone = subprocess.Popen(["true"])  # a writer that has exited: its temporaries are provably stale
    gone.wait()
    (tmp_path / "r1" / f".fig.png.{gone.pid}.abc.tmp").write_bytes(b"half")
    (tmp_path / "r1" / "fig.png").write_bytes(b"whole")
    assert clean_temporaries(tmp_path) == 1
    assert [p.name for p in (tmp_path / "r1").iterdir()] == ["fig.png"]
    paths = save_artefacts(tmp_path, "rid", {"b.pt": b"2", "a.png": b"1"})
    assert paths == {"a.png": "artefacts/rid/a.png", "b.pt": "artefacts/rid/b.pt"}
    assert (tmp_path / paths["b.pt"]).read_bytes() == b"2"
    for bad in ("../x", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="plain file name"):
            save_artefacts(tmp_path, "rid", {bad: b""})
