"""Paper-table reproductions: thin drivers over the harness's tasks and metrics.

Each script writes one committed table under ``benchmarks/results/`` (``RESULTS``) and
states the command that produced it. The harness never imports this package; a
reproduction reuses the harness's task code and metrics rather than re-implementing them.
"""

import sys
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def command(module: str, argv: list[str] | None) -> str:
    """The command line a table states it was produced by (``python -m MODULE ARGS``)."""
    return " ".join(["python -m", module, *(argv if argv is not None else sys.argv[1:])])


def run_script(main: Callable[[], int]) -> int:
    """A caching script's exit status: a unit cached by other code is an error message, not a traceback."""
    from fedarena.benchmarks.harness.units import StaleUnitError

    try:
        return main()
    except StaleUnitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
