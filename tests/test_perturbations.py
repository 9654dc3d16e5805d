"""Update perturbations: noise, clipping, pruning, quantization, and the adaptive attacker's views."""

import pytest
import torch

from fedarena.defenses import PRIVACY_DEFENSES, ClientDefense
from fedarena.defenses.privacy import (
    Clipping,
    GaussianNoise,
    LaplaceNoise,
    Pruning,
    Quantization,
    attacker_view,
    attackers_view,
    top_k_mask,
)
from fedarena.fl_core import Client, ClientUpdate, FederationConfig, LocalTraining, Simulation

from .helpers import synthetic_images, tiny_mlp


def _update(vector: torch.Tensor, cid: int = 0) -> ClientUpdate:
    return ClientUpdate(cid, vector, "gradient", 1, {"steps": 1})


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_builds_every_perturbation_and_rejects_bad_parameters():
    for name, kwargs in [("gaussian_noise", {"sigma": 0.1}), ("laplace_noise", {"scale": 0.1}),
                         ("clipping", {"max_norm": 1.0}), ("pruning", {"fraction": 0.1}),
                         ("quantization", {"bits": 4})]:
        defense = PRIVACY_DEFENSES.build(name, **kwargs)
        assert isinstance(defense, ClientDefense) and len(defense.transforms) == 1
    for name, kwargs, field in [("gaussian_noise", {"sigma": -1.0}, "sigma"), ("laplace_noise", {"scale": float("nan")},
                                "scale"), ("clipping", {"max_norm": 0.0}, "max_norm"),
                                ("pruning", {"fraction": 0.0}, "fraction"), ("pruning", {"fraction": 1.5}, "fraction"),
                                ("quantization", {"bits": 1}, "bits"), ("quantization", {"bits": 4.0}, "bits")]:
        with pytest.raises(ValueError, match=field):
            PRIVACY_DEFENSES.build(name, **kwargs)


def test_clipping_bounds_every_update_norm_and_keeps_small_ones():
    gen = _gen(0)
    scales = torch.logspace(-8, 8, 60)
    vectors = torch.randn(60, 500, generator=gen) * scales[:, None]
    clip = Clipping(1.5)
    for v in list(vectors) + [torch.zeros(500), torch.full((500,), 1e30)]:
        out = clip(_update(v), gen).vector
        assert out.norm() <= 1.5 * (1 + 1e-6)
        if torch.linalg.vector_norm(v, dtype=torch.float64) <= 1.5:  # float64: 1e30 * sqrt(500) overflows float32
            assert torch.equal(out, v)
        else:
            assert out.norm() == pytest.approx(1.5, rel=1e-6)
            unit = v.double() / torch.linalg.vector_norm(v, dtype=torch.float64)
            assert torch.allclose(out.double() / 1.5, unit, atol=1e-6)  # direction kept
    assert clip(_update(vectors[0]), gen).metadata == {"steps": 1, "clip_norm": 1.5}


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01, 0.333, 1.0])
def test_pruning_keeps_exactly_the_requested_fraction_of_largest_magnitudes(fraction):
    v = torch.randn(1001, generator=_gen(1))
    out = Pruning(fraction)(_update(v), _gen(2)).vector
    k = round(fraction * 1001)
    kept = out != 0
    assert int(kept.sum()) == k
    assert torch.equal(out[kept], v[kept])  # kept values untouched
    if k < 1001:
        assert v[kept].abs().min() >= v[~kept].abs().max()


def test_pruning_breaks_ties_deterministically_towards_lower_indices():
    v = torch.tensor([1.0, -1.0, 1.0, 0.5, -1.0, 1.0])
    out = Pruning(0.5)(_update(v), _gen(0)).vector
    assert torch.equal(out, torch.tensor([1.0, -1.0, 1.0, 0.0, 0.0, 0.0]))
    assert torch.equal(top_k_mask(torch.ones(5), 2), torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_quantization_lands_on_the_grid_and_is_unbiased(bits):
    v = torch.randn(2000, generator=_gen(3))
    q = Quantization(bits)
    levels = 2 ** (bits - 1) - 1
    step = v.abs().max() / levels
    outs = torch.stack([q(_update(v), _gen(s)).vector for s in range(200)])
    codes = outs / step
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.round().unique().numel() <= 2 ** bits - 1
    assert ((outs - v).abs() <= step * (1 + 1e-5)).all()  # one grid step at most
    bias = outs.mean(0) - v  # each draw's error has mean 0 and std <= step / 2
    assert bias.abs().max() < 5 * step / (2 * 200 ** 0.5)  # nearest rounding would leave up to step / 2
    assert bias.mean().abs() < 5 * step / (2 * (200 * 2000) ** 0.5)
    nearest = Quantization(bits, stochastic=False)(_update(v), _gen(0)).vector
    assert ((nearest - v).abs() <= step / 2 * (1 + 1e-5)).all()
    assert torch.equal(q(_update(v), _gen(7)).vector, q(_update(v), _gen(7)).vector)
    assert torch.equal(q(_update(torch.zeros(5)), _gen(0)).vector, torch.zeros(5))


def test_noise_is_seeded_and_has_the_stated_scale():
    v = torch.zeros(200_000)
    for transform, std in [(GaussianNoise(0.01), 0.01), (LaplaceNoise(0.1), 0.1 * 2 ** 0.5)]:
        a = transform(_update(v), _gen(5)).vector
        assert torch.equal(a, transform(_update(v), _gen(5)).vector)
        assert not torch.equal(a, transform(_update(v), _gen(6)).vector)
        assert torch.isfinite(a).all()
        assert a.std().item() == pytest.approx(std, rel=0.02)
        assert abs(a.mean().item()) < 5 * std / 200_000 ** 0.5
    laplace = LaplaceNoise(1.0)(_update(v), _gen(8)).vector
    assert (laplace.abs() > 3).float().mean().item() == pytest.approx(torch.exp(torch.tensor(-3.0)).item(), rel=0.1)


def test_attacker_views_replay_the_deterministic_transforms_differentiably():
    true_grad = torch.randn(300, generator=_gen(9))
    dummy = torch.randn(300, generator=_gen(10), requires_grad=True)

    pruning = Pruning(0.1)
    observed = pruning(_update(true_grad), _gen(0)).vector
    view = pruning.attacker_view(observed)
    out = view(dummy)
    assert torch.equal(out != 0, observed != 0)  # the observed mask, applied to the dummy
    out.sum().backward()
    assert torch.equal(dummy.grad, (observed != 0).float())
    dummy.grad = None

    clip = Clipping(0.5)
    clipped = clip.attacker_view(clip(_update(true_grad), _gen(0)).vector)(dummy * 100)
    assert clipped.norm().item() == pytest.approx(0.5, rel=1e-6)
    clipped.sum().backward()
    assert dummy.grad is not None and torch.isfinite(dummy.grad).all()
    dummy.grad = None

    quant = Quantization(4, stochastic=False)
    observed_q = quant(_update(true_grad), _gen(0)).vector
    replay = quant.attacker_view(observed_q)(true_grad.clone().requires_grad_())
    assert torch.allclose(replay, observed_q, atol=1e-6)  # exact for deterministic rounding
    straight = quant.attacker_view(observed_q)(dummy)
    straight.sum().backward()
    assert torch.equal(dummy.grad, torch.ones(300))  # straight-through
    dummy.grad = None

    stochastic = Quantization(4)  # unbiased rounding: the view is its expectation, clamp to ±s
    observed_s = stochastic(_update(true_grad), _gen(0)).vector
    s = observed_s.abs().max()
    expected = stochastic.attacker_view(observed_s)(dummy * 10)
    assert torch.allclose(expected, (dummy * 10).clamp(-s, s))
    mean_of_draws = torch.stack([stochastic(_update(true_grad), _gen(k)).vector for k in range(400)]).mean(0)
    assert torch.allclose(mean_of_draws, stochastic.attacker_view(observed_s)(true_grad), atol=0.05 * s.item())


def test_attacker_view_of_a_defense_composes_only_deterministic_transforms():
    v = torch.randn(100, generator=_gen(11))
    assert attacker_view(PRIVACY_DEFENSES.build("gaussian_noise", sigma=0.1), v) is None
    assert attacker_view(PRIVACY_DEFENSES.build("dp_sgd"), v) is None
    transforms = [Clipping(1.0), Pruning(0.5)]
    observed = v
    for t in transforms:
        observed = t(_update(observed), _gen(0)).vector
    composed = attackers_view(transforms, observed)
    assert torch.allclose(composed(v), observed, atol=1e-6)


def test_transforms_are_what_the_server_and_observers_see():
    data = synthetic_images(n=32)
    clients = [Client(i, data.subset(list(range(16 * i, 16 * i + 16)))) for i in range(2)]
    seen = []
    cfg = FederationConfig(rounds=1, local=LocalTraining(algorithm="fedsgd", batch_size=8), seed=0)
    defense = PRIVACY_DEFENSES.build("pruning", fraction=0.05)
    Simulation(tiny_mlp(), clients, cfg, transforms=defense.transforms, observers=[seen.append], progress=False).run()
    d = seen[0].update.vector.numel()
    assert len(seen) == 2
    assert all(int((e.update.vector != 0).sum()) == round(0.05 * d) for e in seen)
    assert all(e.update.metadata["pruning_kept"] == round(0.05 * d) for e in seen)


TRANSFORMS = [GaussianNoise(0.3), LaplaceNoise(0.2), Clipping(1.0), Pruning(0.3), Quantization(4),
              Quantization(4, stochastic=False)]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: repr(t))
def test_transforms_create_nothing_on_the_default_device(transform):
    """Under a ``meta`` default device, a tensor the transform made without naming a device
    would be a meta tensor and break the result; the CPU update must come out bit-identical.
    (Stands in for a CUDA update, which no test machine here has.)"""
    v = torch.randn(300, generator=_gen(1)) * 3
    expected = transform(_update(v), _gen(2)).vector
    view = attackers_view([transform], expected)
    with torch.device("meta"):
        out = transform(_update(v), _gen(2)).vector
        replay = None if view is None else attackers_view([transform], out)(v)
    assert out.device.type == "cpu" and torch.equal(out, expected)
    if view is not None:
        assert replay.device.type == "cpu" and torch.equal(replay, view(v))
