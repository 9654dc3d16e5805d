"""The ``fedarena`` command line: --version, list [--json], argument errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fl_core
from attacks.registry import INVERSION_ATTACKS, POISONING_ATTACKS
from benchmarks.harness.cli import main
from defenses.registry import AGGREGATORS, PRIVACY_DEFENSES
from fl_core.datasets import DATASETS
from fl_core.models import MODELS

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_fast_and_matches_the_package() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.harness.cli", "--version"], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert proc.stdout.strip() == f"fedarena {fl_core.__version__}"
    # --version must not pay for torch and the registries
    probe = "import sys, benchmarks.harness.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.strip() == "False"


def test_list_json_holds_every_registry_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert list(listed) == ["datasets", "models", "attacks", "defenses"]
    assert listed["datasets"] == DATASETS.names()
    assert listed["models"] == MODELS.names()
    assert listed["attacks"] == sorted(set(INVERSION_ATTACKS.names()) | set(POISONING_ATTACKS.names()))
    assert listed["defenses"] == sorted(set(PRIVACY_DEFENSES.names()) | set(AGGREGATORS.names()))
    assert {"digits", "sample_images", "mnist", "cifar10"} <= set(listed["datasets"])
    assert {"lenet", "lenet5", "convnet", "mlp", "resnet18"} <= set(listed["models"])
    assert {"dlg", "inverting_gradients"} <= set(listed["attacks"])
    assert {"gaussian_noise", "dp_sgd"} <= set(listed["defenses"])


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
