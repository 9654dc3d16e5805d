"""The ``fedarena`` command line: --version, list [NAME] [--json], argument errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fedarena import fl_core
from fedarena.attacks.registry import INVERSION_ATTACKS, POISONING_ATTACKS
from fedarena.benchmarks.harness.cli import main
from fedarena.defenses.registry import AGGREGATORS, PRIVACY_DEFENSES
from fedarena.fl_core.datasets import DATASETS
from fedarena.fl_core.models import MODELS

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_fast_and_matches_the_package() -> None:
    proc = subprocess.run([sys.executable, "-m", "fedarena.benchmarks.harness.cli", "--version"], capture_output=True,
                          text=True,
                          cwd=ROOT, check=True)
    assert proc.stdout.strip() == f"fedarena {fl_core.__version__}"
    # --version must not pay for torch and the registries
    probe = "import sys, fedarena.benchmarks.harness.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.strip() == "False"


def test_list_json_holds_every_registry_with_categories_apart(capsys: pytest.CaptureFixture[str]) -> None:
    from fedarena.attacks.inversion.generators.models import GENERATORS
    from fedarena.attacks.inversion.priors import REGULARISERS
    from fedarena.fl_core.corruptions import CORRUPTIONS
    from fedarena.fl_core.partition import PARTITIONERS
    from fedarena.fl_core.protocol import PROTOCOLS

    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    expected = {"datasets": DATASETS, "models": MODELS, "partitioners": PARTITIONERS, "corruptions": CORRUPTIONS,
                "inversion_attacks": INVERSION_ATTACKS, "poisoning_attacks": POISONING_ATTACKS,
                "privacy_defenses": PRIVACY_DEFENSES, "aggregators": AGGREGATORS, "protocols": PROTOCOLS,
                "generators": GENERATORS, "regularisers": REGULARISERS}
    assert list(listed) == list(expected)
    for category, registry in expected.items():
        assert listed[category] == registry.descriptions(), category
    assert {"digits", "sample_images", "mnist", "cifar10"} <= set(listed["datasets"])
    assert {"dlg", "inverting_gradients"} <= set(listed["inversion_attacks"])
    assert {"gaussian_noise", "dp_sgd"} <= set(listed["privacy_defenses"])
    assert {"dirichlet", "shards"} <= set(listed["partitioners"]) and "tv" in listed["regularisers"]
    assert "fedavg" in listed["aggregators"] and "fedavg" in listed["protocols"]  # same name, two categories
    assert "additive_noise" in listed["corruptions"] and "additive_noise" in listed["poisoning_attacks"]


def test_descriptions_never_stop_mid_sentence() -> None:
    from fedarena.benchmarks.harness.catalogue import registries
    from fedarena.fl_core.registry import Registry, summary

    reg: Registry = Registry("thing")

    @reg.register("wrapped")
    def wrapped() -> None:
        """A first sentence that wraps
        onto a second line (Someone et al. 2020).

        Details."""

    assert reg.descriptions()["wrapped"] == "A first sentence that wraps onto a second line (Someone et al. 2020)."
    for category, registry in registries().items():
        for name, text in registry.descriptions().items():
            doc = summary(getattr(registry.get(name), "__doc__", None))
            assert text and not (doc.startswith(text) and doc != text), (category, name, text)
            assert not text.rstrip().endswith((":", ",", ";", "(")), (category, name, text)


def test_list_name_shows_parameters_types_defaults_and_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "krum"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("krum (aggregator; fedarena.defenses.aggregation.krum.Krum)")
    assert re.search(r"^  f  int or null, default None  "
                     r"\[signature of fedarena\.defenses\.aggregation\.krum\.Krum\]$", out, re.M)
    assert "``f`` is the number of Byzantine clients the rule must tolerate." in out  # the docstring's note

    assert main(["list", "dlg", "--json"]) == 0
    (dlg,) = json.loads(capsys.readouterr().out)
    params = {p["name"]: p for p in dlg["parameters"]}
    assert (params["iterations"]["default"], params["iterations"]["type"], params["iterations"]["defined_in"]) == (
        300, "int", "DLGSettings")
    assert params["labels"]["default"] == "auto" and params["restarts"]["defined_in"] == "CommonSettings"
    assert any("mit-han-lab/dlg" in n for n in dlg["defaults_notes"])  # where the defaults come from
    # #13: dlg at batch 1 with labels="auto" is iDLG; labels="optimize" is the original DLG
    assert 'At batch 1 with labels="auto" (the default) it is iDLG' in dlg["description"]
    assert 'labels="optimize" gives the original DLG' in dlg["description"]
    assert any("is iDLG" in n and '``labels="optimize"`` gives the original DLG' in n
               for n in params["labels"]["notes"])

    assert main(["list", "pruning"]) == 0
    out = capsys.readouterr().out
    assert "``fraction=0.1`` keeps 10 % and prunes 90 %" in out  # the share KEPT, said where it is listed
    assert re.search(r"^  fraction  float, required", out, re.M) and "``fraction = 1 − p``" in out

    assert main(["list", "mlp"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  num_classes  int, set by the harness", out, re.M)  # a suite may not set it
    assert re.search(r"^  hidden       a list of int, default \(200, 200\)", out, re.M)

    assert main(["list", "fedavg"]) == 0
    out = capsys.readouterr().out
    assert "fedavg (aggregator;" in out and "fedavg (protocol;" in out


def test_list_unknown_name_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "krun"]) == 2
    assert "no component 'krun' in any registry (did you mean krum?)" in capsys.readouterr().err


def test_list_shows_the_parameters_suite_validation_accepts() -> None:
    from fedarena.benchmarks.harness.catalogue import describe, format_component, registries
    from fedarena.benchmarks.harness.params import check_params

    for category, registry in registries().items():
        for name in registry:
            c = describe(category, registry, name)
            json.dumps(c.as_dict())
            assert format_component(c).startswith(f"{name} (")
            if not callable(registry.get(name)):
                continue
            listed = {p.name: p.default for p in c.parameters if not p.required}
            _, problems = check_params(registry, name, listed, "p")
            assert not [m for _, m in problems if "unknown parameter" in m], (category, name, problems)
            _, problems = check_params(registry, name, {"not_a_parameter": 1}, "p")
            assert problems or not c.parameters, (category, name)  # nothing accepted that is not listed


def test_list_plain_shows_one_line_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for title in ("datasets:", "models:", "inversion attacks:", "poisoning attacks:", "privacy defenses:",
                  "aggregators:", "partitioners:", "corruptions:"):
        assert title in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("digits "))
    assert DATASETS.descriptions()["digits"] in line
    for name, text in {**INVERSION_ATTACKS.descriptions(), **PRIVACY_DEFENSES.descriptions()}.items():
        assert any(ln.split() and ln.split()[0] == name and ln.rstrip().endswith(text.strip()) for ln in
                   out.splitlines()), name


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "quick", "--workers", "0"])
    assert info.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err
    assert main([]) == 2
