"""Validation that is really up front (issue 18): a suite that validates does not fail at run time.

Each case here used to start runs that then failed (a missing required parameter, an
aggregator's ``f`` the round's clients do not admit, indices past the end of the split,
missing data files, a partition with more clients than samples, …); now ``parse_suite``
reports all of them at once, each with its field path, before the first run. Also: the
shipped suites validate (with the data root; without it, those that need data say which
files are missing, and ``make demo``'s suite still validates), and a Ctrl-C while
workers start exits with the resume message and status 130, without a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedarena.benchmarks.harness.suite import SuiteError, load_suite, parse_suite
from fedarena.benchmarks.harness.suites import shipped_suites

ROOT = Path(__file__).resolve().parents[1]
NEEDS_DATA = {"dia", "gifd", "hyperfl", "ig_table", "mudhog_mix", "privacy", "privacy_utility", "robustness"}

ROBUST = """
runs:
  - task: robustness
    dataset: %s
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: %d, rounds: 1}
    attacks: [none]
    defenses: [%s]
"""

PRIVATE = """
runs:
  - task: privacy
    dataset: %s
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: %d, local: {algorithm: fedsgd, batch_size: 1}}
    attacks: [%s]
    defenses: [%s]
"""


def _problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(SuiteError) as err:
        parse_suite(text, "s.yaml")
    return err.value.problems


@pytest.fixture
def no_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root, offline (nothing may be downloaded)."""
    monkeypatch.setenv("FEDARENA_DATA", str(tmp_path / "empty-root"))
    monkeypatch.setenv("FEDARENA_OFFLINE", "1")
    return tmp_path / "empty-root"


def test_missing_required_parameter_is_named() -> None:
    (path, message), = _problems(PRIVATE % ("{name: digits, indices: [0, 1]}", 2, "dlg", "gaussian_noise"))
    assert path == "runs[0].defenses[0].params.sigma"
    assert message == "missing required parameter of privacy defense 'gaussian_noise' (float)"
    (path, message), = _problems(ROBUST % ("digits", 4, "{name: clipping}"))
    assert path == "runs[0].defenses[0].params.max_norm" and "privacy defense 'clipping'" in message


def test_aggregator_f_beyond_the_clients_of_a_round() -> None:
    (path, message), = _problems(ROBUST % ("digits", 10, "{name: krum, params: {f: 9}}"))
    assert path == "runs[0].defenses[0].params.f"
    assert "krum: f=9 is more than a round of 10 uploads admits (at most f=3: n >= 2f + 3)" in message
    # the bound is the round's uploads (clients_per_round), from the rule itself
    text = ROBUST.replace("rounds: 1}", "rounds: 1, clients_per_round: 5}") % (
        "digits", 10, "{name: krum, params: {f: 3}}, {name: bulyan, params: {f: 1}}, {name: trimmed_mean}")
    problems = _problems(text)
    assert [p for p, _ in problems] == ["runs[0].defenses[0].params.f", "runs[0].defenses[1].params.f"]
    assert "at most f=1" in problems[0][1] and "n >= 4f + 3" in problems[1][1]
    assert parse_suite(ROBUST % ("digits", 10, "{name: krum, params: {f: 3}}"), "s.yaml").runs


def test_indices_and_size_out_of_range() -> None:
    (path, message), = _problems(PRIVATE % ("{name: digits, indices: [0, 100000]}", 1, "dlg", "none"))
    assert path == "runs[0].dataset.indices"
    assert "has 1437 samples; indices [100000] are out of range" in message
    (path, message), = _problems(ROBUST % ("{name: digits, size: 5000}", 4, "fedavg"))
    assert path == "runs[0].dataset.size" and "1437 samples, fewer than size=5000" in message


def test_cifar10_indices_out_of_range(assets_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDARENA_DATA", str(assets_root))
    (path, message), = _problems(PRIVATE % ("{name: cifar10, split: test, indices: [0, 100000]}", 1, "dlg", "none"))
    assert path == "runs[0].dataset.indices" and "indices [100000] are out of range" in message
    assert "dataset 'cifar10' (test) has" in message


def test_missing_data_files_are_listed_once(no_data_root: Path) -> None:
    text = PRIVATE % ("{name: cifar10, split: test, indices: [0, 1]}", 2, "dlg", "none") + """
  - task: robustness
    dataset: mnist
    model: lenet
    federation: {clients: 4}
    attacks: [none]
  - task: privacy
    dataset: {name: cifar10, split: test, indices: [2, 3]}
    model: mlp
    attacks: [dlg]
"""
    problems = _problems(text)
    paths = [p for p, _ in problems]
    assert paths == ["runs[0].dataset", "runs[1].dataset", "runs[1].test_dataset", "runs[2].dataset"]
    cifar, mnist, mnist_test, again = (m for _, m in problems)
    assert "missing test_batch, batches.meta in " + str(no_data_root / "datasets" / "cifar-10-batches-py") in cifar
    assert "not downloaded: FEDARENA_OFFLINE=1" in cifar
    assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in mnist
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in mnist_test
    assert again == "dataset 'cifar10' (test) cannot be read (see runs[0].dataset)"


def test_missing_generator_weights(no_data_root: Path) -> None:
    (path, message), = _problems(PRIVATE % ("{name: digits, indices: [0]}", 1,
                                            "{name: generator_latent, params: {generator: mnist_gan}}", "none"))
    assert path == "runs[0].attacks[0].params.generator"
    assert "generator mnist_gan: missing G--300.ckpt in " + str(no_data_root / "weights" / "csinva-mnist") in message


def test_components_checked_with_the_blocks_sizes() -> None:
    """Model for the dataset's shape, data attacks for its classes, partitions for its samples."""
    text = """
runs:
  - task: robustness
    dataset: digits
    model: lenet5
    federation: {clients: 10}
    attacks: [{name: label_flip, params: {pairs: {1: 12}}, clients: 2}, {name: backdoor, params: {target: 11},
               clients: 2}]
  - task: privacy
    dataset: {name: digits, indices: [0, 1, 2, 3]}
    model: mlp
    federation: {clients: 5}
    attacks: [dlg]
  - task: robustness
    dataset: {name: digits, size: 40}
    model: mlp
    federation: {clients: 4}
    unreliable: {clients: 1, corruption: {name: low_resolution, params: {factor: 0.5}}}
    attacks: [none]
"""
    problems = dict(_problems(text))
    assert "needs inputs of at least 10x10 pixels" in problems["runs[0].model"]
    assert "1×8×8 images" in problems["runs[0].model"]
    assert "classes [12] do not exist" in problems["runs[0].attacks[0]"]
    assert "target 11 is not a class of digits" in problems["runs[0].attacks[1]"]
    assert "cannot give 5 clients at least one of 4 samples" in problems["runs[1].federation.partition"]
    assert "low_resolution" in problems["runs[2].unreliable.corruption"]
    assert len(problems) == 5


def test_several_problems_reported_together(no_data_root: Path) -> None:
    text = PRIVATE % ("{name: digits, indices: [0, 100000]}", 1, "dlg", "gaussian_noise") + """
  - task: robustness
    dataset: digits
    model: mlp
    federation: {clients: 10}
    attacks: [none]
    defenses: [{name: krum, params: {f: 9}}]
  - task: robustness
    dataset: fashion_mnist
    model: mlp
    attacks: [none]
"""
    problems = _problems(text)
    assert [p for p, _ in problems] == ["runs[0].defenses[0].params.sigma", "runs[0].dataset.indices",
                                        "runs[1].defenses[0].params.f", "runs[2].dataset", "runs[2].test_dataset"]


def test_shipped_suites_validate_with_the_data_root(assets_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDARENA_DATA", str(assets_root))
    for name, path in shipped_suites().items():
        start = time.perf_counter()
        assert load_suite(path).runs, name
        assert time.perf_counter() - start < 5.0, name  # ~0.1 s each once imported; generous for a busy machine


def test_shipped_suites_without_a_data_root(no_data_root: Path) -> None:
    suites = shipped_suites()
    assert NEEDS_DATA | {"quick"} == set(suites), "classify the new shipped suite here"
    assert load_suite(suites["quick"]).runs  # `make demo`: embedded data only
    for name in sorted(NEEDS_DATA):
        with pytest.raises(SuiteError) as err:
            load_suite(suites[name])
        first = err.value.problems[0]
        assert first[0].endswith("dataset") and "missing" in first[1] and str(no_data_root) in first[1], name


def _children(pid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(proc.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["validating", pytest.param("--workers", marks=pytest.mark.slow),
                                  pytest.param("--client-workers", marks=pytest.mark.slow)])
def test_ctrl_c_while_workers_start_exits_cleanly(mode: str, tmp_path: Path) -> None:
    """SIGINT to the whole process group (what a terminal's Ctrl-C does), while the driver
    imports and validates, or just after it started its first worker process."""
    suite = tmp_path / "s.yaml"
    suite.write_text(ROBUST.replace("rounds: 1}", "rounds: 50}") % ("digits", 4, "fedavg, median"))
    extra = {"validating": [], "--workers": ["--workers", "2"], "--client-workers": ["--client-workers", "2"]}[mode]
    cmd = [sys.executable, "-m", "fedarena.benchmarks.harness.cli", "run", str(suite), "--out", str(tmp_path / "out"),
           "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        if mode == "validating":
            time.sleep(1.5)  # importing torch and the registries takes seconds
        else:
            while not _children(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)  # the worker is importing torch
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    if mode == "validating":
        assert "\ninterrupted" in err  # during the imports of --device's check or of the suite validation
    else:
        assert "run the same command to resume" in err
