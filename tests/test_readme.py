"""The README's first Python example must run exactly as written, in a fresh interpreter."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_first_python_example_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no ```python example"
    script = tmp_path / "readme_example.py"
    script.write_text(blocks[0])
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=README.parent)
    assert done.returncode == 0, done.stderr
    accuracy = float(re.search(r"test accuracy after \d+ rounds: ([0-9.]+)", done.stdout).group(1))
    assert accuracy > 0.8
