"""MUD-HoG flags planted attackers of each type; detection scoring against true roles."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from fedarena import defenses  # noqa: F401
from fedarena.benchmarks.harness.tasks.federation import AttackGroup, build_federation, run_federation, summarize
from fedarena.benchmarks.metrics.robustness import detection_scores, predicted_labels
from fedarena.defenses.mud_hog import MudHoG, _largest_gap_labels, gap_prefers_two, largest_gap_split
from fedarena.fl_core import FederationConfig, LocalTraining
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model
from fedarena.fl_core.simulation import History, RoundRecord

ROLES = ["honest"] * 16 + ["sign_flip"] * 3 + ["additive_noise"] * 3 + ["targeted"] * 4 + ["unreliable"] * 2


def synthetic_rounds(rounds: int = 15, d: int = 300, seed: int = 0,
                     layout: list[str] | None = None) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Update streams with the signatures MUD-HoG looks for.

    Honest: a shared per-round descent step plus small client noise. Sign flip: the
    negated honest update. Additive noise: + large Gaussian noise. Targeted: + a fixed
    bias direction every round (it accumulates in the long history). Unreliable: +
    moderate fresh noise every round (lower cosine, no persistent drift).
    """
    g = torch.Generator().manual_seed(seed)
    layout = ROLES if layout is None else layout
    roles = [layout[i] for i in torch.randperm(len(layout), generator=g).tolist()]
    base = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    bias = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    unit = d ** -0.5
    for _ in range(rounds):
        step = base * (1 + 0.1 * torch.randn(1, generator=g)) + 0.1 * unit * torch.randn(d, generator=g)
        rows = []
        for role in roles:
            u = step + 0.1 * unit * torch.randn(d, generator=g)
            if role == "sign_flip":
                u = -u
            elif role == "additive_noise":
                u = u + 3.0 * unit * torch.randn(d, generator=g)
            elif role == "targeted":
                u = u + 0.4 * bias
            elif role == "unreliable":
                u = u + 1.2 * unit * torch.randn(d, generator=g)
            rows.append(u)
        yield roles, torch.stack(rows)


@pytest.mark.parametrize("seed", [0, 3])  # two role layouts
def test_mud_hog_flags_every_planted_type_and_no_honest_client(seed: int) -> None:
    agg = MudHoG()
    history = History()
    for r, (roles, x) in enumerate(synthetic_rounds(seed=seed)):
        ids = list(range(len(roles)))
        res = agg(x, torch.ones(len(ids)), ids)
        history.rounds.append(RoundRecord(r, ids, None, None, {}, dict(zip(ids, res.weights.tolist(), strict=True)),
                                          True, 0.0, res.info))
    history.roles = {i: ("label_flip" if role == "targeted" else role) for i, role in enumerate(roles)}
    flags = res.info["flags"]
    for i, role in enumerate(roles):
        assert flags.get(i, "honest") == role, (i, role, flags.get(i))
    # malicious excluded, unreliable down-weighted (half an honest client's weight), honest kept
    w = {role: {round(float(res.weights[i]), 6) for i, ro in enumerate(roles) if ro == role} for role in set(roles)}
    assert w["sign_flip"] == w["additive_noise"] == w["targeted"] == {0.0}
    assert len(w["honest"]) == 1 and len(w["unreliable"]) == 1
    assert next(iter(w["unreliable"])) == pytest.approx(0.5 * next(iter(w["honest"])))
    scores = detection_scores(history)
    for role in ("sign_flip", "additive_noise", "label_flip", "unreliable", "honest", "malicious"):
        assert scores[role].precision == 1.0 and scores[role].recall == 1.0, (role, scores[role])


def test_warmup_and_confirmation_need_consecutive_rounds() -> None:
    agg = MudHoG(warmup_rounds=3, confirm_rounds=2)
    stream = synthetic_rounds(seed=1)
    infos = []
    for _ in range(6):
        roles, x = next(stream)
        infos.append(agg(x, torch.ones(len(roles)), list(range(len(roles)))).info)
    flippers = {i for i, role in enumerate(roles) if role == "sign_flip"}
    assert [i["stage"] for i in infos] == ["warmup"] * 3 + ["detect"] * 3
    assert all(not i["flags"] for i in infos[:4])  # suspected at round 3, not yet confirmed
    assert set(infos[3]["suspects"]["sign_flip"]) == flippers
    assert flippers <= set(infos[3]["excluded"])  # suspects are kept out before confirmation
    assert {c for c, label in infos[4]["flags"].items() if label == "sign_flip"} == flippers
    targeted = {i for i, role in enumerate(roles) if role == "targeted"}
    assert not targeted & set(infos[4]["flags"])  # targeted needs 2 × confirm_rounds
    assert {c for c, label in infos[5]["flags"].items() if label == "targeted"} <= targeted


def test_a_confirmed_client_is_cleared_after_two_clean_rounds() -> None:
    agg = MudHoG(warmup_rounds=0, confirm_rounds=1)
    agg.confirmed["sign_flip"].add(5)
    agg._confirm([5], set(), set(), set())  # streak 0 → cleared at once
    assert 5 not in agg.malicious
    agg._confirm([5], {5}, set(), set())
    assert 5 in agg.confirmed["sign_flip"]
    agg._confirm([5], set(), set(), set())  # first clean round resets the streak
    assert 5 in agg.malicious
    agg._confirm([5], set(), set(), set())  # second clean round clears
    assert 5 not in agg.malicious


def test_histories_are_the_sum_and_the_moving_average_of_the_last_window_updates() -> None:
    agg = MudHoG(window=3, warmup_rounds=100)
    rows = [torch.full((2, 4), float(r)) * torch.tensor([[1.0], [-1.0]]) for r in range(1, 6)]
    for r, x in enumerate(rows):
        ids = [7, 3] if r != 2 else [3]  # client 7 skips round 2
        short, long = agg._update_histories(x if r != 2 else x[1:], ids)
    assert torch.allclose(long, torch.tensor([[1.0 + 2 + 4 + 5], [-15.0]]).expand(2, 4))
    assert torch.allclose(short, torch.tensor([[(2.0 + 4 + 5) / 3], [-4.0]]).expand(2, 4))


def test_noise_gap_is_anchored_by_the_normal_cluster() -> None:
    g = torch.Generator().manual_seed(0)
    d = 50
    honest = 0.02 * torch.randn(20, d, generator=g, dtype=torch.float64)
    direction = torch.nn.functional.normalize(torch.randn(4, d, generator=g, dtype=torch.float64), dim=1)
    noisy = direction * torch.tensor([[1.40], [1.45], [1.50], [1.70]], dtype=torch.float64)
    short = torch.cat([honest, noisy])
    ids, rows = list(range(24)), list(range(24))
    assert MudHoG()._additive_noise(short, rows, ids) == {20, 21, 22, 23}
    # the authors' rule (no gap test) splits the attackers' own distances: only the farthest is flagged
    assert MudHoG(noise_gap_with_normal=False, gap_references=None)._additive_noise(short, rows, ids) == {23}
    # with the gap test the attackers' own distances are one group: none is split off
    assert MudHoG(noise_gap_with_normal=False)._additive_noise(short, rows, ids) == set()


def test_flags_prefer_the_targeted_type() -> None:
    agg = MudHoG()
    agg.confirmed["targeted"].add(4)
    agg.confirmed["sign_flip"].update({4, 5})
    agg.confirmed["unreliable"].update({5, 6})
    assert agg.flags() == {4: "targeted", 5: "sign_flip", 6: "unreliable"}


def test_largest_gap_split() -> None:
    assert largest_gap_split([0.9, 0.1, 0.95, 0.2]) == pytest.approx(0.55)
    assert largest_gap_split([1.0]) == 0.0
    assert largest_gap_split([]) == 0.0


def test_mud_hog_rejects_bad_parameters_and_resets() -> None:
    with pytest.raises(ValueError, match="window"):
        MudHoG(window=0)
    with pytest.raises(ValueError, match="unreliable_weight"):
        MudHoG(unreliable_weight=1.5)
    agg = MudHoG(warmup_rounds=0)
    for roles, x in synthetic_rounds(rounds=3):
        agg(x, torch.ones(len(roles)), list(range(len(roles))))
    assert agg.round == 3 and agg.long is not None and len(agg.long) == len(ROLES)
    agg.reset()
    assert agg.round == 0 and agg.long is None and not agg.malicious


def test_detection_scores_for_an_untyped_aggregator() -> None:
    ids = [0, 1, 2, 3, 4]
    record = RoundRecord(0, ids, 0.5, 1.0, {4: "non-finite"}, {0: 0.5, 1: 0.5, 2: 0.0, 3: 0.0}, True, 0.1)
    roles = {0: "honest", 1: "ipm", 2: "ipm", 3: "honest", 4: "unreliable"}
    assert predicted_labels(record) == {0: "honest", 1: "honest", 2: "malicious", 3: "malicious", 4: "malicious"}
    scores = detection_scores(History([record], roles))
    assert scores["malicious"].precision == pytest.approx(1 / 3) and scores["malicious"].recall == 0.5
    assert scores["ipm"].precision is None and scores["ipm"].recall == 0.5
    assert scores["honest"].precision == 0.5 and scores["honest"].recall == 0.5
    assert scores["unreliable"].recall == 1.0


def test_mud_hog_in_a_small_digits_federation_flags_sign_flippers() -> None:
    train = load_dataset("digits", "train").subset(torch.arange(480))
    test = load_dataset("digits", "test").subset(torch.arange(200))
    groups = [AttackGroup("sign_flip", 2, {"source": "own"}), AttackGroup("multi_label_flip", 2)]
    fed = build_federation(train, 8, seed=0, groups=groups, partition_name="iid")
    model = build_model("mlp", 10, train.input_shape, seed=0)
    config = FederationConfig(rounds=4, local=LocalTraining(lr=0.1, batch_size=60, steps=2), seed=0)
    sim, history, _ = run_federation(model, fed, config, test, MudHoG(warmup_rounds=1, confirm_rounds=1))
    flippers = sorted(c for c, r in fed.roles.items() if r == "sign_flip")
    flags = history.rounds[-1].info["flags"]
    assert sorted(c for c, label in flags.items() if label == "sign_flip") == flippers
    assert all(w == 0 for c, w in history.rounds[-1].weights.items() if c in flippers)
    summary = summarize(sim, history, test, fed.attacks)
    assert summary["sign_flip_recall"] == 1.0 and summary["sign_flip_precision"] == 1.0
    assert 0.0 <= summary["asr_multi_label_flip"] <= 1.0 and 0.0 <= summary["final_accuracy"] <= 1.0
    assert set(history.roles.values()) == {"honest", "sign_flip", "multi_label_flip"}


def test_any_int_seed_is_accepted_and_reduced_for_kmeans() -> None:
    """Harness seeds are 64-bit; scikit-learn takes < 2**32. Same flags as the reduced seed."""
    big, small = MudHoG(seed=2**40 + 7), MudHoG(seed=7)
    for _, x in synthetic_rounds(seed=0):
        ids = list(range(x.shape[0]))
        a, b = big(x, torch.ones(len(ids)), ids), small(x, torch.ones(len(ids)), ids)
    assert a.info["flags"] == b.info["flags"] and torch.equal(a.weights, b.weights)
    with pytest.raises(ValueError, match="seed must be an int"):
        MudHoG(seed=1.5)  # type: ignore[arg-type]


def test_unreliable_step_leaves_out_this_rounds_sign_flip_suspects() -> None:
    # Issue 13, defect 4: a flipper suspected but not yet confirmed (cosine ≈ −1) used to sit in the
    # unreliable step, so the largest cosine gap fell below every unreliable client and flagged the flipper.
    g = torch.Generator().manual_seed(0)
    d = 200
    base = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    honest = base + 0.02 * torch.randn(10, d, generator=g)
    unreliable = base + 0.12 * torch.randn(1, d, generator=g)  # cosine ≈ 0.5 to the median
    flipper = -(base + 0.02 * torch.randn(1, d, generator=g))
    rule = MudHoG(warmup_rounds=0, dbscan_eps=50.0)  # one DBSCAN cluster: isolate the unreliable step
    out = rule(torch.cat([honest, unreliable, flipper]), client_ids=list(range(12)))
    assert out.info["suspects"]["sign_flip"] == [11]
    assert out.info["flags"] == {}  # nothing confirmed after one round
    assert out.info["suspects"]["unreliable"] == [10]


HARDEST_MIX = ["honest"] * 17 + ["sign_flip"] * 5 + ["additive_noise"] * 6 + ["targeted"] * 8 + ["unreliable"] * 4


@pytest.mark.parametrize("seed", [0, 1])
def test_gap_test_keeps_the_hardest_mix_fully_detected(seed: int) -> None:
    """sExp4's proportions (40 clients, 19 = 47.5 % malicious, 4 unreliable): every attacker is still
    confirmed with its type and excluded, no honest client is, with the gap test on."""
    agg = MudHoG()
    for roles, x in synthetic_rounds(rounds=12, seed=seed, layout=HARDEST_MIX):
        res = agg(x, torch.ones(len(roles)), list(range(len(roles))))
    flags = res.info["flags"]
    for i, role in enumerate(roles):
        if role != "unreliable":
            assert flags.get(i, "honest") == role, (i, role, flags.get(i))
    excluded = set(res.info["excluded"])
    assert excluded == {i for i, role in enumerate(roles) if role in ("sign_flip", "additive_noise", "targeted")}


def test_gap_prefers_two_only_for_separated_groups() -> None:
    rng = np.random.default_rng(0)
    one = rng.normal(size=(30, 5))
    two = np.concatenate([one[:20], one[20:] + 8.0])
    split = _largest_gap_labels
    assert not gap_prefers_two(one[:, :1], split, 20, np.random.default_rng(1))
    assert gap_prefers_two(two[:, :1], split, 20, np.random.default_rng(1))
    assert not gap_prefers_two(one[:2], split, 20, np.random.default_rng(1))  # < 3 points: never split


def peacetime_exclusion_rate(**kwargs: object) -> float:
    """Share of client-rounds MUD-HoG gives weight 0 in an attack-free digits federation (10 IID clients)."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test").subset(torch.arange(100))
    fed = build_federation(train, 10, seed=0, partition_name="iid")
    model = build_model("mlp", 10, train.input_shape, seed=0)
    config = FederationConfig(rounds=10, local=LocalTraining(lr=0.1, batch_size=16), seed=0)
    _, history, _ = run_federation(model, fed, config, test, MudHoG(**kwargs))  # type: ignore[arg-type]
    return sum(len(r.info["excluded"]) for r in history.rounds) / (10 * 10)


def test_no_attacker_means_no_honest_client_excluded() -> None:
    """Issue 13, defect 5: KMeans (k = 2) always returns a minority and the largest-gap rule always
    splits; without the gap test a quarter of honest client-rounds got weight 0 with nobody attacking."""
    assert peacetime_exclusion_rate(gap_references=None) > 0.05  # the authors' rule: 26 % here
    assert peacetime_exclusion_rate() <= 0.05


def test_peacetime_table_counts_weight_zero_and_halved_honest_client_rounds() -> None:
    """``bench_mud_hog_peacetime.exclusion_rates``: weight 0 (or rejected) is excluded, a confirmed
    unreliable client with weight > 0 is halved; only honest clients count, warm-up rounds only in 'all'."""
    from fedarena.benchmarks.reproductions.robustness.bench_mud_hog_peacetime import exclusion_rates

    def record(r: int, weights: dict[int, float], flags: dict[int, str], rejected: dict[int, str] | None = None,
               stage: str = "detect") -> RoundRecord:
        return RoundRecord(r, [0, 1, 2, 3], None, None, rejected or {}, weights, True, 0.0,
                           {"stage": stage, "flags": flags})

    history = History(roles={0: "honest", 1: "honest", 2: "honest", 3: "sign_flip"})
    history.rounds = [record(0, {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}, {}, stage="warmup"),
                      record(1, {0: 0.0, 1: 0.5, 2: 0.5, 3: 0.0}, {}),
                      record(2, {0: 0.4, 1: 0.2, 3: 0.4}, {1: "unreliable"}, rejected={2: "non-finite"})]
    rates = exclusion_rates(history, warmup=1)
    assert rates["excluded"] == pytest.approx(2 / 9)  # client 0 in round 1, client 2 (rejected) in round 2
    assert rates["excluded_detection"] == pytest.approx(2 / 6)
    assert rates["halved"] == pytest.approx(1 / 9)
