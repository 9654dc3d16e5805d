"""Hostile and careless suite files (issue 14, items 8 and 9): each a ``SuiteError`` naming the file
and the field path, raised before any run is built, in well under a second."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedarena.benchmarks.cli import main
from fedarena.benchmarks.harness.run_count import DEFAULT_MAX_RUNS, planned_runs
from fedarena.benchmarks.harness.safe_yaml import MAX_NODES, YamlInputError, load_yaml
from fedarena.benchmarks.harness.suite import SuiteError, load_suite, parse_suite

SUITE = """
suite: small
runs:
  - task: robustness
    dataset: digits
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 4, rounds: 1, server_lr: 1.0, local: {lr: 0.1, momentum: 0.0, batch_size: 16}}
    attacks: [none]
    defenses: [none]
    seeds: [0]
"""


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging) when a parse takes more than 20 s: the old loader took minutes."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("suite validation ran for more than 20 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def problems(text: str, **kwargs: object) -> dict[str, str]:
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml", **kwargs)
    assert str(info.value).startswith("s.yaml: invalid suite")
    return dict(info.value.problems)


# ----------------------------------------------------------------------------- non-finite numbers

@pytest.mark.parametrize("old, new, path", [
    ("lr: 0.1", "lr: .inf", "runs[0].federation.local.lr"),
    ("momentum: 0.0", "momentum: .inf", "runs[0].federation.local.momentum"),
    ("server_lr: 1.0", "server_lr: .inf", "runs[0].federation.server_lr"),
    ("defenses: [none]", "defenses: [{name: norm_clipping, params: {max_norm: .inf}}]",
     "runs[0].defenses[0].params.max_norm"),
    ("attacks: [none]", "attacks: [{name: additive_noise, params: {std: -.inf}, clients: 1}]",
     "runs[0].attacks[0].params.std"),
    ("lr: 0.1", "lr: {grid: [0.1, .nan]}", "runs[0].federation.local.lr.grid[1]"),
])
def test_non_finite_numbers_name_the_field(old: str, new: str, path: str) -> None:
    """Before: ``ValueError: Out of range float values are not JSON compliant`` from the run id."""
    assert old in SUITE
    found = problems(SUITE.replace(old, new))
    assert list(found) == [path]
    assert found[path].startswith("must be a finite number; got ")


def test_integer_beyond_float_range_names_the_field() -> None:
    """Before: ``OverflowError: int too large to convert to float``."""
    found = problems(SUITE.replace("lr: 0.1", "lr: " + "9" * 400))
    assert found == {"runs[0].federation.local.lr": "must be a finite number; got an integer of 400 digits, "
                                                    "beyond the range of a float"}


def test_non_finite_numbers_in_unused_definitions_are_ignored() -> None:
    assert len(parse_suite("definitions: {x: .inf}\n" + SUITE, "s.yaml").runs) == 1


# ----------------------------------------------------------------------------- file and encoding

def test_non_utf8_suite_file_names_the_file_and_position(tmp_path: Path) -> None:
    """Before: a bare ``UnicodeDecodeError``."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(SUITE.replace("small", "caf\xe9").encode("latin-1"))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid suite")
    assert "is not UTF-8 text: byte 0xe9 at offset 11 (line 2)" in message


def test_suite_path_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "suite.yaml"
    folder.mkdir()
    with pytest.raises(SuiteError, match="is a directory, not a suite file"):
        load_suite(folder)
    assert main(["run", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"error: {folder}: invalid suite" in err and "is a directory" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- duplicate keys

@pytest.mark.parametrize("old, new, path, lines", [
    ("    seeds: [0]\n", "    seeds: [0]\n    seeds: [1, 2]\n", "runs[0].seeds", (10, 11)),
    ("{lr: 0.1,", "{lr: 0.1, lr: 0.5,", "runs[0].federation.local.lr", (7, 7)),
    ("    seeds: [0]\n", "    seeds: [0]\nsuite: other\n", "suite", (2, 11)),
    ("hidden: [8]", "hidden: [8], hidden: [64]", "runs[0].model.params.hidden", (6, 6)),
])
def test_duplicate_keys_are_refused_with_their_path(old: str, new: str, path: str, lines: tuple[int, int]) -> None:
    """Before: the last value silently won."""
    assert old in SUITE
    found = problems(SUITE.replace(old, new))
    assert found == {path: f"duplicate key (first at line {lines[0]}, again at line {lines[1]}); YAML would "
                           "silently keep the last value"}


def test_merge_keys_may_still_be_overridden() -> None:
    text = """
definitions:
  base: &base {task: robustness, dataset: digits, model: {name: mlp, params: {hidden: [8]}}, attacks: [none]}
runs:
  - <<: *base
    seeds: [0, 1]
  - <<: *base
    model: {name: mlp, params: {hidden: [4]}}
"""
    suite = parse_suite(text, "s.yaml")
    assert [r.config["model"]["params"]["hidden"] for r in suite.runs] == [[8], [8], [4]]


# ----------------------------------------------------------------------------- alias bombs

def alias_bomb(levels: int, width: int = 10) -> str:
    """The "billion laughs": ``levels`` lists of ``width`` aliases to the previous list."""
    lines = ["definitions:", "  l0: &l0 [" + ", ".join(["0"] * width) + "]"]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + SUITE.replace("hidden: [8]", f"hidden: *l{levels - 1}")


def test_alias_bomb_is_refused_at_once(deadline: None) -> None:
    """A ~600-byte file whose aliases expand to 10^9 values: over 90 s of validation before."""
    text = alias_bomb(9)
    assert len(text) < 1000
    start = time.perf_counter()
    found = problems(text)
    assert time.perf_counter() - start < 1.0
    assert found == {"": f"expands to more than {MAX_NODES} YAML nodes once its aliases (*name) are resolved "
                         "(an alias bomb?)"}


def test_recursive_and_deep_aliases_are_refused(deadline: None) -> None:
    found = problems("definitions:\n  loop: &loop [1, *loop]\n" + SUITE)
    assert list(found) == ["definitions.loop[1]"] and "contains it" in found["definitions.loop[1]"]
    chain = "".join(f"  c{i}: &c{i} [*c{i - 1}]\n" for i in range(1, 200))
    found = problems("definitions:\n  c0: &c0 [1]\n" + chain + SUITE)
    assert len(found) == 1 and next(iter(found.values())).startswith("nests more than 64 levels deep")
    assert problems("x: " + "[" * 5000 + "]" * 5000) == {"": "nests too deeply (more than 64 levels)"}


def test_bounded_loader_matches_safe_load_and_stays_safe() -> None:
    import yaml

    text = alias_bomb(3) + "\nextra: {a: !!binary aGk=, b: 2001-12-14, c: [1, 2.5, null, true]}\n"
    assert load_yaml(text) == yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        load_yaml("x: !!python/object/apply:os.system ['true']")
    with pytest.raises(YamlInputError, match="more than 50 YAML nodes"):
        load_yaml(alias_bomb(3), max_nodes=50)


# ----------------------------------------------------------------------------- run-count limit

def test_run_count_is_capped_before_expanding(deadline: None) -> None:
    """``seeds: 100000000`` never finished validating before (it built every run)."""
    for seeds in (300_000, 100_000_000):
        start = time.perf_counter()
        found = problems(SUITE.replace("seeds: [0]", f"seeds: {seeds}"))
        assert time.perf_counter() - start < 1.0
        assert found == {"runs": f"the suite plans {seeds} runs (runs[0]: {seeds}), more than the limit of "
                                 f"{DEFAULT_MAX_RUNS} (the default); check the seeds and grids, or raise the limit "
                                 "with 'max_runs: N' at the top of the suite or 'fedarena run --max-runs N'"}


def test_run_count_limit_counts_grids_and_blocks_and_can_be_raised() -> None:
    block = SUITE.split("runs:\n", 1)[1].replace("seeds: [0]", "seeds: 3").replace(
        "lr: 0.1", "lr: {grid: [0.1, 0.2]}").replace("defenses: [none]", "defenses: {grid: [[none], [none, none]]}")
    text = "suite: many\nruns:\n" + block + block
    assert planned_runs(load_yaml(text)["runs"][0]) == 2 * (1 + 2) * 3
    found = problems("max_runs: 35\n" + text)
    assert found["runs"].startswith("the suite plans 36 runs (runs[0]: 18, runs[1]: 18), more than the limit of 35 "
                                    "(max_runs)")
    assert len(parse_suite("max_runs: 36\n" + text, "s.yaml").runs) == 6  # duplicates merged after counting
    assert len(parse_suite("max_runs: 35\n" + text, "s.yaml", max_runs=36).runs) == 6
    assert "(--max-runs)" in problems(text, max_runs=10)["runs"]
    assert problems("max_runs: 0\n" + SUITE) == {"max_runs": "must be an int >= 1; got 0"}


def test_cli_max_runs_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "three.yaml"
    path.write_text(SUITE.replace("seeds: [0]", "seeds: 3"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--max-runs", "2", "--no-progress"]) == 2
    assert "plans 3 runs (runs[0]: 3), more than the limit of 2 (--max-runs)" in capsys.readouterr().err
    assert not out.exists()
