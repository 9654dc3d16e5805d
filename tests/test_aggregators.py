"""Robust aggregators on hand-made inputs with known answers, and against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.defenses.aggregation import (
    NNM,
    Bulyan,
    CenteredClipping,
    CoordinateMedian,
    FoolsGold,
    GeometricMedian,
    Krum,
    MultiKrum,
    NormClipping,
    TrimmedMean,
)
from fedarena.defenses.aggregation.krum import recursive_krum, trimmed_around_median
from fedarena.defenses.aggregation.nnm import mixing_matrix
from fedarena.defenses.registry import AGGREGATORS
from fedarena.fl_core.geometry import gram, isometric_embedding, pairwise_cosine, pairwise_sq_distances, sq_distances_to
from fedarena.fl_core.registry import UnknownNameError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def planted(n_honest: int = 7, n_bad: int = 3, d: int = 5, seed: int = 0) -> torch.Tensor:
    """A tight honest cluster around 1 and far, scattered outliers (rows n_honest…)."""
    g = gen(seed)
    honest = 1.0 + 0.01 * torch.randn(n_honest, d, generator=g, dtype=torch.float64)
    bad = 50.0 * torch.randn(n_bad, d, generator=g, dtype=torch.float64)
    return torch.cat([honest, bad])


# ------------------------------------------------------------------ geometry helper


def test_gram_distances_and_cosines_match_direct_computation() -> None:
    x = torch.randn(9, 40, generator=gen(), dtype=torch.float64)
    assert torch.allclose(pairwise_sq_distances(x), torch.cdist(x, x) ** 2, atol=1e-10)
    assert torch.equal(pairwise_sq_distances(x).diagonal(), torch.zeros(9, dtype=torch.float64))
    unit = x / x.norm(dim=1, keepdim=True)
    assert torch.allclose(pairwise_cosine(x), unit @ unit.T, atol=1e-12)
    v = torch.randn(40, generator=gen(1), dtype=torch.float64)
    assert torch.allclose(sq_distances_to(x, v), ((x - v) ** 2).sum(1), atol=1e-10)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        pairwise_sq_distances(torch.zeros(3))
    y = isometric_embedding(gram(x))
    assert y.shape[1] <= 9 and torch.allclose(pairwise_sq_distances(y), pairwise_sq_distances(x), atol=1e-9)


# ------------------------------------------------------------------ coordinate-wise rules


def test_coordinate_median_known_answers() -> None:
    odd = torch.tensor([[1.0, 10.0], [3.0, -5.0], [2.0, 7.0]])
    assert torch.equal(CoordinateMedian()(odd).aggregate, torch.tensor([2.0, 7.0]))
    even = torch.tensor([[1.0, 0.0], [4.0, 8.0], [2.0, 2.0], [100.0, -100.0]])
    assert torch.equal(CoordinateMedian()(even).aggregate, torch.tensor([3.0, 1.0]))  # mean of middle pair
    assert torch.allclose(CoordinateMedian()(even).weights, torch.full((4,), 0.25))


def test_median_matches_torch_quantile_on_random_data() -> None:
    x = torch.randn(10, 1000, generator=gen())
    assert torch.allclose(CoordinateMedian()(x).aggregate, torch.quantile(x, 0.5, dim=0), atol=1e-6)


def test_trimmed_mean_drops_extremes() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0], [1000.0], [-1000.0], [5.0], [6.0], [7.0], [8.0]])
    out = TrimmedMean(beta=0.1)(x)  # k = 1 per side: drops 1000 and -1000
    assert out.aggregate.item() == pytest.approx(4.5)
    assert out.info["trimmed_per_side"] == 1
    out2 = TrimmedMean(beta=0.2)(x)  # k = 2: drops ±1000, 1 and 8
    assert out2.aggregate.item() == pytest.approx((2 + 3 + 4 + 5 + 6 + 7) / 6)
    assert TrimmedMean(beta=0.0)(x).aggregate.item() == pytest.approx(float(x.mean()))
    with pytest.raises(ValueError, match="beta"):
        TrimmedMean(beta=0.5)


# ------------------------------------------------------------------ Krum family


def test_krum_picks_the_planted_honest_cluster_centre() -> None:
    centre = torch.ones(4, dtype=torch.float64)
    offsets = 0.1 * torch.eye(4, dtype=torch.float64)
    honest = torch.cat([centre.unsqueeze(0), centre + offsets, centre - offsets])  # 9 rows, row 0 central
    bad = torch.tensor([[30.0, 0, 0, 0], [0, -30.0, 0, 0], [0, 0, 30.0, 30.0]], dtype=torch.float64)
    x = torch.cat([bad, honest])  # honest centre at row 3
    out = Krum(f=3)(x, client_ids=[10 + i for i in range(12)])
    assert torch.equal(out.aggregate, centre)
    assert out.weights.tolist() == [0, 0, 0, 1] + [0] * 8
    assert out.info["selected"] == [13]


def test_multi_krum_averages_exactly_the_honest_cluster() -> None:
    x = planted(n_honest=7, n_bad=3)
    out = MultiKrum(f=3)(x)  # m = n - f = 7
    assert torch.allclose(out.aggregate, x[:7].mean(0))
    assert torch.allclose(out.weights, torch.tensor([1 / 7] * 7 + [0.0] * 3, dtype=torch.float64))


def test_krum_clamps_f_too_large_with_a_record_and_defaults_to_the_largest_allowed() -> None:
    # Issue 14, item 6: a round whose n no longer admits the explicit f is clamped and recorded, never an error.
    x = planted()  # n = 10
    out = Krum(f=4)(x)
    assert out.info["f"] == 3
    assert out.info["f_clamped"] == {"rule": "krum", "n": 10, "f_requested": 4, "f_used": 3,
                                     "condition": "n >= 2f + 3"}
    assert torch.equal(out.aggregate, Krum(f=3)(x).aggregate)
    out = Bulyan(f=2)(x)
    assert out.info["f"] == 1 and out.info["f_clamped"]["f_requested"] == 2
    assert torch.equal(out.aggregate, Bulyan(f=1)(x).aggregate)
    assert Krum()(x).info["f"] == 3 and "f_clamped" not in Krum(f=3)(x).info
    assert Bulyan()(x).info["f"] == 1


def _bulyan_reference(x: torch.Tensor, f: int) -> torch.Tensor:
    """Bulyan written the slow, obvious way: recompute Krum on the remaining set each step,
    then per coordinate keep the β values closest to the median (greedy from both ends)."""
    left = list(range(x.shape[0]))
    chosen = []
    for _ in range(x.shape[0] - 2 * f):
        k = max(len(left) - f - 2, 1)
        scores = []
        for i in left:
            d = sorted(float(((x[i] - x[j]) ** 2).sum()) for j in left if j != i)
            scores.append(sum(d[:k]) if len(left) > 1 else 0.0)
        best = left[min(range(len(left)), key=lambda t: (scores[t], left[t]))]
        chosen.append(best)
        left.remove(best)
    return _closest_to_median_reference(x[sorted(chosen)], 2 * f)


def _closest_to_median_reference(sel: torch.Tensor, drop: int) -> torch.Tensor:
    """Per column: sort, drop the ``drop`` values farthest from the median one at a time."""
    theta = sel.shape[0]
    out = torch.empty(sel.shape[1], dtype=sel.dtype)
    for c in range(sel.shape[1]):
        vals = sorted(sel[:, c].tolist())
        med = vals[theta // 2] if theta % 2 else 0.5 * (vals[theta // 2 - 1] + vals[theta // 2])
        lo, hi = 0, theta - 1
        for _ in range(drop):
            if vals[hi] - med >= med - vals[lo]:
                hi -= 1
            else:
                lo += 1
        out[c] = sum(vals[lo: hi + 1]) / (hi - lo + 1)
    return out


@pytest.mark.parametrize("theta", [5, 8, 13, 52])
def test_trimmed_around_median_band_equals_the_full_greedy_trim_with_ties(theta: int) -> None:
    """The trim runs on the band of order statistics around the median; integer values make
    ties common, the case where a band could differ from the full greedy trim."""
    g = gen(theta)
    x = torch.randint(-3, 4, (theta + 3, 200), generator=g).double()
    select = torch.randperm(theta + 3, generator=g)[:theta]
    for drop in range(theta):
        got = trimmed_around_median(x, drop, select=select)
        assert torch.allclose(got, _closest_to_median_reference(x[select], drop), atol=1e-12), drop


@pytest.mark.parametrize(("n", "f", "seed"), [(11, 2, 0), (15, 3, 1), (12, 2, 2), (7, 1, 3)])
def test_bulyan_equals_the_slow_reference(n: int, f: int, seed: int) -> None:
    x = torch.randn(n, 6, generator=gen(seed), dtype=torch.float64)
    x[:f] = x[:f] * 20 + 5  # some outliers
    out = Bulyan(f=f)(x)
    assert torch.allclose(out.aggregate, _bulyan_reference(x, f), atol=1e-12)
    assert out.info["theta"] == n - 2 * f and out.info["beta"] == n - 4 * f
    assert int((out.weights > 0).sum()) == n - 2 * f


def test_bulyan_invariants_outliers_never_selected_and_output_in_honest_range() -> None:
    x = planted(n_honest=9, n_bad=2, d=20)
    out = Bulyan(f=2)(x)
    assert out.weights[9:].sum() == 0
    honest = x[:9]
    assert bool((out.aggregate >= honest.min(0).values).all() and (out.aggregate <= honest.max(0).values).all())


def test_trimmed_around_median_with_ties_and_recursive_krum_selection_order() -> None:
    rows = torch.tensor([[0.0], [0.0], [0.0], [10.0], [-10.0], [0.0], [0.0]])
    assert trimmed_around_median(rows, 2).item() == 0.0
    assert trimmed_around_median(rows[[3, 0, 4]].clone(), 2, inplace=True).item() == 0.0  # keeps the middle one
    d2 = pairwise_sq_distances(planted(n_honest=5, n_bad=2).float())
    assert recursive_krum(d2, 1, 5).tolist() == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ geometric median


def test_geometric_median_of_symmetric_points_is_the_centre() -> None:
    centre = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    offsets = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    x = torch.cat([centre + offsets, centre - offsets])
    out = GeometricMedian(max_iter=50)(x)
    assert torch.allclose(out.aggregate, centre, atol=1e-9)


def test_geometric_median_at_a_vertex_with_angle_over_120_degrees() -> None:
    # The Fermat point of a triangle with an angle >= 120° is that vertex (the origin here).
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.1]], dtype=torch.float64)
    out = GeometricMedian(max_iter=2000, ftol=0.0, nu=1e-12)(x)
    assert out.aggregate.norm() < 1e-3
    assert torch.allclose(out.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    mean = x.mean(0)
    assert out.aggregate.norm() < mean.norm() / 10


def test_geometric_median_resists_a_far_outlier_and_uses_sample_weights() -> None:
    x = torch.cat([planted(n_honest=8, n_bad=0), torch.full((1, 5), 1e4, dtype=torch.float64)])
    out = GeometricMedian(max_iter=100)(x)
    assert (out.aggregate - 1.0).abs().max() < 0.05
    two = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    heavy = GeometricMedian(max_iter=100)(two, num_samples=[3, 1])
    assert heavy.aggregate.item() == pytest.approx(0.0, abs=1e-4)  # the weighted GM sits on the heavy point


# ------------------------------------------------------------------ clipping


def test_centered_clipping_clips_around_the_previous_aggregate() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [100.0, 0.0]], dtype=torch.float64)
    cc = CenteredClipping(tau=1.0, iterations=1)
    first = cc(x)  # centre 0: rows 0,1 unclipped, row 2 clipped to norm 1
    assert torch.allclose(first.aggregate, torch.tensor([2.0, 1.0], dtype=torch.float64) / 3)
    assert torch.allclose(first.weights, torch.tensor([1 / 3, 1 / 3, 1 / 300], dtype=torch.float64))
    second = cc(x)  # starts from the first aggregate
    v = first.aggregate
    expected = v + sum((r - v) * min(1.0, 1.0 / float((r - v).norm())) for r in x) / 3
    assert torch.allclose(second.aggregate, expected)
    cc.reset()
    assert torch.allclose(cc(x).aggregate, first.aggregate)
    assert torch.allclose(CenteredClipping(tau=1e9)(x).aggregate, x.mean(0))


def test_norm_clipping_known_answer() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, -2.0]], dtype=torch.float64)  # norms 5, 1, 2
    out = NormClipping(max_norm=2.0)(x, num_samples=[1, 1, 2])
    expected = (0.25 * torch.tensor([1.2, 1.6]) + 0.25 * torch.tensor([0.0, 1.0])
                + 0.5 * torch.tensor([0.0, -2.0])).double()
    assert torch.allclose(out.aggregate, expected)
    assert torch.allclose(out.weights, torch.tensor([0.25 * 0.4, 0.25, 0.5], dtype=torch.float64))
    assert NormClipping()(x).info["max_norm"] == pytest.approx(2.0)  # median norm


# ------------------------------------------------------------------ NNM


def test_nnm_mixes_each_row_with_its_nearest_neighbours() -> None:
    x = torch.randn(8, 3, generator=gen(4), dtype=torch.float64)
    f = 3
    m = mixing_matrix(pairwise_sq_distances(x), 8 - f)
    for i in range(8):
        nearest = torch.argsort(((x - x[i]) ** 2).sum(1), stable=True)[: 8 - f]
        assert torch.allclose(m[i] @ x, x[nearest].mean(0))
    assert torch.allclose(m.sum(1), torch.ones(8, dtype=torch.float64))


def test_nnm_invariants_with_inner_rules() -> None:
    x = torch.randn(9, 4, generator=gen(5), dtype=torch.float64)
    # f = 0: every row becomes the global mean, so NNM∘median is the mean.
    assert torch.allclose(NNM("median", f=0)(x).aggregate, x.mean(0))
    out = NNM("krum", f=2)(x)
    assert out.info["f"] == 2 and out.info["nnm_f"] == 2  # f passed on to the inner rule
    assert torch.allclose(out.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    mix = mixing_matrix(pairwise_sq_distances(x), 7)
    chosen = out.info["selected"][0]  # Krum's pick among the mixed rows
    assert torch.allclose(out.aggregate, (mix @ x)[chosen])
    assert torch.allclose(out.weights, mix[chosen])  # trust flows back to the clients mixed into it
    assert torch.allclose(out.aggregate, out.weights @ x)
    same = NNM(TrimmedMean(beta=0.2), f=2)(x)
    assert torch.allclose(same.aggregate, TrimmedMean(beta=0.2)(mix @ x).aggregate)
    with pytest.raises(UnknownNameError, match="known: .*krum"):
        NNM("no_such_rule")
    with pytest.raises(ValueError, match="cannot be nnm"):
        NNM("nnm")


# ------------------------------------------------------------------ FoolsGold


def test_foolsgold_zeroes_sybils_and_keeps_distinct_clients() -> None:
    d = 12
    honest = torch.eye(d, dtype=torch.float64)[:6] + 0.05
    sybil = torch.zeros(d, dtype=torch.float64)
    sybil[8:] = 1.0
    x = torch.cat([honest, sybil.expand(3, d)])
    fg = FoolsGold()
    for _ in range(3):
        out = fg(x, client_ids=list(range(9)))
    assert torch.all(out.weights[6:] == 0)
    assert torch.all(out.weights[:6] > 0)
    assert torch.allclose(out.aggregate, out.weights[:6] @ honest)
    assert fg.history is not None and len(fg.history) == 9
    assert torch.allclose(fg.history.data, 3 * x)
    fg.reset()
    assert fg.history is None


# ------------------------------------------------------------------ every registered aggregator


def _fresh(name: str):
    return AGGREGATORS.build(name, warmup_rounds=0) if name == "mud_hog" else AGGREGATORS.build(name)


@pytest.mark.parametrize("name", AGGREGATORS.names())
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_aggregator_rejects_a_non_finite_update_without_effect(name: str, bad: float) -> None:
    clean = torch.randn(12, 30, generator=gen(7)) + 0.5
    counts = torch.arange(1, 13, dtype=torch.float32)
    ids = list(range(100, 112))
    poisoned = torch.cat([clean[:5], torch.full((1, 30), 1.0), clean[5:]])
    poisoned[5, 3] = bad
    p_counts = torch.cat([counts[:5], torch.tensor([50.0]), counts[5:]])
    p_ids = ids[:5] + [999] + ids[5:]
    expected = _fresh(name)(clean, counts, ids)
    got = _fresh(name)(poisoned, p_counts, p_ids)
    assert torch.isfinite(got.aggregate).all()
    assert torch.allclose(got.aggregate, expected.aggregate, atol=1e-6)
    assert got.weights[5] == 0
    assert torch.allclose(torch.cat([got.weights[:5], got.weights[6:]]), expected.weights, atol=1e-6)
    assert got.info["rejected_nonfinite"] == [999]


@pytest.mark.parametrize("name", AGGREGATORS.names())
def test_every_aggregator_handles_tiny_rounds(name: str) -> None:
    for n in (1, 2, 3):
        x = torch.randn(n, 5, generator=gen(n))
        out = _fresh(name)(x)
        assert out.aggregate.shape == (5,) and out.weights.shape == (n,)
        assert torch.isfinite(out.aggregate).all()


def test_registry_holds_every_rule_of_the_issue() -> None:
    wanted = {"fedavg", "median", "trimmed_mean", "krum", "multi_krum", "bulyan", "geometric_median",
              "centered_clipping", "norm_clipping", "nnm", "foolsgold", "mud_hog"}
    assert wanted <= set(AGGREGATORS.names())
    from fedarena.fl_core.aggregation import FedAvg

    assert AGGREGATORS.get("fedavg") is FedAvg


def test_krum_scores_are_permutation_equivariant() -> None:
    x = planted(n_honest=6, n_bad=2)
    base = MultiKrum(f=2)(x, client_ids=list(range(8)))
    for perm in itertools.islice(itertools.permutations(range(8)), 0, 40, 7):
        p = list(perm)
        out = MultiKrum(f=2)(x[p], client_ids=p)
        assert sorted(out.info["selected"]) == sorted(base.info["selected"])


def test_rows_whose_sum_overflows_are_finite_and_kept() -> None:
    from fedarena.fl_core.aggregation import finite_rows

    x = torch.randn(4, 10)
    x[1] = 3e38  # finite entries, infinite row sum
    x[2, 4] = math.nan
    x[3, 0], x[3, 1] = math.inf, -math.inf  # sum NaN
    assert finite_rows(x).tolist() == [True, True, False, False]
    out = CoordinateMedian()(x)
    assert out.weights.tolist() == [0.5, 0.5, 0.0, 0.0]
