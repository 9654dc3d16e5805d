"""Native kernel for Bulyan's coordinate phase: the mean of the values closest to the median.

Bulyan keeps, per coordinate, the β values nearest the median of its θ selected rows.
Sorting all θ values (NumPy's SIMD sort, ``coordinate_sort``) costs about as much as the
Gram product the rule already pays, which puts Bulyan near 2.3× the Gram floor. The C
kernel (``_closest_to_median.c``) instead runs a comparator network, pruned to the few
order statistics the trim reads, across blocks of coordinates with SIMD min/max: about
a quarter of the sort's time at θ = 52, d = 10^6.

The kernel is compiled by ``pip install`` (setuptools, ``setup.py``) and loaded with
ctypes. It is optional: without a C compiler the build skips it and
``closest_to_median_mean`` returns None, so callers fall back to the NumPy path, which
computes the same values (``tests/test_closest_to_median_kernel.py`` checks both agree).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .coordinate import column_blocks, median_band, thread_pool

LIBRARY = "fedarena.defenses.aggregation._closest_to_median"


def closest_to_median_mean(rows: Tensor, select: Tensor, keep: int) -> Tensor | None:
    """Per column of ``rows[select]``, the mean of the ``keep`` values closest to the
    column's median (ties drop the upper end): ``trimmed_around_median``'s values.

    ``rows``: contiguous float32 CPU ``[n, d]``, finite (aggregators reject non-finite
    updates before they get here); ``select``: ``[θ]`` row indices. Returns None when the
    kernel is not built or ``rows`` is of another kind; the caller then uses NumPy.
    """
    library = _library()
    if library is None or not _supported(rows):
        return None
    n, d = rows.shape
    picked = select.detach().cpu().to(torch.int64).contiguous().numpy()
    theta = picked.shape[0]
    if not 1 <= keep <= theta:
        raise ValueError(f"closest_to_median_mean: keep must be in [1, {theta}], got {keep}")
    if theta and (picked.min() < 0 or picked.max() >= n):
        raise ValueError(f"closest_to_median_mean: select holds indices outside [0, {n})")
    lo, hi = median_band(theta, keep)
    low_wire, high_wire = band_network(theta, lo, hi)
    src = rows.detach().numpy()
    out = np.empty(d, dtype=np.float32)

    def run(bounds: tuple[int, int]) -> int:
        return library(src.ctypes.data, d, picked.ctypes.data, theta, low_wire.ctypes.data, high_wire.ctypes.data,
                       len(low_wire), lo, hi, keep, bounds[0], bounds[1], out.ctypes.data)

    blocks = column_blocks(d)
    status = [run(blocks[0])] if len(blocks) == 1 else list(thread_pool(len(blocks)).map(run, blocks))
    if any(status):
        raise MemoryError("closest_to_median_mean: the kernel could not allocate its block buffer")
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=64)
def band_network(wires: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Comparators ``(low[q], high[q])`` that leave wires ``[lo, hi)`` holding the sorted
    values of those ranks: Batcher's odd–even merge sort (1968) on ``wires`` inputs, then
    only the comparators some band output depends on.

    Batcher's network for the next power of two, minus every comparator touching a wire
    ≥ ``wires``, sorts ``wires`` inputs (those wires would carry +∞ and never move).
    Walking it backwards from the band keeps a comparator iff one of its wires still
    feeds the band; the rest cannot change the band's values.
    """
    if not 0 <= lo < hi <= wires:
        raise ValueError(f"band_network: need 0 ≤ lo < hi ≤ wires, got lo={lo}, hi={hi}, wires={wires}")
    size = 1 << max(wires - 1, 0).bit_length()
    network: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < wires:
                        network.append((a, b))
            k //= 2
        p *= 2
    needed = set(range(lo, hi))
    kept: list[tuple[int, int]] = []
    for a, b in reversed(network):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    low = np.array([a for a, _ in kept], dtype=np.int32)
    high = np.array([b for _, b in kept], dtype=np.int32)
    return low, high


def available() -> bool:
    """Whether the compiled kernel was built and loads."""
    return _library() is not None


def _supported(rows: Tensor) -> bool:
    return (rows.dim() == 2 and rows.dtype == torch.float32 and rows.device.type == "cpu"
            and not rows.requires_grad and rows.is_contiguous())


@functools.lru_cache(maxsize=1)
def _library() -> Callable[..., int] | None:
    spec = importlib.util.find_spec(LIBRARY)
    if spec is None or spec.origin is None:
        return None
    try:
        function = ctypes.CDLL(spec.origin).closest_to_median_mean_f32
    except OSError:
        return None
    i32, i64, ptr = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    function.argtypes = [ptr, i64, ptr, i32, ptr, ptr, i32, i32, i32, i32, i64, i64, ptr]
    function.restype = ctypes.c_int
    return function
