"""Suite files: grid expansion, stable run ids, and malformed suites refused before any run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fedarena.benchmarks.harness import grid
from fedarena.benchmarks.harness.cli import main
from fedarena.benchmarks.harness.components import Components, default_components
from fedarena.benchmarks.harness.ids import canonical_json, run_id
from fedarena.benchmarks.harness.suite import SuiteError, load_suite, parse_suite
from fedarena.benchmarks.harness.suites import shipped_suites
from fedarena.fl_core.aggregation import AggregationResult, Aggregator
from fedarena.fl_core.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


class _Flip:
    """Test-only model poisoning: negate the group's updates."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale

    def craft(self, ctx):  # noqa: ANN001, ANN201
        return -self.scale * ctx.own


class _Mean(Aggregator):
    """Test-only unweighted mean."""

    def aggregate(self, updates, num_samples, client_ids):  # noqa: ANN001, ANN201
        n = updates.shape[0]
        return AggregationResult(updates.mean(0), updates.new_full((n,), 1 / n))


@pytest.fixture(scope="module")
def comps() -> Components:
    """The real registries, plus test-local poisoning attack and aggregator registries
    (so these tests do not depend on which robustness components exist yet)."""
    real = default_components()
    poisoning: Registry = Registry("poisoning attack")
    poisoning.add("flip", _Flip, "negate")
    aggregators: Registry = Registry("aggregator")
    aggregators.add("mean", _Mean, "mean")
    return Components(real.datasets, real.models, real.partitioners, real.corruptions, real.inversion_attacks,
                      poisoning, real.privacy_defenses, aggregators, real.protocols)


ROBUST = """
suite: grid
runs:
  - task: robustness
    dataset: digits
    model: {name: mlp, params: {hidden: [16]}}
    federation:
      clients: 6
      rounds: 2
      local: {lr: {grid: [0.1, 0.05]}, batch_size: 16}
    attacks: [none, {name: flip, params: {scale: {grid: [1, 2]}}, clients: 2}]
    defenses: [none, mean]
    seeds: [0, 1]
"""


def test_grid_expansion_counts_labels_and_order(comps: Components) -> None:
    suite = parse_suite(ROBUST, "grid.yaml", comps)
    # lr (2) x scale (2) expands the block to 4 variants; the 'none' attack is the same in
    # both scale variants, so per lr: attacks {none, flip(1), flip(2)} x 2 defenses x 2 seeds.
    assert len(suite.runs) == 2 * 3 * 2 * 2
    assert len({r.run_id for r in suite.runs}) == len(suite.runs)
    settings = [r.meta["setting"] for r in suite.runs]
    assert settings[0] == "federation.local.lr=0.1" and settings[-1] == "federation.local.lr=0.05"
    labels = {(r.meta["attack_label"], r.meta["defense_label"]) for r in suite.runs}
    assert ("flip(scale=2)×2", "mean") in labels and ("none", "none") in labels
    first = suite.runs[0].config
    assert first["federation"]["local"]["lr"] == 0.1 and first["federation"]["local"]["epochs"] == 1  # defaults
    assert first["test_dataset"] == {**first["dataset"], "split": "test"}
    assert [r.run_id for r in parse_suite(ROBUST, "grid.yaml", comps).runs] == [r.run_id for r in suite.runs]


def test_grid_expand_nested_and_choices() -> None:
    value = {"a": {"grid": [1, {"b": {"grid": ["x", "y"]}}]}, "c": [{"grid": [True, False]}]}
    variants = list(grid.expand(value))
    assert [v for v, _ in variants] == [
        {"a": 1, "c": [True]}, {"a": 1, "c": [False]},
        {"a": {"b": "x"}, "c": [True]}, {"a": {"b": "x"}, "c": [False]},
        {"a": {"b": "y"}, "c": [True]}, {"a": {"b": "y"}, "c": [False]},
    ]
    assert grid.count(value) == len(variants)
    assert variants[3][1] == [("a", {"b": {"grid": ["x", "y"]}}), ("a.b", "x"), ("c[0]", False)]
    with pytest.raises(ValueError, match="non-empty list"):
        list(grid.expand({"grid": []}))


def test_run_ids_are_stable(comps: Components) -> None:
    ids = [r.run_id for r in parse_suite(ROBUST, "a.yaml", comps).runs]
    # Key order, flow vs block style, ints for float fields, explicit defaults: same ids.
    rewritten = textwrap.dedent("""
        runs:
          - seeds: [0, 1]
            defenses: [none, {name: mean, params: {}}]
            attacks:
              - none
              - name: flip
                clients: 2
                params:
                  scale: {grid: [1.0, 2.0]}
            federation:
              local: {batch_size: 16, lr: {grid: [0.1, 0.05]}, epochs: 1, optimizer: sgd}
              rounds: 2
              clients: 6
              partition: iid
              server_lr: 1
            model: {params: {hidden: [16]}, name: mlp}
            dataset: {name: digits, split: train}
            task: robustness
        suite: renamed
        """)
    again = parse_suite(rewritten, "b.yaml", comps)
    assert sorted(r.run_id for r in again.runs) == sorted(ids)
    config = again.runs[0].config
    assert run_id(config) == again.runs[0].run_id
    assert canonical_json(config) == canonical_json(dict(reversed(list(config.items()))))
    changed = parse_suite(ROBUST.replace("rounds: 2", "rounds: 3"), "c.yaml", comps)
    assert not set(r.run_id for r in changed.runs) & set(ids)


def test_run_ids_do_not_depend_on_the_process() -> None:
    code = ("from fedarena.benchmarks.harness.ids import run_id; "
            "print(run_id({'b': [1, 2.5, None], 'a': {'z': 'é', 'y': True}}))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout.strip() for seed in (1, 2)}
    assert outs == {run_id({"a": {"y": True, "z": "é"}, "b": [1, 2.5, None]})}


BASE = """
runs:
  - task: privacy
    dataset: {name: digits, indices: [0, 1]}
    model: mlp
    federation: {clients: 2, local: {algorithm: fedsgd, batch_size: 1}}
    attacks: [{name: dlg, params: {iterations: 2}}]
  - task: robustness
    dataset: digits
    model: mlp
    federation: {clients: 4}
    attacks: [none]
  - task: privacy
    dataset: digits
    model: mlp
    attacks: [{name: inverting_gradients, params: {iterations: 5}}]
"""


@pytest.mark.parametrize(("old", "new", "path", "allowed"), [
    ("{name: inverting_gradients, params: {iterations: 5}}", "{name: inverting_gradientz}",
     "runs[2].attacks[0].name", ["dlg", "idlg", "inverting_gradients"]),
    ("params: {iterations: 5}", "params: {iterations: 5, lr: -0.1}", "runs[2].attacks[0].params.lr", ["> 0"]),
    ("params: {iterations: 2}", "params: {iterations: 2, max_iter: 0}", "runs[0].attacks[0].params.max_iter",
     [">= 1"]),
    ("params: {iterations: 5}", "params: {iterations: five}", "runs[2].attacks[0].params.iterations", ["int"]),
    ("params: {iterations: 5}", "params: {iteration: 5}", "runs[2].attacks[0].params.iteration",
     ["iterations", "restarts", "tv_weight"]),
    ("dataset: {name: digits, indices: [0, 1]}", "dataset: {name: digitz}", "runs[0].dataset.name",
     ["digits", "mnist", "cifar10"]),
    ("model: mlp\n    federation: {clients: 4}", "model: mpl\n    federation: {clients: 4}", "runs[1].model",
     ["mlp", "lenet", "convnet"]),
    ("local: {algorithm: fedsgd", "local: {algorithm: fedsdg", "runs[0].federation.local.algorithm",
     ["'fedsgd'", "'fedavg'"]),
    ("local: {algorithm: fedsgd, batch_size: 1}", "local: {algorithm: fedsgd, batch_size: 1, lr: -1}",
     "runs[0].federation.local.lr", ["> 0"]),
    ("federation: {clients: 4}", "federation: {clients: 4, rounds: two}", "runs[1].federation.rounds",
     ["an int >= 1"]),
    ("federation: {clients: 4}", "federation: {clients: 4, partition: {name: dirichlet, params: {alpha: x}}}",
     "runs[1].federation.partition.params.alpha", ["float"]),
    ("attacks: [none]", "attacks: [none]\n    defenses: [nothing]", "runs[1].defenses[0]",
     ["dp_sgd", "gaussian_noise", "none"]),
    ("attacks: [none]", "attacks: [none]\n    defenses: [{name: gaussian_noise, params: {sigma: -1}}]",
     "runs[1].defenses[0].params.sigma", [">= 0"]),
    ("task: robustness", "task: robustnes", "runs[1].task", ["privacy", "robustness"]),
    ("attacks: [none]", "attacks: [none]\n    attack_round: 0", "runs[1].attack_round",
     ["seeds", "unreliable", "test_dataset"]),
    ("model: mlp\n    attacks", "model: mlp\n    threat_model: {labels_known: yes_please}\n    attacks",
     "runs[2].threat_model.labels_known", ["true or false"]),
])
def test_malformed_suite_names_field_and_allowed_values(old: str, new: str, path: str, allowed: list[str]) -> None:
    assert old in BASE
    with pytest.raises(SuiteError) as info:
        parse_suite(BASE.replace(old, new, 1), "broken.yaml")
    message = str(info.value)
    assert message.startswith("broken.yaml: invalid suite")
    line = next((ln for ln in message.splitlines() if ln.strip().startswith(path + ":")), None)
    assert line is not None, message
    for word in allowed:
        assert word in line, line


def test_malformed_suite_reports_every_problem_and_structural_mistakes() -> None:
    text = BASE.replace("model: mpl", "model: mlp").replace("dataset: digits\n    model: mlp\n    federation",
                                                            "dataset: digitz\n    model: mlpp\n    federation")
    with pytest.raises(SuiteError) as info:
        parse_suite("extra: 1\n" + text, "x.yaml")
    paths = [p for p, _ in info.value.problems]
    assert paths == ["extra", "runs[1].dataset.name", "runs[1].model"]
    for bad, path in [("just text", ""), ("runs: []", "runs"), ("runs: [3]", "runs[0]"), ("runs: [{a: 1", ""),
                      ("runs:\n  - task: privacy", "runs[0].dataset")]:
        with pytest.raises(SuiteError) as info:
            parse_suite(bad, "y.yaml")
        assert info.value.problems[0][0] == path, info.value


def test_poisoning_counts_are_checked(comps: Components) -> None:
    too_many = ROBUST.replace("clients: 2}", "clients: 5}").replace(
        "defenses: [none, mean]",
        "defenses: [none, mean]\n    unreliable: {fraction: 0.5, corruption: {name: gaussian_blur}}")
    with pytest.raises(SuiteError) as info:
        parse_suite(too_many, "z.yaml", comps)
    assert ("runs[0].attacks[1]", "8 malicious and unreliable clients but only 6 clients in the federation") \
        in info.value.problems
    bad = ROBUST.replace("clients: 2}", "fraction: 1.5}").replace("scale: {grid: [1, 2]}", "scale: -1")
    with pytest.raises(SuiteError) as info:
        parse_suite(bad, "z.yaml", comps)
    assert dict(info.value.problems) == {
        "runs[0].attacks[1].fraction": "must be a number > 0.0 and <= 1.0; got 1.5",
        "runs[0].attacks[1].params.scale": "poisoning attack 'flip' rejects this: scale must be > 0, got -1.0",
    }


def test_malformed_suite_starts_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("iterations: 5", "iterations: -5"))
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    assert "runs[2].attacks[0].params.iterations: must be > 0" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "no shipped suite of that name" in capsys.readouterr().err


def test_shipped_suites_are_valid(assets_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDARENA_DATA", str(assets_root))  # validation reads the datasets' files (sizes, labels)
    suites = shipped_suites()
    assert {"quick", "privacy", "robustness"} <= set(suites)
    for name, path in suites.items():
        assert "expected runtime" in path.read_text().lower(), f"{name}.yaml must state its expected runtime"
        assert load_suite(path).runs, name


def test_suites_readme_example_is_a_valid_suite() -> None:
    text = (ROOT / "benchmarks" / "suites" / "README.md").read_text()
    example = text.split("```yaml", 1)[1].split("```", 1)[0]
    suite = parse_suite(example, "README.md")
    assert suite.name == "example" and len(suite.runs) == 2 * 3 * 2 + 3 * 3
