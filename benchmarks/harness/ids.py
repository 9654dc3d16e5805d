"""Stable run ids: a hash of the resolved run configuration in canonical JSON.

Canonical = sorted keys, no whitespace, ASCII, no NaN. Two suites that resolve to the
same configuration share the id, so a re-run finds the finished run in the store.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ID_LENGTH = 16  # hex characters of SHA-256: 64 bits, collisions negligible for any suite


def canonical_json(obj: Any) -> str:
    """The one serialisation that is hashed: key order and spacing never matter."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def run_id(config: dict[str, Any]) -> str:
    """``ID_LENGTH`` hex characters of SHA-256 over ``canonical_json(config)``."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()[:ID_LENGTH]
