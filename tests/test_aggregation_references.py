"""Aggregators against their reference code (issue 13, defects 2, 3 and 6).

Each test reproduces a case where FedArena disagreed with the reference (FoolsGold's
``DistributedML/FoolsGold``, ByzFL's ``TrMean(f)``, exact distances) and fails on the
code before the fix.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.defenses.aggregation import FoolsGold, GeometricMedian, Krum, MultiKrum, TrimmedMean
from fedarena.defenses.aggregation.foolsgold import foolsgold_weights
from fedarena.defenses.aggregation.krum import krum_scores
from fedarena.fl_core.geometry import (
    distance_gram,
    gram,
    pairwise_cosine,
    pairwise_sq_distances,
    sq_distances_from_gram,
)

# ------------------------------------------------------------------ FoolsGold (defect 2)


def _reference_foolsgold(cs: np.ndarray, kappa: float = 1.0) -> np.ndarray:
    """The reference's steps, one loop per step as written there: cs − I, pardoning
    cs_ij · v_i / v_j when v_i < v_j (i ≠ j), α = 1 − max_j cs_ij clipped to [0, 1],
    α / max α, 1 → 0.99, κ(logit + 0.5) clipped to [0, 1]."""
    n = cs.shape[0]
    cs = cs - np.eye(n)
    v = cs.max(axis=1)
    for i in range(n):
        for j in range(n):
            if i != j and v[i] < v[j]:
                cs[i, j] = cs[i, j] * v[i] / v[j]
    wv = 1.0 - cs.max(axis=1)
    wv = np.clip(wv, 0.0, 1.0)
    wv = wv / wv.max()
    wv[wv == 1.0] = 0.99
    with np.errstate(divide="ignore"):
        wv = kappa * (np.log(wv / (1.0 - wv)) + 0.5)
    wv[np.isinf(wv) & (wv > 0)] = 1.0
    return np.clip(wv, 0.0, 1.0)


def _sybils_honest_and_a_contrarian(seed: int = 0) -> torch.Tensor:
    """3 sybils (one direction), 6 honest clients around a shared direction, and one
    client anti-correlated with every other (its largest cosine is negative)."""
    g = torch.Generator().manual_seed(seed)
    d = 40
    shared = torch.randn(d, generator=g, dtype=torch.float64)
    sybil = torch.randn(d, generator=g, dtype=torch.float64)
    sybils = sybil + 0.01 * torch.randn(3, d, generator=g, dtype=torch.float64)
    honest = 0.8 * shared + torch.randn(6, d, generator=g, dtype=torch.float64)
    contrarian = -(sybils.sum(0) / 3 + honest.mean(0))
    return torch.cat([sybils, honest, contrarian.unsqueeze(0)])


def test_foolsgold_pardoning_matches_the_reference_with_an_anti_correlated_client() -> None:
    x = _sybils_honest_and_a_contrarian()
    cs = pairwise_cosine(x)
    off_diagonal = cs.clone().fill_diagonal_(-2.0)
    assert float(off_diagonal[9].max()) < 0  # the case of the issue: v_9 < 0
    expected = _reference_foolsgold(cs.numpy())
    got = foolsgold_weights(cs).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.all(got[:3] == 0) and got[9] == 1.0
    assert np.all((got[3:9] > 0) & (got[3:9] < 1))  # the old −∞ diagonal gave these 1 (pardoned to the top)
    out = FoolsGold()(x.float(), client_ids=list(range(10)))
    np.testing.assert_allclose(np.array(out.info["alpha"]), expected, atol=1e-6)


# ------------------------------------------------------------------ trimmed mean (defect 3)


def test_trimmed_mean_takes_the_number_trimmed_and_beta_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(49, 8, generator=g, dtype=torch.float64)
    x[17] = 1e6
    honest_trim = torch.sort(x, dim=0).values[1:48].mean(0)
    for rule in (TrimmedMean(f=1), TrimmedMean(beta=1 / 49)):
        out = rule(x)
        assert out.info["trimmed_per_side"] == 1
        assert torch.allclose(out.aggregate, honest_trim)
        assert out.aggregate.abs().max() < 1.0  # the plain mean is ≈ 2e4
    # Every (f, n) with n ≤ 200: β = f/n trims exactly f per side (int(β·n) missed 368 of them).
    misses = 0
    for n in range(1, 201):
        for f in range(0, (n + 1) // 2):
            if 2 * f >= n:
                continue
            misses += int(f / n * n) != f
            assert TrimmedMean(beta=f / n).trimmed_per_side(n) == f, (f, n)
    assert misses == 368
    assert TrimmedMean().trimmed_per_side(10) == 1 and TrimmedMean(beta=0.2).trimmed_per_side(20) == 4
    with pytest.raises(ValueError, match="not both"):
        TrimmedMean(beta=0.1, f=1)
    with pytest.raises(ValueError, match="f must be"):
        TrimmedMean(f=-1)


def test_trimmed_mean_with_f_clamps_when_too_few_clients_remain() -> None:
    x = torch.arange(5.0).unsqueeze(1)
    out = TrimmedMean(f=3)(x)
    assert out.info["trimmed_per_side"] == 2
    assert out.info["f_clamped"] == {"rule": "trimmed_mean", "n": 5, "f_requested": 3, "f_used": 2,
                                     "condition": "n > 2f"}
    assert out.aggregate.item() == 2.0


# ------------------------------------------------------------------ float32 distances (defect 6)


def _shared_component_stack(seed: int, ratio: float, n: int = 20, d: int = 50_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return ratio * torch.randn(d, generator=g) + torch.randn(n, d, generator=g)


def _exact_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """Every difference formed in float64, row by row: no cancellation."""
    x64 = x.double()
    return torch.stack([((x64 - x64[i]) ** 2).sum(1) for i in range(x.shape[0])])


def test_krum_choice_equals_exact_distances_when_a_shared_component_dominates() -> None:
    wrong_before, wrong_now = 0, 0
    for seed in range(6):
        x = _shared_component_stack(seed, ratio=300.0)
        exact = _exact_sq_distances(x)
        best = int(krum_scores(exact, 4).argmin())
        wrong_before += int(krum_scores(sq_distances_from_gram(gram(x)), 4).argmin()) != best
        got = pairwise_sq_distances(x)
        off = ~torch.eye(x.shape[0], dtype=torch.bool)
        assert float(((got.double() - exact).abs()[off] / exact[off]).max()) < 1e-4
        out = Krum(f=4)(x)
        wrong_now += out.info["selected"] != [best]
        assert MultiKrum(f=4)(x).info["selected"] == sorted(
            torch.argsort(krum_scores(exact, 4), stable=True)[:16].tolist())
    assert wrong_before >= 3  # the float32 Gram route picks another update on most of these stacks
    assert wrong_now == 0


def test_distance_gram_keeps_the_plain_product_when_well_conditioned() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 1000, generator=g)
    assert torch.equal(distance_gram(x), gram(x))  # bit-identical: no shift
    shifted = distance_gram(_shared_component_stack(0, ratio=300.0, n=12, d=1000))
    assert float(shifted.diagonal().max()) < 1e4  # rows shifted by a member: norms ~ the spread, not 300²·d


def test_geometric_median_uses_accurate_distances_under_a_shared_component() -> None:
    x = _shared_component_stack(2, ratio=300.0, n=9, d=20_000)
    got = GeometricMedian(max_iter=50, ftol=0.0)(x)
    reference = GeometricMedian(max_iter=50, ftol=0.0)(x.double())
    shared = x.double().mean(0)
    err = float((got.aggregate.double() - reference.aggregate).norm() / (reference.aggregate - shared).norm())
    assert err < 1e-2 and math.isfinite(got.info["objective"])
