"""Poisoning attacks transform updates and data exactly as defined."""

from __future__ import annotations

from statistics import NormalDist

import pytest
import torch

from fedarena import attacks  # noqa: F401  (registers every attack)
from fedarena.attacks.poisoning import (
    ALIE,
    IPM,
    AdditiveNoise,
    Backdoor,
    LabelFlip,
    MinMax,
    MinSum,
    ModelReplacement,
    MultiLabelFlip,
    SignFlip,
    alie_z,
    bisect_gamma,
)
from fedarena.attacks.registry import POISONING_ATTACKS
from fedarena.fl_core import Adversary, Client, FederationConfig, LocalTraining, Simulation
from fedarena.fl_core.simulation import RoundContext

from .helpers import synthetic_images, tiny_mlp


def context(n_honest: int = 16, m: int = 4, d: int = 50, seed: int = 0) -> RoundContext:
    g = torch.Generator().manual_seed(seed)
    honest = 0.5 + torch.randn(n_honest, d, generator=g, dtype=torch.float64)
    own = 0.5 + torch.randn(m, d, generator=g, dtype=torch.float64)
    return RoundContext(round=3, honest=honest, own=own, client_ids=list(range(100, 100 + m)),
                        num_samples=torch.ones(m), num_clients=n_honest + m, global_params=torch.zeros(d),
                        kind="delta", generator=torch.Generator().manual_seed(seed + 1))


# ------------------------------------------------------------------ model poisoning


def test_sign_flip_is_minus_scale_times_the_honest_mean_or_own_update() -> None:
    ctx = context()
    out = SignFlip(scale=3.0).craft(ctx)
    assert out.shape == ctx.own.shape
    assert torch.allclose(out, (-3.0 * ctx.honest.mean(0)).expand_as(ctx.own))
    assert torch.allclose(SignFlip(scale=2.0, source="own").craft(ctx), -2.0 * ctx.own)


def test_additive_noise_adds_seeded_gaussian_noise_of_the_given_std() -> None:
    ctx = context(d=20000, m=2)
    out = AdditiveNoise(std=0.3).craft(ctx)
    noise = out - ctx.own
    assert float(noise.std()) == pytest.approx(0.3, rel=0.03)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01)
    again = AdditiveNoise(std=0.3).craft(context(d=20000, m=2))
    assert torch.equal(out, again)  # same generator, same noise
    pure = AdditiveNoise(std=0.3, replace=True).craft(context(d=20000, m=2))
    assert torch.allclose(pure, noise)


def test_alie_z_from_n_and_f_matches_the_paper_formula() -> None:
    # Baruch et al. 2019: n = 50, f = 24 → s = 26 − 24 = 2, z = Φ⁻¹(48/50) ≈ 1.75.
    assert alie_z(50, 24) == pytest.approx(NormalDist().inv_cdf(0.96))
    assert alie_z(50, 24) == pytest.approx(1.75, abs=0.01)
    assert alie_z(20, 4) == pytest.approx(NormalDist().inv_cdf((20 - 7) / 20))
    with pytest.raises(ValueError, match="majority"):
        alie_z(10, 6)


def test_alie_z_rules_paper_default_and_the_ports_honest_quantile() -> None:
    # n = 20, f = 4: s = 7; paper Φ⁻¹(13/20) = 0.385, ports Φ⁻¹(9/16) = 0.157 (issue 13).
    assert alie_z(20, 4) == pytest.approx(0.3853, abs=1e-4)
    assert alie_z(20, 4, "paper") == alie_z(20, 4)
    assert alie_z(20, 4, "honest") == pytest.approx(0.1573, abs=1e-4)
    assert alie_z(20, 4, "honest") == pytest.approx(NormalDist().inv_cdf((20 - 4 - 7) / (20 - 4)))
    with pytest.raises(ValueError, match="z_rule"):
        alie_z(20, 4, "ports")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="z_rule"):
        ALIE(z_rule="mean")  # type: ignore[arg-type]
    ctx = context(n_honest=16, m=4, d=300)
    for rule, z in (("paper", 0.3853), ("honest", 0.1573)):
        attack = ALIE(z_rule=rule)  # type: ignore[arg-type]
        expected = ctx.honest.mean(0) - alie_z(20, 4, rule) * ctx.honest.std(0)  # type: ignore[arg-type]
        assert torch.allclose(attack.craft(ctx), expected.expand_as(ctx.own))
        assert attack.z_rule == rule and attack.describe().startswith(f"z_rule = {rule}")
        assert alie_z(20, 4, rule) == pytest.approx(z, abs=1e-4)  # type: ignore[arg-type]
    assert ALIE().describe().startswith("z_rule = paper")
    assert ALIE(z=1.5).describe() == "z = 1.5 (given)"
    assert not torch.allclose(ALIE().craft(ctx), ALIE(z_rule="honest").craft(ctx))


def test_alie_is_mean_minus_z_std_and_stays_within_the_honest_coordinate_range() -> None:
    ctx = context(n_honest=40, m=10, d=500)
    out = ALIE().craft(ctx)
    z = alie_z(50, 10)
    expected = ctx.honest.mean(0) - z * ctx.honest.std(0)
    assert torch.allclose(out, expected.expand_as(ctx.own))
    lo, hi = ctx.honest.min(0).values, ctx.honest.max(0).values
    assert bool(((out >= lo) & (out <= hi)).all())
    assert torch.allclose(ALIE(z=0.0).craft(ctx)[0], ctx.honest.mean(0))
    own_only = ALIE(z=1.0, knowledge="own").craft(ctx)[0]
    assert torch.allclose(own_only, ctx.own.mean(0) - ctx.own.std(0))


def test_ipm_is_minus_epsilon_times_the_honest_mean() -> None:
    ctx = context()
    assert torch.allclose(IPM(epsilon=0.5).craft(ctx), (-0.5 * ctx.honest.mean(0)).expand_as(ctx.own))
    both = torch.cat([ctx.honest, ctx.own]).mean(0)
    assert torch.allclose(IPM(epsilon=2.0, knowledge="all").craft(ctx)[0], -2.0 * both)


def test_bisect_gamma_finds_the_threshold_within_tolerance() -> None:
    assert bisect_gamma(lambda g: g <= 3.7) == pytest.approx(3.7, abs=2e-5)  # the search stops within ~2·tol
    assert bisect_gamma(lambda g: g <= 0.001) == pytest.approx(0.001, abs=2e-5)
    assert bisect_gamma(lambda g: False) == 0.0
    assert bisect_gamma(lambda g: True) == pytest.approx(20.0, abs=1e-4)  # the search's ceiling: 2·γ_init


@pytest.mark.parametrize("deviation", ["unit_vec", "std", "sign"])
def test_min_max_keeps_its_maximum_distance_within_the_honest_maximum(deviation: str) -> None:
    ctx = context()
    attack = MinMax(deviation=deviation)
    out = attack.craft(ctx)
    assert torch.allclose(out, out[0].expand_as(out))  # colluding: one vector for all
    honest_max = torch.cdist(ctx.honest, ctx.honest).max()
    assert torch.cdist(out[:1], ctx.honest).max() <= honest_max + 1e-9
    gamma = attack.last_gamma
    assert gamma is not None and gamma > 0
    # γ is (nearly) the largest that passes: a little more breaks the bound.
    mu = ctx.honest.mean(0)
    p = out[0] - mu
    bigger = mu + p * (gamma + 1e-3) / gamma
    assert torch.cdist(bigger[None], ctx.honest).max() > honest_max


@pytest.mark.parametrize("deviation", ["unit_vec", "std"])
def test_min_sum_bounds_its_distance_sum_by_the_smallest_benign_sum_as_the_authors_code(deviation: str) -> None:
    # Issue 13, defect 1: the NDSS21 code bounds by min(scores), the smallest benign sum; Eq. 8's max is an option.
    ctx = context()
    d2 = torch.cdist(ctx.honest, ctx.honest) ** 2
    mu = ctx.honest.mean(0)
    gammas = {}
    for bound_kind, bound in (("min", d2.sum(1).min()), ("max", d2.sum(1).max())):
        attack = MinSum(deviation=deviation) if bound_kind == "min" else MinSum(deviation=deviation, bound="max")
        out = attack.craft(ctx)
        gamma = attack.last_gamma
        assert gamma is not None and gamma > 0
        assert (torch.cdist(out[:1], ctx.honest) ** 2).sum() <= bound + 1e-9
        bigger = mu + (out[0] - mu) * (gamma + 1e-3) / gamma
        assert (torch.cdist(bigger[None], ctx.honest) ** 2).sum() > bound  # γ is (nearly) the largest passing
        gammas[bound_kind] = gamma
    assert gammas["min"] < gammas["max"]
    if deviation == "std":
        assert torch.allclose(out[0], mu - gammas["max"] * ctx.honest.std(0))
    with pytest.raises(ValueError, match="bound"):
        MinSum(bound="median")


def test_model_replacement_scales_own_update_by_n_over_eta() -> None:
    ctx = context(n_honest=6, m=2)
    assert torch.allclose(ModelReplacement().craft(ctx), 8.0 * ctx.own)
    assert torch.allclose(ModelReplacement(server_lr=2.0).craft(ctx), 4.0 * ctx.own)
    assert torch.allclose(ModelReplacement(scale=5.0).craft(ctx), 5.0 * ctx.own)


def test_omniscient_attacks_fall_back_to_own_updates_without_honest_ones() -> None:
    ctx = context()
    ctx.honest = ctx.honest[:0]
    assert torch.allclose(IPM(epsilon=1.0).craft(ctx)[0], -ctx.own.mean(0))


# ------------------------------------------------------------------ data poisoning


def test_label_flip_changes_only_source_labels_and_never_the_input() -> None:
    data = synthetic_images(n=40, classes=4)
    before = data.labels.clone()
    out = LabelFlip(pairs={1: 3}).poison(data, torch.Generator().manual_seed(0))
    assert torch.equal(data.labels, before)  # input untouched
    assert torch.equal(out.images, data.images)
    assert torch.equal(out.labels[before == 1], torch.full_like(before[before == 1], 3))
    assert torch.equal(out.labels[before != 1], before[before != 1])
    half = LabelFlip(pairs=[[1, 3], [2, 0]], fraction=0.5).poison(data, torch.Generator().manual_seed(0))
    assert int((half.labels != before).sum()) == 10  # half of the 20 samples of classes 1 and 2
    with pytest.raises(ValueError, match="do not exist"):
        LabelFlip(pairs={1: 9}).poison(data, torch.Generator())
    with pytest.raises(ValueError, match="flips nothing"):
        LabelFlip(pairs={2: 2})


def test_multi_label_flip_maps_several_sources_to_one_target() -> None:
    data = synthetic_images(n=40, classes=10)
    out = MultiLabelFlip(sources=[1, 2, 3], target=7).poison(data, torch.Generator())
    src = torch.isin(data.labels, torch.tensor([1, 2, 3]))
    assert torch.all(out.labels[src] == 7) and torch.equal(out.labels[~src], data.labels[~src])
    assert MultiLabelFlip().targets == {1: 7, 2: 7, 3: 7}


def test_backdoor_stamps_the_trigger_and_relabels_the_poisoned_fraction() -> None:
    data = synthetic_images(n=40, size=8, classes=4)
    attack = Backdoor(target=2, fraction=0.25, pattern="checkerboard", size=3, margin=1)
    out = attack.poison(data, torch.Generator().manual_seed(3))
    changed = (out.images != data.images).flatten(1).any(1) | (out.labels != data.labels)
    mask = attack.trigger_mask(8, 8)
    assert int(mask.sum()) == 5 and mask[4, 4] and not mask[4, 5] and not mask[7, 7]  # 3x3 checker at (4..6)
    poisoned = torch.tensor([bool(torch.all(out.images[i][..., mask] == 1.0)) and int(out.labels[i]) == 2
                             for i in range(40)])
    assert int(poisoned.sum()) == 10 and torch.equal(changed, changed & poisoned)
    assert torch.equal(out.images[~poisoned], data.images[~poisoned])
    stamped = attack.apply_trigger(data.images[:3])
    assert torch.all(stamped[..., mask] == 1.0) and torch.equal(stamped[..., ~mask], data.images[:3][..., ~mask])
    with pytest.raises(ValueError, match="does not fit"):
        Backdoor(size=8).trigger_mask(8, 8)


# ------------------------------------------------------------------ registry and simulation


def test_every_registered_attack_builds_with_defaults_and_has_one_hook() -> None:
    wanted = {"sign_flip", "additive_noise", "alie", "ipm", "min_max", "min_sum", "label_flip",
              "multi_label_flip", "backdoor", "model_replacement"}
    assert wanted <= set(POISONING_ATTACKS.names())
    for name in POISONING_ATTACKS.names():
        attack = POISONING_ATTACKS.build(name)
        assert callable(getattr(attack, "poison", None)) or callable(getattr(attack, "craft", None)), name


def test_colluding_ipm_group_runs_in_a_simulation() -> None:
    data = synthetic_images(n=60, classes=4)
    clients = [Client(i, data.subset(torch.arange(i * 10, i * 10 + 10)), "ipm" if i < 2 else "honest")
               for i in range(6)]
    seen = []

    def observer(event) -> None:
        seen.append((event.role, event.update.vector))

    sim = Simulation(tiny_mlp(), clients, FederationConfig(rounds=1, local=LocalTraining(lr=0.1), seed=0),
                     adversaries=[Adversary([0, 1], update_attack=IPM(epsilon=0.5), name="ipm")],
                     observers=[observer], progress=False)
    sim.run()
    honest = torch.stack([v for role, v in seen if role == "honest"])
    for role, v in seen:
        if role == "ipm":
            assert torch.allclose(v, -0.5 * honest.mean(0), atol=1e-6)
    assert sim.history.roles[0] == "ipm"


# ------------------------------------------------------------------ attack success rate
# (fedarena.benchmarks.metrics.robustness)


class _Always(torch.nn.Module):
    """Predicts one fixed class."""

    def __init__(self, cls: int, classes: int) -> None:
        super().__init__()
        self.cls, self.classes = cls, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((x.shape[0],), self.cls), self.classes).float()


class _TriggerDetector(torch.nn.Module):
    """Predicts ``target`` when the bottom-right 3×3 patch (1 px margin) is bright, else class 1."""

    def __init__(self, target: int, classes: int) -> None:
        super().__init__()
        self.target, self.classes = target, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x[:, 0, -4:-1, -4:-1].flatten(1).min(1).values > 1.5  # normalised (1 − 0.5)/0.25 = 2
        cls = torch.where(bright, torch.tensor(self.target), torch.tensor(1))
        return torch.nn.functional.one_hot(cls, self.classes).float()


def test_attack_success_rates_count_exactly_the_targeted_samples() -> None:
    from fedarena.benchmarks.metrics.robustness import attack_success_rate, backdoor_asr, label_flip_asr

    data = synthetic_images(n=40, classes=4)
    assert label_flip_asr(_Always(3, 4), data, {1: 3}) == 1.0
    assert label_flip_asr(_Always(2, 4), data, {1: 3}) == 0.0
    assert label_flip_asr(_Always(3, 4), data, {1: 3, 2: 0}) == 0.5  # classes 1 and 2 are 10 samples each
    attack = Backdoor(target=2)
    assert backdoor_asr(_TriggerDetector(2, 4), data, attack) == 1.0
    assert backdoor_asr(_Always(1, 4), data, attack) == 0.0
    assert attack_success_rate(_TriggerDetector(2, 4), data, attack) == 1.0
    assert attack_success_rate(_Always(3, 4), data, LabelFlip({0: 3})) == 1.0
    assert attack_success_rate(_Always(3, 4), data, IPM()) is None
