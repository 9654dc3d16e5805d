"""Every script in ``examples/`` runs, at small sizes, and says what it should (issue #18):
an example that rots fails here. Each runs as a user runs it: a subprocess in a folder of
its own, FedArena found through the checkout on ``PYTHONPATH`` (as an install provides it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return float(m.group(1))


def test_every_example_has_a_test() -> None:
    scripts = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.py") if "flower_app" not in p.parts}
    tested = set(re.findall(r'run_example\("([\w/]+\.py)"', Path(__file__).read_text()))
    assert scripts == tested


def test_invert_your_model_saves_the_figure_and_shows_the_weights_pitfall(tmp_path: Path) -> None:
    out = run_example("invert_your_model.py", "--iterations", "40", "--size", "8", "--out", "fig/grid.png",
                      cwd=tmp_path)
    assert (tmp_path / "fig" / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert number(r"(?m)^DLG: PSNR ([\d.]+|inf) dB", out) > 30
    assert number(r"Inverting Gradients: PSNR ([\d.]+|inf) dB", out) > 20
    assert number(r"trained weights \(wrong\): PSNR ([\d.]+) dB", out) < 15


def test_robust_aggregation_on_your_own_stack(tmp_path: Path) -> None:
    out = run_example("robust_aggregation.py", "--dim", "200", cwd=tmp_path)
    assert number(r"IPM +mean: relative error ([\d.]+)", out) > 1.0  # the mean follows the attackers
    assert number(r"IPM +median: relative error ([\d.]+)", out) < 0.5
    assert number(r"IPM +krum: relative error [\d.]+; trusted (\d)/4 attackers", out) == 0


def test_poisoning_in_your_own_training_loop(tmp_path: Path) -> None:
    out = run_example("poisoning_in_your_loop.py", "--rounds", "4", cwd=tmp_path)
    mean = number(r"mean under IPM .*test accuracy ([\d.]+)", out)
    median = number(r"median under IPM .*test accuracy ([\d.]+)", out)
    assert mean < 0.2 and median > mean + 0.2, out  # the mean follows the attackers, the median does not


def test_custom_suite_runs_and_reports(tmp_path: Path) -> None:
    out = run_example("custom_suite/run.py", "--out", "results", cwd=tmp_path)
    assert "my_suite: 6 ok, 0 failed, 0 already stored" in out
    assert (tmp_path / "results" / "report.md").is_file() and (tmp_path / "results" / "report.html").is_file()
    psnr = [float(v) for v in re.findall(r"PSNR ([\d.]+) dB", out)]
    assert len(psnr) == 2 and psnr[0] > psnr[1]  # no defense leaks more than Gaussian noise
    again = run_example("custom_suite/run.py", "--out", "results", cwd=tmp_path)
    assert "0 ok, 0 failed, 6 already stored" in again  # resumed, nothing recomputed
