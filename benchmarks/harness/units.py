"""The reproduction scripts' cache of finished units (one federation run, one attacked image),
so long scripts resume after a kill and can be split over processes.

A thin view over the result ``Store``: one row per unit in the ``units`` table of
``runs/bench_cache/results.sqlite`` (the same file for every script, each under its own
``benchmark`` name), written in one transaction, with the provenance of the code that
computed it. So a unit is whole or absent after a kill, disjoint shards (``--images``,
``--rows``) write to it from separate processes, and a unit written by other code is
never reused silently: ``get`` raises ``StaleUnitError`` naming both versions (re-run
with ``--fresh``). Keys must name everything that changes the unit's result; ``digest``
turns the settings a unit depends on into a short stable suffix.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .provenance import Provenance, current_provenance, mismatch_message, same_code
from .store import STORE_NAME, Store

CACHE_ROOT = Path(__file__).resolve().parents[2] / "runs" / "bench_cache"


class StaleUnitError(RuntimeError):
    """A cached unit was computed by other code than the running one."""


class UnitCache:
    """``get(key)`` → the stored JSON value or None; ``put(key, value)`` stores and returns it.

    ``fresh=True`` (a ``--fresh`` run) never reads, but still writes (replacing the old
    unit, provenance included). ``get_data``/``put_data`` do the same for binary units;
    ``get_tensors``/``put_tensors`` store a mapping of tensors and plain values through
    ``torch.save`` and read it back with ``weights_only=True`` (no code runs from a unit).
    """

    def __init__(self, benchmark: str, *, fresh: bool = False, root: str | Path = CACHE_ROOT,
                 provenance: Provenance | None = None) -> None:
        self.benchmark, self.fresh = benchmark, fresh
        self.path = Path(root) / STORE_NAME
        self.provenance = provenance or current_provenance()
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:  # opened on first use: a script that reads nothing creates nothing
            self._store = Store(self.path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> UnitCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str) -> Any:
        found = self._read(key)
        return None if found is None else found[0]

    def put(self, key: str, value: Any) -> Any:
        self.store.put_unit(self.benchmark, key, value, None, self.provenance)
        return value

    def get_data(self, key: str) -> bytes | None:
        found = self._read(key)
        return None if found is None else found[1]

    def put_data(self, key: str, data: bytes) -> bytes:
        self.store.put_unit(self.benchmark, key, None, data, self.provenance)
        return data

    def get_tensors(self, key: str, map_location: Any = None) -> Any:
        data = self.get_data(key)
        return None if data is None else torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)

    def put_tensors(self, key: str, value: Any) -> Any:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        self.put_data(key, buffer.getvalue())  # one transaction: a killed run leaves no half-written unit
        return value

    def _read(self, key: str) -> tuple[Any, bytes | None] | None:
        if self.fresh or not self.path.exists():
            return None
        found = self.store.unit(self.benchmark, key)
        if found is None:
            return None
        value, data, stored = found
        if not same_code(stored, self.provenance):
            raise StaleUnitError(mismatch_message(
                f"cached unit {key!r} of {self.benchmark} in {self.path}", stored, self.provenance,
                "re-run with --fresh to recompute (or remove the cache)"))
        return value, data


def unit_key(label: str, setting: str) -> str:
    """Key of one run: its label (``"alie vs krum"``) and the settings digest."""
    return label.replace(", ", "_").replace(" ", "_") + "_" + setting


def digest(settings: Mapping[str, Any]) -> str:
    """A short stable digest of the settings a unit depends on."""
    text = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
