"""ε from an Opacus accountant history, memoised.

Opacus' RDP conversion evaluates ~150 Rényi orders, the fractional ones by series, and
costs about a second per call on one CPU core; within a federation many clients share
the same (noise multiplier, sample rate, steps) history, and ε is re-read every round.
The history fully determines ε, so one computation per distinct history suffices.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from opacus.accountants import create_accountant

History = Sequence[tuple[float, float, int]]


def epsilon_from_history(history: History, delta: float, accountant: str = "rdp") -> float:
    """ε at ``delta`` of the composition of ``history`` under Opacus' ``accountant``."""
    if not history:
        return 0.0
    key = tuple((float(s), float(q), int(n)) for s, q, n in history)
    return _epsilon(key, float(delta), accountant)


@lru_cache(maxsize=4096)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    acc = create_accountant(accountant)
    acc.history = list(history)
    with np.errstate(divide="ignore"):  # PRV takes log(1 - q), -inf at q = 1, by design
        return float(acc.get_epsilon(delta=delta))
