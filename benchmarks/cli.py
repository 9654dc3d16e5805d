"""Alias of ``fedarena.benchmarks.harness.cli`` for console scripts installed before the harness
re-layout (their launcher imports ``fedarena.benchmarks.cli:main``) and ``python -m fedarena.benchmarks.cli``."""

import sys

from fedarena.benchmarks.harness.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
