"""Grid markers in suites: any value written ``{grid: [a, b, ...]}`` is an axis.

A block with grid markers expands into the cartesian product of its axes, in document
order (depth first, mapping keys in file order), so the run order is reproducible.
Each variant comes with the choices that made it (``[(path, value)]``), which the
report uses to label the variant.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

GRID_KEY = "grid"
MAX_VARIANTS = 100_000

Choice = tuple[str, Any]


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {GRID_KEY}


def expand(value: Any, path: str = "") -> Iterator[tuple[Any, list[Choice]]]:
    """Every concrete variant of ``value`` with its grid choices (one variant if no marker)."""
    if is_grid(value):
        options = value[GRID_KEY]
        if not isinstance(options, list) or not options:
            raise ValueError(f"{path or 'value'}: '{GRID_KEY}' must be a non-empty list of alternatives, "
                             f"got {options!r}")
        for option in options:
            for variant, choices in expand(option, path):
                yield variant, [(path, option), *choices]
    elif isinstance(value, dict):
        keys = list(value)
        parts = [list(expand(value[k], f"{path}.{k}" if path else str(k))) for k in keys]
        for combo in itertools.product(*parts):
            yield ({k: v for k, (v, _) in zip(keys, combo, strict=True)},
                   [c for _, cs in combo for c in cs])
    elif isinstance(value, list):
        parts = [list(expand(v, f"{path}[{i}]")) for i, v in enumerate(value)]
        for combo in itertools.product(*parts):
            yield [v for v, _ in combo], [c for _, cs in combo for c in cs]
    else:
        yield value, []


def count(value: Any) -> int:
    """Number of variants ``expand`` yields, computed without building them."""
    if is_grid(value):
        options = value[GRID_KEY]
        return sum(count(o) for o in options) if isinstance(options, list) and options else 1
    n = 1
    for v in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        n *= count(v)
    return n
