"""One accounting interface (``Accountant``) and ε from an Opacus accountant history, memoised.

Every DP defense part (a trainer, an upload transform or an aggregator) that spends a
privacy budget implements ``Accountant``; the harness reads ε only through it, by
``defense_epsilon``. What ``epsilon`` means is the guarantee of the whole federation's
release under that part: record-level DP-SGD and local client-level DP account per
client, so it is the worst client so far; central DP-FedAvg accounts the released
model, one value.

Opacus' RDP conversion evaluates ~150 Rényi orders, the fractional ones by series, and
costs about a second per call on one CPU core; within a federation many clients share
the same (noise multiplier, sample rate, steps) history, and ε is re-read every round.
The history fully determines ε, so one computation per distinct history suffices.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
from opacus.accountants import create_accountant

from ..registry import ClientDefense

History = Sequence[tuple[float, float, int]]


@runtime_checkable
class Accountant(Protocol):
    """A defense part that spends privacy budget and says how much.

    ``delta`` is the δ used when a call gives none. ``epsilon(delta)`` is the ε of the
    federation's release so far (0 before anything is released, ∞ without noise);
    ``client_epsilons(delta)`` the ε per client that has released something, for the
    parts that account per client ({} for central DP, whose one guarantee covers every
    client alike).
    """

    delta: float

    def epsilon(self, delta: float | None = None) -> float: ...

    def client_epsilons(self, delta: float | None = None) -> dict[int, float]: ...


def defense_epsilon(defense: ClientDefense, delta: float | None = None) -> float | None:
    """The largest ε any part of ``defense`` reports at ``delta`` (each part's own δ when None).

    None when no part is an ``Accountant`` (not a DP defense).
    """
    values = [part.epsilon(delta) for part in (defense.trainer, *defense.transforms, defense.aggregator)
              if isinstance(part, Accountant)]
    return max(values) if values else None


def resolve_delta(defense: str, delta: float | None, default: float) -> float:
    """``delta`` checked to lie in (0, 1), or ``default`` when None."""
    if delta is None:
        return default
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta < 1:
        raise ValueError(f"{defense}: delta must be a number in (0, 1), got {delta!r}")
    return float(delta)


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
