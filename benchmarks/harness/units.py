"""A cache of finished benchmark units (one federation run, one attacked image), so long
benchmark scripts resume after a kill and can be split over processes.

One JSON file per unit under ``runs/bench_cache/<benchmark>/``, written atomically (a
killed writer leaves no half entry). Keys must name everything that changes the unit's
result; ``digest`` turns the settings a unit depends on into a short stable suffix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.harness.atomic import write_atomic

CACHE_ROOT = Path(__file__).resolve().parents[2] / "runs" / "bench_cache"


class UnitCache:
    """``get(key)`` → the stored JSON value or None; ``put(key, value)`` stores and returns it.
    ``enabled=False`` (a ``--fresh`` run) never reads, but still writes."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root, self.enabled = root, enabled

    def get(self, key: str) -> Any:
        path = self.root / f"{key}.json"
        return json.loads(path.read_text()) if self.enabled and path.exists() else None

    def put(self, key: str, value: Any) -> Any:
        write_atomic(self.root / f"{key}.json", json.dumps(value, default=str))
        return value


def unit_key(label: str, setting: str) -> str:
    """File-name key of one run: its label (``"alie vs krum"``) and the settings digest."""
    return label.replace(", ", "_").replace(" ", "_") + "_" + setting


def digest(settings: Mapping[str, Any]) -> str:
    """A short stable digest of the settings a unit depends on."""
    text = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
