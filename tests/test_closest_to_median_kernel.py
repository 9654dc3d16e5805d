"""Bulyan's native coordinate kernel: its comparator network and its agreement with the
NumPy path, plus the Gram-first screen of non-finite rows that Gram-based rules use."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.defenses.aggregation import NNM, Bulyan, Krum
from fedarena.defenses.aggregation.coordinate import median_band
from fedarena.defenses.aggregation.krum import trimmed_around_median
from fedarena.defenses.aggregation.native import available, band_network, closest_to_median_mean
from fedarena.fl_core.aggregation import finite_rows
from fedarena.fl_core.geometry import gram

needs_kernel = pytest.mark.skipif(not available(), reason="the C kernel was not built (no C compiler at install); "
                                                         "Bulyan uses its NumPy path")


def run_network(values: np.ndarray, wires: int, lo: int, hi: int) -> np.ndarray:
    """Apply ``band_network`` to the columns of ``values`` ``[wires, m]`` in NumPy."""
    v = values.copy()
    low, high = band_network(wires, lo, hi)
    for a, b in zip(low.tolist(), high.tolist(), strict=True):
        v[a], v[b] = np.minimum(v[a], v[b]), np.maximum(v[a], v[b])
    return v


@pytest.mark.parametrize("wires", range(1, 11))
def test_full_network_sorts_every_zero_one_input(wires: int) -> None:
    """0–1 principle: a comparator network sorts everything iff it sorts every 0/1 input."""
    inputs = np.array(list(itertools.product([0.0, 1.0], repeat=wires))).T  # [wires, 2^wires]
    assert np.array_equal(run_network(inputs, wires, 0, wires), np.sort(inputs, axis=0))


@pytest.mark.parametrize("wires", [13, 31, 52, 64, 65, 100])
def test_pruned_network_gives_the_band_of_order_statistics(wires: int) -> None:
    rng = np.random.default_rng(wires)
    values = rng.integers(-4, 5, size=(wires, 300)).astype(np.float64)  # many ties
    for keep in {1, 2, wires // 4 or 1, wires // 2}:
        lo, hi = median_band(wires, keep)
        got = run_network(values, wires, lo, hi)[lo:hi]
        assert np.array_equal(got, np.sort(values, axis=0)[lo:hi]), keep
    full, pruned = band_network(wires, 0, wires)[0].size, band_network(wires, *median_band(wires, 2))[0].size
    assert pruned <= full


def test_band_network_rejects_an_empty_or_outside_band() -> None:
    with pytest.raises(ValueError, match="lo < hi"):
        band_network(10, 5, 5)
    with pytest.raises(ValueError, match="wires=10"):
        band_network(10, 0, 11)


@needs_kernel
@pytest.mark.parametrize("theta", [1, 2, 3, 7, 8, 52, 65])
def test_kernel_equals_the_numpy_path_with_ties_and_odd_widths(theta: int) -> None:
    g = torch.Generator().manual_seed(theta)
    d = 1000 + 37  # not a multiple of the kernel's block
    integer = torch.randint(-3, 4, (theta + 3, d), generator=g).float()
    normal = torch.randn(theta + 3, d, generator=g)
    select = torch.randperm(theta + 3, generator=g)[:theta]
    for x in (integer, normal):
        for drop in sorted({1, theta // 3, theta // 2, theta - 1} - {0}):
            if drop >= theta:
                continue
            native = trimmed_around_median(x, drop, select=select)
            reference = trimmed_around_median(x, drop, select=select, native=False)
            assert torch.allclose(native, reference, atol=1e-5), (theta, drop)


@needs_kernel
def test_kernel_is_used_for_float32_and_bulyan_matches_the_numpy_path() -> None:
    x = torch.randn(23, 5000, generator=torch.Generator().manual_seed(1))
    x[:5] = 30 * x[:5] + 4
    assert closest_to_median_mean(x, torch.arange(11), 3) is not None
    assert closest_to_median_mean(x.double(), torch.arange(11), 3) is None  # float64: NumPy path
    out = Bulyan(f=5)(x)
    selected = out.weights.nonzero().squeeze(1)
    reference = trimmed_around_median(x, 10, select=selected, native=False)
    assert torch.allclose(out.aggregate, reference, atol=1e-6)


@needs_kernel
def test_kernel_rejects_bad_selections() -> None:
    x = torch.randn(6, 100)
    with pytest.raises(ValueError, match="outside"):
        closest_to_median_mean(x, torch.tensor([0, 6]), 1)
    with pytest.raises(ValueError, match="keep"):
        closest_to_median_mean(x, torch.tensor([0, 1]), 3)


def test_gram_diagonal_screens_rows_like_the_row_sum() -> None:
    x = torch.randn(5, 10)
    x[1] = 3e19  # finite entries whose squared norm overflows float32
    x[2, 4] = math.nan
    x[3, 0] = math.inf
    x[4, 9] = -math.inf
    expected = [True, True, False, False, False]
    assert finite_rows(x).tolist() == expected
    assert finite_rows(x, gram(x).diagonal()).tolist() == expected


def test_gram_fed_rules_equal_their_direct_computation() -> None:
    """The base hands Gram rules the finite rows' Gram matrix; NNM hands its inner rule
    M G Mᵀ. Both must give what the rules compute from the rows themselves."""
    x = torch.randn(15, 40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[:3] += 8.0
    for rule in (Krum(f=3), Bulyan(f=3), NNM("krum", f=3), NNM("bulyan", f=3)):
        via_base = rule(x)
        direct = rule.aggregate(x, torch.ones(15), list(range(15)))  # no gram: computed inside
        assert torch.allclose(via_base.aggregate, direct.aggregate, atol=1e-9), rule.name
        assert torch.allclose(via_base.weights, direct.weights, atol=1e-9), rule.name
