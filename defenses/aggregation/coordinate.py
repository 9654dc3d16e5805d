"""Coordinate-wise robust statistics: median and trimmed mean (Yin et al., ICML 2018).

Both need every coordinate's values in order, i.e. one sort of the ``[n, d]`` stack
along the client axis. On CPU, NumPy's sort (AVX-512 / AVX2 SIMD sort, NumPy ≥ 2) does
this several times faster than ``torch.sort``, ``torch.kthvalue`` or ``torch.median``
here (``torch.sort(dim=0)`` is timed beside it in
``benchmarks/reproductions/robustness/bench_aggregators.py``), so ``coordinate_sort`` uses it and falls
back to ``torch.sort`` off-CPU.

Coordinate-wise rules do not pick clients: each coordinate may come from a different
client. Their ``weights`` are therefore uniform (1/n): every finite update was used.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedarena.fl_core.aggregation import AggregationResult, Aggregator

from ..registry import AGGREGATORS
from .common import uniform


@AGGREGATORS.register("median")
class CoordinateMedian(Aggregator):
    """Coordinate-wise median (Yin et al. 2018); even n: mean of the two middle values.

    Unweighted by sample counts, as in the paper.
    """

    name = "median"

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        n = updates.shape[0]
        return AggregationResult(coordinate_median(updates), uniform(n, updates.dtype, updates.device))


@AGGREGATORS.register("trimmed_mean")
class TrimmedMean(Aggregator):
    """Coordinate-wise trimmed mean (Yin et al. 2018, Definition 2).

    For each coordinate drop the k largest and k smallest values and average the rest.
    Give either ``f``, the number of values trimmed per side (ByzFL's ``TrMean(f)``), or
    ``beta`` ∈ [0, 0.5), the fraction per side: k = ⌊β·n⌋ computed exactly, β read as the
    simplest fraction its float stands for (β = f/n gives k = f; ``int(β·n)`` would give
    f − 1 for 368 (f, n) pairs with n ≤ 200, e.g. 1/49·49 = 0.999…). Neither: β = 0.1
    (the paper requires β ≥ the fraction of Byzantine clients; pass it when it is known).
    A round with n ≤ 2f (clients absent or rejected) trims ⌊(n−1)/2⌋ per side instead,
    recorded in ``info["f_clamped"]``. Unweighted, as in the paper.
    """

    name = "trimmed_mean"

    def __init__(self, beta: float | None = None, f: int | None = None) -> None:
        if beta is not None and f is not None:
            raise ValueError(f"trimmed_mean: give beta or f, not both (got beta={beta}, f={f})")
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 0):
            raise ValueError(f"trimmed_mean: f must be a non-negative int or None, got {f!r}")
        if f is None:
            beta = 0.1 if beta is None else beta
            if not 0.0 <= beta < 0.5:
                raise ValueError(f"trimmed_mean: beta must be in [0, 0.5), got {beta}")
        self.f = f
        self.beta = None if beta is None else float(beta)
        self._fraction = None if beta is None else Fraction(beta).limit_denominator(10**9)

    def trimmed_per_side(self, n: int) -> int:
        """k for n values: ``f``, or ⌊β·n⌋ with β as an exact fraction."""
        if self.f is not None:
            return self.f
        assert self._fraction is not None
        return math.floor(self._fraction * n)

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        n = updates.shape[0]
        k = self.trimmed_per_side(n)
        info: dict[str, Any] = {}
        if 2 * k >= n:
            used = (n - 1) // 2
            info["f_clamped"] = {"rule": self.name, "n": n, "f_requested": k, "f_used": used,
                                 "condition": "n > 2f"}
            k = used
        info["trimmed_per_side"] = k
        weights = uniform(n, updates.dtype, updates.device)
        if k == 0:
            return AggregationResult(updates.mean(0), weights, info)
        ordered = coordinate_sort(updates)
        return AggregationResult(ordered[k: n - k].mean(0), weights, info)


def coordinate_sort(x: Tensor, inplace: bool = False, select: Tensor | None = None) -> Tensor:
    """``x`` ``[n, d]`` (or its ``select``ed rows, ``[k]`` indices) with every column sorted
    ascending: a new tensor, or ``x`` itself sorted in place when ``inplace`` (and ``x`` is
    a contiguous CPU tensor; ignored with ``select``).

    CPU: NumPy's SIMD sort, column blocks copied (gathering ``select`` on the way, so a
    row subset costs no extra pass over memory) and sorted in parallel on
    ``torch.get_num_threads()`` threads (NumPy releases the GIL). Elsewhere: ``torch.sort``.
    """
    if x.dim() != 2:
        raise ValueError(f"coordinate_sort: expected [n, d], got {tuple(x.shape)}")
    if not (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad):
        return torch.sort(x if select is None else x[select], dim=0).values
    src = x.numpy()
    picked = None if select is None else select.cpu().numpy()
    in_place = inplace and x.is_contiguous() and picked is None
    shape = src.shape if picked is None else (len(picked), src.shape[1])
    out = src if in_place else np.empty(shape, dtype=src.dtype)
    blocks = column_blocks(src.shape[1])

    def sort_block(bounds: tuple[int, int]) -> None:
        a, b = bounds
        if picked is not None:  # row by row: contiguous copies (fancy indexing is ~1.5× slower here)
            for k, r in enumerate(picked):
                out[k, a:b] = src[r, a:b]
        elif not in_place:
            out[:, a:b] = src[:, a:b]
        out[:, a:b].sort(axis=0)

    if len(blocks) == 1:
        sort_block(blocks[0])
    else:
        list(thread_pool(len(blocks)).map(sort_block, blocks))
    return x if in_place else torch.from_numpy(out)


def coordinate_median(x: Tensor, select: Tensor | None = None) -> Tensor:
    """Coordinate-wise median ``[d]`` of ``x`` ``[n, d]``, or of its ``select``ed rows
    (gathered inside the sort's copy); mean of the middle pair for an even count."""
    n = x.shape[0] if select is None else select.numel()
    if n == 1:
        return (x[0] if select is None else x[int(select[0])]).clone()
    return median_of_sorted(coordinate_sort(x, select=select))


def median_of_sorted(ordered: Tensor) -> Tensor:
    """Median row of a column-sorted ``[n, d]`` stack."""
    n = ordered.shape[0]
    mid = n // 2
    return ordered[mid].clone() if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def median_band(rows: int, keep: int) -> tuple[int, int]:
    """Ranks ``[lo, hi)`` of the 2·keep order statistics centred on the median of ``rows``
    values (clamped to ``[0, rows)``): the band that holds the ``keep`` values closest to
    the median, and has the same median (see ``krum.trimmed_around_median``)."""
    return max(0, (rows + 1) // 2 - keep), min(rows, rows // 2 + keep)


def column_blocks(d: int, min_block: int = 1 << 16) -> list[tuple[int, int]]:
    """Column ranges ``[a, b)`` splitting ``d`` over ``torch.get_num_threads()`` workers."""
    parts = max(1, min(torch.get_num_threads(), d // min_block))
    edges = [d * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


@functools.lru_cache(maxsize=4)
def thread_pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool for column-parallel kernels that release the GIL (NumPy sort, ctypes)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fedarena_columns")
