"""Krum, Multi-Krum (Blanchard et al., NeurIPS 2017) and Bulyan (El Mhamdi et al., ICML 2018).

All three start from the ``[n, n]`` squared-distance matrix, computed once from one Gram
matrix product (``fedarena.fl_core.geometry``). Bulyan's recursive Krum selection then updates
the Krum scores incrementally from that one matrix (an O(n²) step per selection), never
recomputing a distance; its coordinate-wise phase needs order statistics of the θ selected rows: a pruned
comparator network in C (``native.py``) on float32 CPU stacks, else one NumPy sort.

``f`` is the number of Byzantine clients the rule must tolerate. ``None`` means the
largest the rule admits for the n rows it is given: ⌊(n−3)/2⌋ for Krum (n ≥ 2f + 3),
⌊(n−3)/4⌋ for Bulyan (n ≥ 4f + 3). An explicit ``f`` that a round's n no longer admits
(a client was absent or rejected as non-finite) is clamped to that largest admissible
value for the round, never an error that fails the run; the result's
``info["f_clamped"]`` records it (rule, n, requested and used f). Selected clients are
averaged without sample weighting, as in the papers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedarena.fl_core.aggregation import AggregationResult, Aggregator
from fedarena.fl_core.geometry import pairwise_sq_distances

from ..registry import AGGREGATORS
from .coordinate import coordinate_sort, median_band, median_of_sorted
from .native import closest_to_median_mean


@AGGREGATORS.register("krum")
class Krum(Aggregator):
    """Krum: the update with the smallest sum of squared distances to its n − f − 2
    nearest neighbours (Blanchard et al. 2017, Sec. 4)."""

    name = "krum"
    uses_gram = True

    def __init__(self, f: int | None = None) -> None:
        self.f = _check_f(self.name, f)

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int],
                  gram: Tensor | None = None) -> AggregationResult:
        n = updates.shape[0]
        f, info = f_for_round(self.name, self.f, n, multiplier=2)
        scores = krum_scores(pairwise_sq_distances(updates, gram), f)
        best = int(torch.argmin(scores))
        weights = updates.new_zeros(n)
        weights[best] = 1.0
        return AggregationResult(updates[best].clone(), weights, {**info, "selected": [client_ids[best]]})


@AGGREGATORS.register("multi_krum")
class MultiKrum(Aggregator):
    """Multi-Krum: the mean of the ``m`` updates with the lowest Krum scores
    (Blanchard et al. 2017, Sec. 5); ``m`` defaults to n − f."""

    name = "multi_krum"
    uses_gram = True

    def __init__(self, f: int | None = None, m: int | None = None) -> None:
        self.f = _check_f(self.name, f)
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"multi_krum: m must be a positive int or None, got {m!r}")
        self.m = m

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int],
                  gram: Tensor | None = None) -> AggregationResult:
        n = updates.shape[0]
        f, info = f_for_round(self.name, self.f, n, multiplier=2)
        m = min(self.m if self.m is not None else n - f, n)
        scores = krum_scores(pairwise_sq_distances(updates, gram), f)
        chosen = torch.sort(torch.argsort(scores, stable=True)[:m]).values
        weights = updates.new_zeros(n)
        weights[chosen] = 1.0 / m
        return AggregationResult(weights @ updates, weights,
                                 {**info, "m": m, "selected": [client_ids[i] for i in chosen.tolist()]})


@AGGREGATORS.register("bulyan")
class Bulyan(Aggregator):
    """Bulyan (El Mhamdi et al. 2018, Sec. 4) on top of Krum.

    1. Select θ = n − 2f updates by recursive Krum: Krum on the remaining set, move the
       winner to the selection, repeat.
    2. For every coordinate, average the β = θ − 2f selected values closest to the
       coordinate's median.
    Requires n ≥ 4f + 3. ``weights``: 1/θ on the selected clients (the coordinate phase
    then keeps β of the θ values per coordinate).
    """

    name = "bulyan"
    uses_gram = True

    def __init__(self, f: int | None = None) -> None:
        self.f = _check_f(self.name, f)

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int],
                  gram: Tensor | None = None) -> AggregationResult:
        n = updates.shape[0]
        f, info = f_for_round(self.name, self.f, n, multiplier=4)
        theta = n - 2 * f
        beta = theta - 2 * f
        selected = recursive_krum(pairwise_sq_distances(updates, gram), f, theta).to(updates.device)
        aggregate = trimmed_around_median(updates, 2 * f, select=selected)
        weights = updates.new_zeros(n)
        weights[selected] = 1.0 / theta
        return AggregationResult(aggregate, weights, {**info, "theta": theta, "beta": beta,
                                                      "selected": [client_ids[i] for i in selected.tolist()]})


def krum_scores(sq_dist: Tensor, f: int) -> Tensor:
    """Krum score of every row: sum of its n − f − 2 smallest squared distances to the
    other rows (at least one neighbour when n ≥ 2)."""
    n = sq_dist.shape[0]
    if n == 1:
        return sq_dist.new_zeros(1)
    k = max(n - f - 2, 1)
    others = sq_dist.clone().fill_diagonal_(float("inf"))
    return torch.topk(others, k, dim=1, largest=False).values.sum(1)


def recursive_krum(sq_dist: Tensor, f: int, count: int) -> Tensor:
    """Indices (sorted) of ``count`` rows picked one by one by Krum on the rows left.

    Each row's neighbours are sorted once; a step masks out the picked rows and sums
    each remaining row's first k = |left| − f − 2 remaining neighbours (k ≥ 1), so the
    whole selection costs O(count · n²) on the ``[n, n]`` matrix and nothing on ``[n, d]``.
    The steps run in NumPy: on n ≈ 100 a step is microseconds there, while each small
    torch op costs a thread-pool round trip. Each step picks among the rows still in the
    set only, so infinite (or NaN) scores can never re-select a removed row (issue 14,
    item 5); ties, infinite ones included, go to the lowest index.
    """
    n = sq_dist.shape[0]
    if not 1 <= count <= n:
        raise ValueError(f"recursive_krum: cannot select {count} of {n} rows")
    others = sq_dist.detach().double().cpu().numpy().copy()
    np.fill_diagonal(others, np.inf)
    neighbour = np.argsort(others, axis=1, kind="stable")[:, : n - 1]  # self sorts last (inf)
    ordered = np.take_along_axis(others, neighbour, axis=1)
    alive = np.ones(n, dtype=bool)
    picked: list[int] = []
    for _ in range(count):
        left = int(alive.sum())
        k = max(left - f - 2, 1)
        usable = alive[neighbour]  # [n, n-1]: is the j-th nearest neighbour of i still in the set?
        take = usable & (np.cumsum(usable, axis=1) <= k)
        scores = np.where(take, ordered, 0.0).sum(axis=1) if left > 1 else np.zeros(n)
        scores[~alive | np.isnan(scores)] = np.inf
        best = int(np.argmin(scores))
        if not alive[best]:  # every row left scores inf: the first one left, never a removed row
            best = int(np.argmax(alive))
        picked.append(best)
        alive[best] = False
    return torch.tensor(sorted(picked), dtype=torch.long, device=sq_dist.device)


def trimmed_around_median(rows: Tensor, drop: int, inplace: bool = False, select: Tensor | None = None,
                          native: bool = True) -> Tensor:
    """Per coordinate, the mean of the ``θ − drop`` values closest to the median
    (θ = number of rows, or of ``select``ed row indices).

    After one sort, the kept values are a window of consecutive order statistics; the
    dropped ones are the ``drop`` farthest from the median, taken greedily from both
    ends (ties drop the upper end). With s the sorted values and m the median, the t-th
    smallest is dropped before the (drop−t)-th largest iff m − s_t > s_(θ−drop+t) − m,
    i.e. s_t + s_(θ−drop+t) < 2m. That predicate holds for a prefix t < j, so j (the
    number dropped from the bottom) is a count and the window is s[j : j + θ − drop].
    The window always lies in the band of the 2·keep order statistics centred on the
    median (keep = θ − drop), which has the same median, so the trim runs on that band
    alone: for Bulyan (keep = θ − 2f ≪ θ) a few rows instead of θ. ``select`` gathers
    the rows inside the sort's parallel copy; ``inplace=True`` sorts ``rows`` itself.
    With ``native`` (default) a float32 CPU stack goes to the C kernel
    (``native.closest_to_median_mean``), which computes the same window on that band
    without sorting the rest; ``native=False`` forces the NumPy path.
    """
    theta = rows.shape[0] if select is None else select.shape[0]
    keep = theta - drop
    if keep < 1:
        raise ValueError(f"cannot drop {drop} of {theta} values per coordinate")
    if drop == 0:
        return (rows if select is None else rows[select]).mean(0)
    if native:
        picked = torch.arange(theta, device=rows.device) if select is None else select
        fast = closest_to_median_mean(rows, picked, keep)
        if fast is not None:
            return fast
    s = coordinate_sort(rows, inplace=inplace, select=select)
    lo, hi = median_band(theta, keep)  # both clamp or neither
    s = s[lo:hi]  # contiguous rows: a view
    drop = s.shape[0] - keep
    if drop == 0:
        return s.mean(0)
    low, high = s[:drop], s[keep:]  # high[u] = s[keep + u]
    j = _count_below(low, high, 2.0 * median_of_sorted(s)).unsqueeze(0)  # [1, d]
    # Dropped: s[t] for t < j and s[keep + u] for u ≥ j — disjoint even when low and high
    # overlap (keep < drop), so the window sum is the total minus one pick per t.
    below = torch.arange(drop, device=j.device).unsqueeze(1) < j
    return (s.sum(0) - torch.where(below, low, high).sum(0)) / keep


def _count_below(low: Tensor, high: Tensor, bound: Tensor) -> Tensor:
    """Per column, #{t : low[t] + high[t] < bound} (int64 ``[d]``).

    On CPU in NumPy: a float add, a compare and an int32 column sum there take about a
    third of torch's time for the boolean reduction over dim 0 (measured at 48 × 10^6).
    """
    if low.device.type == "cpu" and not low.requires_grad:
        total = np.add(low.numpy(), high.numpy())
        below = np.less(total, bound.numpy())
        return torch.from_numpy(below.sum(axis=0, dtype=np.int32)).long()
    return (low + high < bound).sum(0)


def resolve_f(rule: str, f: int | None, n: int, multiplier: int) -> int:
    """The f to use for n rows: the given one, clamped to the largest n admits
    (n ≥ multiplier·f + 3), or that largest one when ``f`` is None."""
    return f_for_round(rule, f, n, multiplier)[0]


def f_for_round(rule: str, f: int | None, n: int, multiplier: int) -> tuple[int, dict[str, Any]]:
    """``resolve_f`` plus the result info: ``{"f": used}``, and ``"f_clamped"`` (rule, n,
    requested, used, the condition) when an explicit f was too large for this round's n."""
    largest = max((n - 3) // multiplier, 0)
    if f is None or f <= largest:
        return (largest if f is None else f), {"f": largest if f is None else f}
    record = {"rule": rule, "n": n, "f_requested": f, "f_used": largest,
              "condition": f"n >= {multiplier}f + 3"}
    return largest, {"f": largest, "f_clamped": record}


def _check_f(rule: str, f: int | None) -> int | None:
    if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 0):
        raise ValueError(f"{rule}: f must be a non-negative int or None, got {f!r}")
    return f
