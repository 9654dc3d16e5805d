"""One finite but huge update against every aggregator (issue 14, items 4–6).

A boosted or corrupted upload with entries ≥ ~3e18 has a squared norm beyond float32's
range. Every rule must treat it as an outlier by its own rule — excluded, clipped or
down-weighted — with norms computed without overflow: a finite aggregate within the
honest updates' coordinate range (the box around their hull) or the rule's documented
bound, and the honest clients kept.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.defenses.aggregation import NNM, Bulyan, FoolsGold, Krum, MultiKrum
from fedarena.defenses.aggregation.krum import recursive_krum
from fedarena.defenses.mud_hog import MudHoG
from fedarena.defenses.registry import AGGREGATORS

N_HONEST, D = 9, 64
SCALES = [1e10, 1e20, 1e30, 1e38]
NOT_ROBUST = {"fedavg"}  # the sample-weighted mean: no robustness, documented
COORDINATE = {"median", "trimmed_mean", "nnm"}  # weights are documented uniform (every finite row used)
CLIPPING = {"centered_clipping": 10.0, "norm_clipping": None}  # documented bound: the clipping radius


def honest_round(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.02 + 0.05 * torch.randn(N_HONEST, D, generator=g)  # diverse: FoolsGold trusts them


def huge(scale: float, seed: int = 99) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(D, generator=g)
    return (scale * direction / direction.abs().max()).unsqueeze(0)  # entries up to ±scale, all finite


def fresh(name: str):
    return AGGREGATORS.build(name, warmup_rounds=0) if name == "mud_hog" else AGGREGATORS.build(name)


def check_bounded(name: str, honest: torch.Tensor, aggregate: torch.Tensor) -> None:
    assert torch.isfinite(aggregate).all(), name
    if name in NOT_ROBUST:
        return
    if name in CLIPPING:
        norms = torch.linalg.vector_norm(honest, dim=1)
        radius = CLIPPING[name] if CLIPPING[name] is not None else float(norms.max())
        assert float(torch.linalg.vector_norm(aggregate)) <= max(float(norms.max()), radius) * (1 + 1e-5), name
        return
    low, high = honest.min(0).values, honest.max(0).values
    slack = 1e-4 * float((high - low).max())
    assert bool(((aggregate >= low - slack) & (aggregate <= high + slack)).all()), name


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", AGGREGATORS.names())
def test_every_aggregator_bounds_one_huge_finite_update(name: str, scale: float) -> None:
    honest = honest_round(0)
    for position in (0, N_HONEST):
        rows = torch.cat([honest[:position], huge(scale), honest[position:]])
        out = fresh(name)(rows, client_ids=list(range(N_HONEST + 1)))
        check_bounded(name, honest, out.aggregate)
        assert torch.isfinite(out.weights).all(), name
        if name not in NOT_ROBUST | COORDINATE | set(CLIPPING):
            others = torch.cat([out.weights[:position], out.weights[position + 1:]])
            spread = float((honest.max(0).values - honest.min(0).values).max())
            assert float(out.weights[position]) * scale <= spread * float(others.sum()), name  # pull ≤ spread


@pytest.mark.parametrize("name", ["mud_hog", "foolsgold", "geometric_median", "krum", "bulyan", "nnm"])
def test_stateful_and_distance_rules_keep_it_out_round_after_round(name: str) -> None:
    rule = AGGREGATORS.build(name)  # mud_hog with its warm-up (the code averages everyone there)
    for t in range(6):
        honest = honest_round(t)
        rows = torch.cat([honest, huge(1e20, seed=t)])
        out = rule(rows, client_ids=list(range(N_HONEST + 1)))
        check_bounded(name, honest, out.aggregate)
        if name != "nnm":  # nnm's inner median: uniform weights by definition
            spread = float((honest.max(0).values - honest.min(0).values).max())
            assert float(out.weights[-1]) * 1e20 <= spread, (name, t)
        assert float(out.weights[:-1].sum()) > 0, (name, t)
    if name == "mud_hog":
        assert isinstance(rule, MudHoG)
        assert N_HONEST not in {cid for cid in range(N_HONEST)}  # ids 0..8 are honest
        assert out.info["norm_outliers"] == [N_HONEST]


def test_mud_hog_and_foolsgold_record_the_outlier_not_the_honest_clients() -> None:
    for rule in (MudHoG(), FoolsGold()):
        out = rule(torch.cat([honest_round(0), huge(1e30)]), client_ids=list(range(N_HONEST + 1)))
        assert out.info["norm_outliers"] == [N_HONEST]
        assert bool((out.weights[:-1] > 0).all())  # no honest client excluded for it


def test_recursive_krum_never_reselects_a_row_when_scores_are_infinite() -> None:
    d2 = torch.full((7, 7), float("inf"), dtype=torch.float64)
    d2[:3, :3] = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.5], [2.0, 1.5, 0.0]])
    d2.fill_diagonal_(0.0)
    for count in range(1, 8):
        picked = recursive_krum(d2, 1, count).tolist()
        assert len(set(picked)) == count, picked
    assert recursive_krum(d2, 1, 3).tolist() == [0, 1, 2]
    nan = d2.clone()
    nan[5, 6] = nan[6, 5] = float("nan")
    assert len(set(recursive_krum(nan, 1, 7).tolist())) == 7


def test_bulyan_and_krum_with_explicit_f_survive_a_rejected_client() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(11, 16, generator=g)  # n = 11 = 4·2 + 3: Bulyan(f=2) just admissible
    x[4, 2] = float("nan")  # rejected by the base: 10 rows remain
    out = Bulyan(f=2)(x)
    assert out.info["rejected_nonfinite"] == [4]
    assert out.info["f"] == 1 and out.info["f_clamped"] == {
        "rule": "bulyan", "n": 10, "f_requested": 2, "f_used": 1, "condition": "n >= 4f + 3"}
    assert torch.isfinite(out.aggregate).all() and out.weights[4] == 0
    for rule in (Krum(f=4), MultiKrum(f=4)):  # n = 10 < 2·4 + 3
        res = rule(x)
        assert res.info["f_clamped"]["f_used"] == 3 and torch.isfinite(res.aggregate).all()
    few = NNM(aggregator="krum", f=4)(x[:4])  # n = 4 ≤ f: NNM and its inner Krum both clamp
    assert few.info["nnm_f_clamped"]["f_used"] == 1 and few.info["f_clamped"]["rule"] == "krum"
    assert torch.isfinite(few.aggregate).all()


def test_no_aggregator_creates_tensors_on_the_default_device() -> None:
    """With the default device set to ``meta``, any tensor a rule creates without naming
    the input's device lands there and breaks the CPU computation."""
    honest = honest_round(1)
    torch.set_default_device("meta")
    try:
        for name in AGGREGATORS.names():
            rule = fresh(name)
            for _ in range(2):
                out = rule(honest, num_samples=torch.arange(1, N_HONEST + 1, device="cpu"),
                           client_ids=list(range(N_HONEST)))
            assert out.aggregate.device.type == "cpu" and out.weights.device.type == "cpu", name
    finally:
        torch.set_default_device(None)
    assert np.isfinite(out.aggregate.numpy()).all()
