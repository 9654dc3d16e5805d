"""The README's Python examples must run exactly as written, in a fresh interpreter, and
its links must resolve inside the repository."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no ```python example"
    return blocks


def _run_block(block: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "readme_example.py"
    script.write_text(block)
    # the checkout's code (as an install provides it), not whatever FedArena the interpreter has installed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=README.parent, env=env)


def test_readme_first_python_example_runs(tmp_path):
    done = _run_block(_python_blocks()[0], tmp_path)
    assert done.returncode == 0, done.stderr
    accuracy = float(re.search(r"test accuracy after \d+ rounds: ([0-9.]+)", done.stdout).group(1))
    assert accuracy > 0.8


def test_readme_research_script_example_runs(tmp_path):
    block = next(b for b in _python_blocks() if "snapshot_weights" in b)
    done = _run_block(block, tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(re.search(r"PSNR ([0-9.]+|inf) dB", done.stdout).group(1)) > 25


def test_readme_links_resolve_inside_the_repository():
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://|mailto:|#", t)]
    assert local, "README.md links to no file"
    missing = [t for t in local if not (ROOT / t).resolve().is_relative_to(ROOT) or not (ROOT / t).exists()]
    assert not missing, missing
