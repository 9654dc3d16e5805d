"""Provenance of stored runs (refuse / --fresh / resume), --device, and the harness's layering."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fedarena.benchmarks.harness.cli import build_parser, main
from fedarena.benchmarks.harness.device import resolve_device
from fedarena.benchmarks.harness.provenance import (
    Provenance,
    _git_state,
    code_fingerprint,
    current_provenance,
    same_code,
)
from fedarena.benchmarks.harness.runner import ProvenanceError, run_suite
from fedarena.benchmarks.harness.store import STORE_NAME, Store
from fedarena.benchmarks.harness.suite import parse_suite

ROOT = Path(__file__).resolve().parent.parent
A = Provenance("0.1.0", "abc123abc123", False, "2.13.0")
B = Provenance("0.1.0", "def456def456", False, "2.13.0")

ONE_RUN = """
suite: one
runs:
  - task: robustness
    dataset: {name: digits, size: 300}
    test_dataset: {name: digits, split: test, size: 100}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 2, rounds: 2, local: {lr: 0.2, batch_size: 32}}
    attacks: [none]
    defenses: [none]
"""


def _provenances(folder: Path) -> list[Provenance | None]:
    with Store.in_folder(folder) as store:
        return [r.provenance for r in store.runs()]


def test_other_code_refuses_to_resume_fresh_recomputes_same_code_resumes(tmp_path: Path) -> None:
    suite = parse_suite(ONE_RUN)
    out = tmp_path / "out"
    first = run_suite(suite, out, progress=False, provenance=A)
    assert (first.ok, first.skipped) == (1, 0) and _provenances(out) == [A]
    with Store.in_folder(out) as store:
        finished_at = store.runs()[0].finished_at
    assert run_suite(suite, out, progress=False, provenance=A).skipped == 1  # same code: resumes

    with pytest.raises(ProvenanceError) as err:
        run_suite(suite, out, progress=False, provenance=B)
    message = str(err.value)
    assert f"{out / STORE_NAME}" in message and "fedarena 0.1.0 at commit abc123abc123 (torch 2.13.0)" in message
    assert "this is fedarena 0.1.0 at commit def456def456" in message and "--fresh" in message and "--out" in message
    with Store.in_folder(out) as store:  # refused before anything ran or was written
        assert store.runs()[0].finished_at == finished_at and store.runs()[0].provenance == A

    dirty = replace(A, dirty=True, changes="0123456789ab")  # uncommitted edits on A's commit: other code too
    with pytest.raises(ProvenanceError, match="uncommitted changes"):
        run_suite(suite, out, progress=False, provenance=dirty)

    fresh = run_suite(suite, out, progress=False, provenance=B, fresh=True)
    assert (fresh.ok, fresh.skipped) == (1, 0) and _provenances(out) == [B]
    assert run_suite(suite, out, progress=False, provenance=B).skipped == 1


def test_a_store_from_before_provenance_is_migrated_and_refused(tmp_path: Path) -> None:
    """A schema-1 store (no provenance column) opens, gains the columns, and its runs count as other code."""
    db = tmp_path / STORE_NAME
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, suite TEXT NOT NULL, task TEXT NOT NULL, "
                     "status TEXT NOT NULL, config TEXT NOT NULL, meta TEXT NOT NULL, metrics TEXT NOT NULL, "
                     "artefacts TEXT NOT NULL, error TEXT, started_at REAL, finished_at REAL, seconds REAL, "
                     "worker TEXT)")
        conn.execute("INSERT INTO runs VALUES ('r1', 's', 'privacy', 'ok', '{}', '{}', '{\"psnr\": 1.0}', '{}', "
                     "NULL, 0, 1, 1, 'w')")
    with Store(db) as store:
        (record,) = store.runs()
        assert record.metrics == {"psnr": 1.0} and record.provenance is None and record.device is None
        assert store.stale_runs(["r1", "r2"], A) == {None: ["r1"]}


def test_show_prints_provenance_and_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    run_suite(parse_suite(ONE_RUN), out, progress=False, provenance=A, device="cpu")
    with Store.in_folder(out) as store:
        (record,) = store.runs()
    assert record.device == "cpu"
    assert main(["show", record.run_id[:8], "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "code: fedarena 0.1.0 at commit abc123abc123 (torch 2.13.0)" in text and "device: cpu" in text


def test_device_option_auto_resolves_to_cpu_here_and_bad_names_are_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "quick"]).device == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert parser.parse_args(["run", "quick", "--device", "auto"]).device == expected
    assert resolve_device("auto") == torch.device(expected)
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "quick", "--device", "gpu"])
    assert "device must be cpu, cuda, cuda:N or auto, got 'gpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_harness_metrics_and_figures_never_import_a_reproduction() -> None:
    code = ("import importlib, pkgutil, sys\n"
            "import fedarena.benchmarks.harness, fedarena.benchmarks.metrics, fedarena.benchmarks.figures\n"
            "for pkg in (fedarena.benchmarks.harness, fedarena.benchmarks.metrics, fedarena.benchmarks.figures):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "import fedarena.benchmarks.cli, fedarena.benchmarks.demo\n"
            "print(sorted(n for n in sys.modules if n.startswith('fedarena.benchmarks.')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = eval(done.stdout.strip().splitlines()[-1])
    assert {"fedarena.benchmarks.harness.tasks.privacy", "fedarena.benchmarks.harness.tasks.robustness",
            "fedarena.benchmarks.harness.engines.ray", "fedarena.benchmarks.metrics.lpips",
                "fedarena.benchmarks.figures.report"} <= set(loaded)
    assert not [n for n in loaded if n.startswith("fedarena.benchmarks.reproductions")], loaded


def test_device_check_without_cuda_says_nothing_was_checked() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "fedarena.benchmarks.device_check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "no CUDA device: nothing checked"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_git_state_commit_and_fingerprint_of_uncommitted_code(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    assert _git_state(tmp_path) == (None, None)  # not a checkout
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("# notes\n")
    git("add", "-A")
    git("commit", "-qm", "init")
    head = git("rev-parse", "--short=12", "HEAD")
    assert _git_state(tmp_path) == (head, None)
    (tmp_path / "notes.md").write_text("# notes, edited\n")  # not code: still clean
    assert _git_state(tmp_path) == (head, None)
    (tmp_path / "a.py").write_text("x = 2\n")
    commit, first = _git_state(tmp_path)
    assert commit == head and first is not None
    assert _git_state(tmp_path) == (head, first)  # the same edits: the same code
    (tmp_path / "b.py").write_text("y = 1\n")  # an untracked module is code
    _, second = _git_state(tmp_path)
    assert second not in (None, first)
    (tmp_path / "sub").mkdir()
    assert _git_state(tmp_path / "sub") == (None, None)  # inside, but not the top of, a checkout


def test_current_provenance_names_this_checkout() -> None:
    prov = current_provenance()
    from fedarena.fl_core import __version__

    assert prov.fedarena == __version__ and prov.torch == torch.__version__
    if shutil.which("git") and (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert prov.commit == head and prov.dirty == (prov.changes is not None)


def test_cli_run_refuses_a_store_of_other_code_and_fresh_recomputes(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    suite_file = tmp_path / "one.yaml"
    suite_file.write_text(ONE_RUN)
    out = tmp_path / "out"
    run_suite(parse_suite(ONE_RUN), out, progress=False, provenance=B)
    assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "commit def456def456" in err and "resume with --fresh" in err
    assert main(["run", str(suite_file), "--out", str(out), "--no-progress", "--fresh", "--device", "auto"]) == 0
    assert _provenances(out) == [current_provenance()]
    assert main(["run", str(suite_file), "--out", str(out), "--no-progress"]) == 0
    assert "0 ok, 0 failed, 1 already done" in capsys.readouterr().err


def test_code_fingerprint_survives_a_docs_only_commit_and_changes_with_code(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "suite.yaml").write_text("suite: s\n")
    (tmp_path / "README.md").write_text("# r\n")
    git("add", "-A")
    git("commit", "-qm", "init")
    before = code_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("# results table, rewritten\n")
    (tmp_path / "docs.md").write_text("new page\n")
    git("add", "-A")
    git("commit", "-qm", "docs only")
    assert code_fingerprint(tmp_path) == before  # a docs-only commit: the same code
    (tmp_path / "suite.yaml").write_text("suite: t\n")
    assert code_fingerprint(tmp_path) != before  # an uncommitted suite edit is code
    git("checkout", "-q", "--", "suite.yaml")
    (tmp_path / "b.py").write_text("y = 1\n")
    assert code_fingerprint(tmp_path) != before  # an untracked module is code
    (tmp_path / "b.py").unlink()
    (tmp_path / "a.py").unlink()
    assert code_fingerprint(tmp_path) != before  # a tracked module deleted from the tree
    git("checkout", "-q", "--", "a.py")
    assert code_fingerprint(tmp_path) == before
    plain = tmp_path / "plain"  # no git: the package folders' files, hashed directly
    (plain / "fl_core").mkdir(parents=True)
    (plain / "fl_core" / "m.py").write_text("z = 1\n")
    first = code_fingerprint(plain)
    (plain / "notes.md").write_text("n\n")
    assert code_fingerprint(plain) == first
    (plain / "fl_core" / "m.py").write_text("z = 2\n")
    assert code_fingerprint(plain) != first


def test_same_code_compares_the_fingerprint_not_the_commit(tmp_path: Path) -> None:
    a, docs_commit = replace(A, code="c0de00000000"), replace(B, code="c0de00000000")
    edited = replace(B, code="c0de11111111")
    assert same_code(a, docs_commit) and not same_code(a, edited) and not same_code(None, a)
    assert not same_code(a, replace(docs_commit, torch="2.14.0"))
    assert not same_code(A, B) and same_code(A, A)  # no fingerprint stored: every field must match
    suite = parse_suite(ONE_RUN)
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, provenance=a)
    assert run_suite(suite, out, progress=False, provenance=docs_commit).skipped == 1  # resumes after a docs commit
    with pytest.raises(ProvenanceError, match="code c0de00000000"):
        run_suite(suite, out, progress=False, provenance=edited)
