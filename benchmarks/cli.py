"""Alias of ``benchmarks.harness.cli`` for console scripts installed before the harness
re-layout (their launcher imports ``benchmarks.cli:main``) and ``python -m benchmarks.cli``."""

import sys

from benchmarks.harness.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
