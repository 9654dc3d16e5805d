"""How many runs a suite plans, counted from the parsed YAML without expanding anything.

A block plans (grid variants) × attacks × defenses × seeds runs; ``seeds: 300000`` is a
valid-looking line that queues 300,000 runs, and ``seeds: 100000000`` used to keep the
validator busy building them. ``planned_runs`` gives the exact count (before the runs
that resolve to the same configuration are merged) in time linear in the document, so
the limit is checked before a single run is built.
"""

from __future__ import annotations

from typing import Any

from . import grid

# A limit against typos, not a capacity: raise it per suite (``max_runs: N``) or per
# command (``fedarena run --max-runs N``).
DEFAULT_MAX_RUNS = 10_000
RUN_AXES = ("attacks", "defenses", "seeds")


def planned_runs(block: Any) -> int:
    """Runs a block expands to: Σ over its grid variants of len(attacks) · len(defenses) · #seeds.

    The other fields' variants multiply every combination, and each of the three axes
    varies independently, so the sum factorises; nothing is expanded. Malformed values
    count as one (the validator reports them).
    """
    if not isinstance(block, dict):
        return 0
    rest = {k: v for k, v in block.items() if k not in RUN_AXES}
    return (grid.count(rest) * _summed_length(block.get("attacks"), seeds=False)
            * _summed_length(block.get("defenses", ["none"]), seeds=False)
            * _summed_length(block.get("seeds", [0]), seeds=True))


def _summed_length(value: Any, *, seeds: bool) -> int:
    """Σ over the variants of ``value`` of its length (a seed count N stands for N seeds)."""
    if grid.is_grid(value):
        options = value[grid.GRID_KEY]
        if isinstance(options, list) and options:
            return sum(_summed_length(o, seeds=seeds) for o in options)
        return 1
    if isinstance(value, list):
        return len(value) * grid.count(value)
    if seeds and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return grid.count(value)
