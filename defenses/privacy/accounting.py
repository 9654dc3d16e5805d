"""One accounting interface (``Accountant``) and ε from an Opacus accountant history, memoised.

Every DP defense part (a trainer, an upload transform or an aggregator) that spends a
privacy budget implements ``Accountant``; the harness reads ε only through it, by
``defense_epsilon`` (the default adjacency) or ``defense_epsilons`` (every adjacency the
defense accounts, labelled). What ``epsilon`` means is the guarantee of the whole
federation's release under that part: record-level DP-SGD and local client-level DP
account per client, so it is the worst client so far; central DP-FedAvg accounts the
released model, one value.

Adjacency (issue 13, "choices that change results"): ε is only meaningful with the
neighbouring relation it is stated for. ``"add_remove"`` (one record / one client is
present or absent; Opacus' definition, sensitivity C of a clipped sum) is every part's
default. ``"replace"`` (one record / client is swapped for another: sensitivity 2C, the
usual notion for local DP, where "absent" is not a thing a single client's upload can
be) is accounted only where it is exact: an un-subsampled Gaussian mechanism (q = 1),
whose privacy depends on sensitivity / noise std alone, so sensitivity 2C at noise
multiplier σ is the same accountant at σ/2 (``replace_history``). Under Poisson
subsampling (DP-SGD, central DP-FedAvg) the amplification analysis differs between the
two relations, and Opacus implements add/remove only, so those parts report that alone.

Opacus' RDP conversion evaluates ~150 Rényi orders, the fractional ones by series, and
costs about a second per call on one CPU core; within a federation many clients share
the same (noise multiplier, sample rate, steps) history, and ε is re-read every round.
The history fully determines ε, so one computation per distinct history suffices.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from opacus.accountants import create_accountant

from ..registry import ClientDefense

History = Sequence[tuple[float, float, int]]
Adjacency = Literal["add_remove", "replace"]
ADJACENCIES: tuple[Adjacency, ...] = ("add_remove", "replace")
DEFAULT_ADJACENCY: Adjacency = "add_remove"


@runtime_checkable
class Accountant(Protocol):
    """A defense part that spends privacy budget and says how much.

    ``delta`` is the δ used when a call gives none. ``adjacencies`` are the neighbouring
    relations the part can account (a subset of ``ADJACENCIES``); the first, always
    ``"add_remove"``, is the one used when a call gives none. ``epsilon(delta,
    adjacency)`` is the ε of the federation's release so far (0 before anything is
    released, ∞ without noise); ``client_epsilons(delta, adjacency)`` the ε per client
    that has released something, for the parts that account per client ({} for central
    DP, whose one guarantee covers every client alike). An adjacency the part does not
    account is an error, never a silent default.
    """

    delta: float
    adjacencies: tuple[Adjacency, ...]

    def epsilon(self, delta: float | None = None, adjacency: Adjacency | None = None) -> float: ...

    def client_epsilons(self, delta: float | None = None,
                        adjacency: Adjacency | None = None) -> dict[int, float]: ...


def _accountants(defense: ClientDefense) -> list[Accountant]:
    return [part for part in (defense.trainer, *defense.transforms, defense.aggregator)
            if isinstance(part, Accountant)]


def defense_epsilon(defense: ClientDefense, delta: float | None = None) -> float | None:
    """The largest ε any part of ``defense`` reports at ``delta`` (each part's own δ when None),
    under the default ``"add_remove"`` adjacency; ``defense_epsilons`` gives every adjacency.

    None when no part is an ``Accountant`` (not a DP defense).
    """
    values = [part.epsilon(delta) for part in _accountants(defense)]
    return max(values) if values else None


def defense_epsilons(defense: ClientDefense, delta: float | None = None) -> dict[Adjacency, float]:
    """ε of ``defense`` at ``delta`` per adjacency, keyed ``"add_remove"`` / ``"replace"``, for reports
    that must say which neighbouring relation a number is for.

    An adjacency appears only when every accounting part of the defense accounts it (a
    number that leaves out a part would not be the defense's guarantee); ``"add_remove"``
    always does, and equals ``defense_epsilon``. {} when the defense is not a DP defense.
    """
    parts = _accountants(defense)
    if not parts:
        return {}
    return {adj: max(part.epsilon(delta, adj) for part in parts)
            for adj in ADJACENCIES if all(adj in part.adjacencies for part in parts)}


def resolve_adjacency(defense: str, adjacency: str | None, supported: tuple[Adjacency, ...],
                      why: str = "") -> Adjacency:
    """``adjacency`` checked against ``supported`` (``why`` says why others are not), or the default when None."""
    if adjacency is None:
        return supported[0]
    if adjacency not in ADJACENCIES:
        raise ValueError(f"{defense}: adjacency must be one of {ADJACENCIES}, got {adjacency!r}")
    if adjacency not in supported:
        raise ValueError(f"{defense}: ε under {adjacency!r} adjacency is not accounted ({why}); "
                         f"it accounts {supported}")
    return adjacency  # type: ignore[return-value]


def replace_history(history: History) -> list[tuple[float, float, int]]:
    """The history whose add/remove ε is ``history``'s ε under replace-one adjacency.

    Exact only without subsampling: a Gaussian mechanism's privacy loss depends on
    sensitivity / noise std alone, and replacing one contribution clipped to C moves the
    sum by up to 2C, so noise multiplier σ at sensitivity 2C is σ/2 at sensitivity C.
    """
    if any(float(q) != 1.0 for _, q, _ in history):
        raise ValueError("replace adjacency is accounted only for un-subsampled Gaussian mechanisms (sample "
                         f"rate 1); this history has sample rates {sorted({float(q) for _, q, _ in history})}")
    return [(float(s) / 2, float(q), int(n)) for s, q, n in history]


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
