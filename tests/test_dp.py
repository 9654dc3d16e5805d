"""DP-SGD (Opacus) and client-level DP: accounting, per-sample clipping, seeded noise, layout."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis.rdp import get_privacy_spent
from torch import nn

from fedarena.defenses import PRIVACY_DEFENSES, ClientDefense
from fedarena.defenses.privacy import (
    DPSGD,
    Accountant,
    Clipping,
    DPFedAvgAggregator,
    GaussianNoise,
    LocalDPNoise,
    defense_epsilon,
    defense_epsilons,
    dp_fedavg_epsilon,
    make_dp_compatible,
    prepare_model,
    steps_per_round,
)
from fedarena.defenses.privacy.accounting import replace_history
from fedarena.fl_core import (
    Client,
    ClientUpdate,
    FedAvg,
    FederationConfig,
    GlobalState,
    LocalTraining,
    Simulation,
    model_to_vector,
    train_client,
)
from fedarena.fl_core.vectors import ParameterLayout, buffers_to_vector

from .helpers import synthetic_images, tiny_cnn_bn, tiny_mlp

DELTA = 1e-5


def _linear(out: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, out))


def _state(model: nn.Module) -> GlobalState:
    return GlobalState(model_to_vector(model), buffers_to_vector(model))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _opacus_epsilon(accountant, sigma: float, q: float, steps: int, delta: float = DELTA) -> float:
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    with np.errstate(divide="ignore"):  # Opacus' PRV evaluates log(1 - q) at q = 1
        return accountant.get_epsilon(delta=delta)


# -- DP-SGD -----------------------------------------------------------------------------

def test_dp_sgd_epsilon_equals_opacus_accountant_over_rounds():
    data = synthetic_images(n=20)
    model = tiny_mlp()
    training = LocalTraining(lr=0.05, batch_size=5)  # q = 1/⌈20/5⌉ = 1/4, 4 steps per round
    trainer = DPSGD(noise_multiplier=1.3, max_grad_norm=1.0)
    updates = [trainer(model, _state(model), 7, data, training, _gen(r))[0] for r in range(2)]
    assert steps_per_round(20, training) == 4
    assert trainer.history(7) == [(1.3, 0.25, 8)]
    expected = _opacus_epsilon(RDPAccountant(), 1.3, 0.25, 8)
    assert trainer.client_epsilon(7) == pytest.approx(expected, rel=1e-12)
    assert updates[-1].metadata["epsilon"] == pytest.approx(expected, rel=1e-12)
    assert updates[0].metadata["epsilon"] < updates[1].metadata["epsilon"]  # composition over rounds
    assert "loss" not in updates[0].metadata  # an unnoised statistic of the private data never leaves
    assert trainer.client_epsilon(99) == 0.0


def test_dp_sgd_prv_accountant_and_target_epsilon():
    data = synthetic_images(n=8)
    model = tiny_mlp()
    training = LocalTraining(algorithm="fedsgd", batch_size=8)  # q = 1: one full-batch step per round
    trainer = DPSGD(None, 1.0, target_epsilon=4.0, planned_rounds=3, accountant="prv")
    for r in range(3):
        trainer(model, _state(model), 0, data, training, _gen(r))
    sigma = trainer.noise_multiplier_of(0)
    assert trainer.history(0) == [(sigma, 1.0, 3)]
    spent = trainer.client_epsilon(0)
    assert spent == pytest.approx(_opacus_epsilon(PRVAccountant(), sigma, 1.0, 3), rel=1e-9)
    assert 4.0 - 0.05 <= spent <= 4.0  # Opacus' σ search stops within 0.01 of the target
    with pytest.warns(UserWarning, match="more rounds than the 3 planned"):
        trainer(model, _state(model), 0, data, training, _gen(3))
    assert trainer.client_epsilon(0) > 4.0


@pytest.mark.parametrize("algorithm", ["fedsgd", "fedavg"])
def test_dp_sgd_clips_each_per_sample_gradient_before_averaging(algorithm):
    data = synthetic_images(n=12)
    model = _linear()
    clip, lr = 0.3, 0.1
    training = LocalTraining(algorithm=algorithm, lr=lr, steps=1, batch_size=6)  # q = 1/2, expected batch 6
    trainer = DPSGD(noise_multiplier=0.0, max_grad_norm=clip)
    update, private = trainer(model, _state(model), 0, data, training, _gen(3))
    assert len(private.labels) >= 2  # the Poisson batch of this seed (deterministic)
    per_sample = []
    for x, y in zip(private.inputs, private.labels, strict=True):
        grads = torch.autograd.grad(F.cross_entropy(model(x[None]), y[None]), list(model.parameters()))
        per_sample.append(torch.cat([g.reshape(-1) for g in grads]))
    g = torch.stack(per_sample)
    norms = g.norm(dim=1)
    assert (norms > clip).any()  # clipping bites on this data
    clipped = g * (clip / (norms + 1e-6)).clamp(max=1.0)[:, None]  # Opacus' flat clipping factor
    expected_grad = clipped.sum(0) / 6  # DP-SGD divides by the expected batch size
    expected = expected_grad if algorithm == "fedsgd" else -lr * expected_grad
    assert torch.allclose(update.vector, expected, atol=1e-6)
    assert not torch.allclose(update.vector, g.sum(0) / 6 * (1 if algorithm == "fedsgd" else -lr), atol=1e-4)


def test_dp_sgd_without_clipping_or_noise_equals_the_honest_gradient():
    """q = 1, C huge, σ = 0: DP-SGD reduces to the plain full-batch gradient, in the server's layout."""
    data = synthetic_images(n=12)
    model = tiny_mlp()
    training = LocalTraining(algorithm="fedsgd", batch_size=12)
    dp, _ = DPSGD(noise_multiplier=0.0, max_grad_norm=1e9)(model, _state(model), 0, data, training, _gen(0))
    plain, _ = train_client(model, _state(model), 0, data, training, _gen(0))
    assert dp.vector.shape == (ParameterLayout.of(model).dim,)
    assert torch.allclose(dp.vector, plain.vector, atol=1e-6)


def test_dp_sgd_same_seed_same_noise_and_noise_has_the_stated_scale():
    data = synthetic_images(n=8)
    model = _linear(out=16)  # 1040 parameters
    training = LocalTraining(algorithm="fedsgd", batch_size=8)  # q = 1, expected batch 8
    sigma, clip = 1.0, 1.0
    noisy = DPSGD(sigma, clip)
    a, _ = noisy(model, _state(model), 0, data, training, _gen(11))
    b, _ = noisy(model, _state(model), 0, data, training, _gen(11))
    c, _ = noisy(model, _state(model), 0, data, training, _gen(12))
    assert torch.equal(a.vector, b.vector)
    assert not torch.allclose(a.vector, c.vector)
    clean, _ = DPSGD(0.0, clip)(model, _state(model), 0, data, training, _gen(11))
    noise = a.vector - clean.vector
    assert noise.std().item() == pytest.approx(sigma * clip / 8, rel=0.1)
    assert abs(noise.mean().item()) < 0.02


def test_dp_sgd_federation_uses_fixed_model_and_server_stays_plain():
    data = synthetic_images(n=48)
    clients = [Client(i, data.subset(list(range(16 * i, 16 * i + 16)))) for i in range(3)]
    bn_model = tiny_cnn_bn()
    defense = PRIVACY_DEFENSES.build("dp_sgd", noise_multiplier=1.0, max_grad_norm=1.0)
    cfg = FederationConfig(rounds=1, local=LocalTraining(lr=0.1, steps=2, batch_size=8), seed=5)
    with pytest.raises(ValueError, match="make_dp_compatible"):
        Simulation(bn_model, clients, cfg, trainer=defense.trainer).run()

    fixed = prepare_model(defense, bn_model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    assert ParameterLayout.of(fixed) == ParameterLayout.of(bn_model)
    assert torch.equal(model_to_vector(fixed), model_to_vector(bn_model))

    finals, seen = [], []
    for _ in range(2):
        defense = PRIVACY_DEFENSES.build("dp_sgd", noise_multiplier=1.0, max_grad_norm=1.0)
        model = make_dp_compatible(tiny_cnn_bn())
        sim = Simulation(model, clients, cfg, trainer=defense.trainer, observers=[seen.append], progress=False)
        sim.run()
        finals.append(model_to_vector(sim.model))
        assert type(sim.model) is type(bn_model)
        assert all(not hasattr(p, "grad_sample") for p in sim.model.parameters())
        assert all(not m._forward_hooks and not m._backward_hooks for m in sim.model.modules())
        assert set(defense.trainer.client_epsilons()) == {0, 1, 2}
    assert torch.equal(finals[0], finals[1])  # same seed, same noise and sampling
    assert all(e.update.vector.shape == (ParameterLayout.of(bn_model).dim,) for e in seen)


def test_dp_sgd_trains_in_train_mode_and_allows_eval_only_where_the_modes_agree():
    """Opacus needs train mode: an eval-mode client gets the same upload when the mode changes
    nothing (GroupNorm after the fix), and a clear error when it would (active dropout)."""
    data = synthetic_images(n=8)
    model = make_dp_compatible(tiny_cnn_bn())
    uploads = {}
    for mode in ("train", "eval"):
        training = LocalTraining(algorithm="fedsgd", batch_size=8, model_mode=mode)
        uploads[mode], _ = DPSGD(1.0, 1.0)(model, _state(model), 0, data, training, _gen(3))
    assert torch.equal(uploads["train"].vector, uploads["eval"].vector)

    torch.manual_seed(0)
    with_dropout = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Dropout(0.5), nn.Linear(16, 4))
    training = LocalTraining(algorithm="fedsgd", batch_size=8, model_mode="eval")
    with pytest.raises(ValueError, match="model_mode='eval'.*dropout"):
        DPSGD(1.0, 1.0)(with_dropout, _state(with_dropout), 0, data, training, _gen(3))


def test_dp_sgd_rejects_bad_settings():
    with pytest.raises(ValueError, match="noise_multiplier"):
        DPSGD(noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="planned_rounds"):
        DPSGD(None, target_epsilon=2.0)
    with pytest.raises(ValueError, match="accountant"):
        DPSGD(1.0, accountant="moments")
    with pytest.raises(ValueError, match="max_grad_norm"):
        DPSGD(1.0, max_grad_norm=0.0)


# -- client-level DP (DP-FedAvg) ----------------------------------------------------------

def test_dp_fedavg_central_epsilon_equals_opacus_accountant():
    agg = DPFedAvgAggregator(clip_norm=1.0, noise_multiplier=1.1, expected_clients=2, num_clients=10, seed=0)
    updates = torch.randn(2, 50, generator=_gen(0))
    for _ in range(3):
        agg(updates)
    expected = _opacus_epsilon(RDPAccountant(), 1.1, 0.2, 3)
    assert agg.epsilon() == pytest.approx(expected, rel=1e-12)
    assert dp_fedavg_epsilon(1.1, 0.2, 3) == pytest.approx(expected, rel=1e-12)


def test_dp_fedavg_central_clips_adds_seeded_noise_and_divides_by_expected_clients():
    gen = _gen(1)
    updates = torch.randn(4, 20000, generator=gen) * torch.tensor([0.0001, 0.001, 1.0, 10.0])[:, None]
    clip = 0.5
    norms = updates.norm(dim=1)
    clipped_sum = (updates * (clip / norms).clamp(max=1.0)[:, None]).sum(0)

    exact = DPFedAvgAggregator(clip, 0.0, expected_clients=5, num_clients=20)(updates)
    assert torch.allclose(exact.aggregate, clipped_sum / 5, atol=1e-6)
    assert exact.info["dp_clipped"] == 2
    assert torch.allclose(exact.weights, torch.full((4,), 0.2))

    agg = DPFedAvgAggregator(clip, 2.0, expected_clients=5, num_clients=20, seed=9)
    first, second = agg(updates).aggregate, agg(updates).aggregate
    assert not torch.equal(first, second)  # fresh noise every round
    agg.reset()
    assert torch.equal(agg(updates).aggregate, first)  # same seed, same noise
    assert (first - clipped_sum / 5).std().item() == pytest.approx(2.0 * clip / 5, rel=0.05)


def test_dp_fedavg_local_bounds_norm_and_accounts_per_participation():
    transform = LocalDPNoise(clip_norm=1.0, noise_multiplier=0.8)
    out_a = transform(ClientUpdate(3, torch.full((10000,), 5.0), "delta", 10), _gen(4))
    out_b = transform(ClientUpdate(3, torch.full((10000,), 5.0), "delta", 10), _gen(4))
    assert torch.equal(out_a.vector, out_b.vector)
    signal = torch.full((10000,), 1.0 / math.sqrt(10000))  # the update clipped to norm 1
    assert (out_a.vector - signal).std().item() == pytest.approx(0.8, rel=0.05)
    assert transform.client_epsilon(3) == pytest.approx(_opacus_epsilon(RDPAccountant(), 0.8, 1.0, 2), rel=1e-12)
    assert out_b.metadata["epsilon"] == pytest.approx(transform.client_epsilon(3))
    assert transform.client_epsilon(4) == 0.0


def test_dp_fedavg_registry_and_federation():
    with pytest.raises(ValueError, match="clients_per_round and num_clients"):
        PRIVACY_DEFENSES.build("dp_fedavg", clip_norm=1.0)
    with pytest.raises(ValueError, match="mode"):
        PRIVACY_DEFENSES.build("dp_fedavg", mode="global")
    defense = PRIVACY_DEFENSES.build("dp_fedavg", clip_norm=0.1, noise_multiplier=0.5, clients_per_round=2,
                                     num_clients=4, seed=3)
    assert isinstance(defense, ClientDefense)
    assert isinstance(defense.transforms[0], Clipping)
    data = synthetic_images(n=64)
    clients = [Client(i, data.subset(list(range(16 * i, 16 * i + 16)))) for i in range(4)]
    seen = []
    cfg = FederationConfig(rounds=2, clients_per_round=2, local=LocalTraining(lr=0.1, batch_size=8), seed=2)
    sim = Simulation(tiny_mlp(), clients, cfg, aggregator=defense.aggregator, transforms=defense.transforms,
                     observers=[seen.append], progress=False)
    history = sim.run()
    assert all(e.update.vector.norm() <= 0.1 * (1 + 1e-6) for e in seen)  # the server sees clipped uploads
    assert history.rounds[-1].info["dp_epsilon"] == pytest.approx(dp_fedavg_epsilon(0.5, 0.5, 2), rel=1e-12)


# -- the Accountant interface -------------------------------------------------------------

def test_every_dp_part_is_an_accountant_and_nothing_else_is():
    central = DPFedAvgAggregator(1.0, 1.0, expected_clients=2, num_clients=4)
    for part in (DPSGD(1.0), central, LocalDPNoise(1.0, 1.0)):
        assert isinstance(part, Accountant) and part.delta == DELTA and part.adjacencies[0] == "add_remove"
    for part in (Clipping(1.0), GaussianNoise(0.1), FedAvg(), None):
        assert not isinstance(part, Accountant)


def test_dp_sgd_accountant_gives_opacus_epsilon_worst_client_and_per_client():
    data = synthetic_images(n=40)
    small, large = data.subset(list(range(16))), data.subset(list(range(16, 40)))
    model = tiny_mlp()
    training = LocalTraining(lr=0.05, batch_size=8)  # q = 1/2, 2 steps (16 samples); q = 1/3, 3 steps (24)
    trainer = DPSGD(noise_multiplier=0.9, max_grad_norm=1.0)
    assert trainer.epsilon() == 0.0 and trainer.client_epsilons() == {}
    for r, (cid, part) in enumerate([(0, small), (0, small), (1, large)]):
        trainer(model, _state(model), cid, part, training, _gen(r))
    assert trainer.history(0) == [(0.9, 0.5, 4)] and trainer.history(1) == [(0.9, 1 / 3, 3)]
    for delta in (DELTA, 1e-3):
        expected = {0: _opacus_epsilon(RDPAccountant(), 0.9, 0.5, 4, delta),
                    1: _opacus_epsilon(RDPAccountant(), 0.9, 1 / 3, 3, delta)}
        assert trainer.client_epsilons(delta) == pytest.approx(expected, rel=1e-12)
        assert trainer.epsilon(delta) == pytest.approx(max(expected.values()), rel=1e-12)
    assert trainer.epsilon() == trainer.epsilon(DELTA)
    with pytest.raises(ValueError, match="delta must be a number in"):
        trainer.epsilon(7)  # the old per-client call, epsilon(client_id), is an error, not a silent δ = 7


def test_dp_fedavg_central_accountant_gives_opacus_epsilon_and_no_per_client_values():
    agg = DPFedAvgAggregator(clip_norm=1.0, noise_multiplier=1.1, expected_clients=2, num_clients=10, seed=0)
    updates = torch.randn(2, 50, generator=_gen(0))
    for _ in range(3):
        agg(updates)
    assert agg.epsilon(1e-3) == pytest.approx(_opacus_epsilon(RDPAccountant(), 1.1, 0.2, 3, 1e-3), rel=1e-12)
    assert agg.client_epsilons() == {} and agg.client_epsilons(1e-3) == {}
    with pytest.raises(ValueError, match="delta"):
        agg.epsilon(0.0)


def test_dp_fedavg_local_accountant_gives_opacus_epsilon_worst_client_and_per_client():
    transform = LocalDPNoise(clip_norm=1.0, noise_multiplier=0.8)
    assert transform.epsilon() == 0.0
    for cid in (3, 5, 3):
        transform(ClientUpdate(cid, torch.ones(10), "delta", 10), _gen(cid))
    expected = {3: _opacus_epsilon(RDPAccountant(), 0.8, 1.0, 2, 1e-3),
                5: _opacus_epsilon(RDPAccountant(), 0.8, 1.0, 1, 1e-3)}
    assert transform.client_epsilons(1e-3) == pytest.approx(expected, rel=1e-12)
    assert transform.epsilon(1e-3) == pytest.approx(expected[3], rel=1e-12)


# The ε the duck-typed look-ups (harness ``defense_epsilon(defense, aggregator)`` and the
# privacy-utility table's ``_epsilon``) reported for these federations before the
# Accountant interface replaced them, measured at commit c2c8a0f.
OLD_EPSILONS = {"dp_sgd": 6.965341151592707, "dp_sgd_target": 2.995915138914005, "central": 8.62674276021302,
                "local": 7.249938307004483}
SMALL_FEDERATIONS = {
    "dp_sgd": ("dp_sgd", dict(noise_multiplier=1.1, max_grad_norm=1.0)),
    "dp_sgd_target": ("dp_sgd", dict(noise_multiplier=None, target_epsilon=3.0, planned_rounds=3)),
    "central": ("dp_fedavg", dict(clip_norm=0.5, noise_multiplier=0.9, clients_per_round=2, num_clients=3, seed=1)),
    "local": ("dp_fedavg", dict(clip_norm=0.5, noise_multiplier=1.2, mode="local")),
}


@pytest.mark.parametrize("key", list(SMALL_FEDERATIONS))
def test_defense_epsilon_is_the_old_value_and_the_worst_part(key):
    data = synthetic_images(n=72)
    clients = [Client(i, data.subset(list(range(s, s + n)))) for i, (s, n) in enumerate([(0, 16), (16, 24), (40, 32)])]
    name, params = SMALL_FEDERATIONS[key]
    defense = PRIVACY_DEFENSES.build(name, **params)
    cfg = FederationConfig(rounds=3, clients_per_round=2, local=LocalTraining(lr=0.1, batch_size=8), seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dp_sgd_target: a client may train in more rounds than planned
        Simulation(tiny_mlp(), clients, cfg, aggregator=defense.aggregator, trainer=defense.trainer or train_client,
                   transforms=defense.transforms, progress=False).run()
    got = defense_epsilon(defense)
    assert got == pytest.approx(OLD_EPSILONS[key], rel=1e-12)
    assert defense_epsilon(defense, DELTA) == got
    part = defense.trainer or defense.aggregator or defense.transforms[0]
    per_client = part.client_epsilons()
    assert got == (max(per_client.values()) if per_client else part.epsilon())
    if key == "central":
        assert got == pytest.approx(dp_fedavg_epsilon(0.9, 2 / 3, 3), rel=1e-12)
    assert defense_epsilon(defense, 1e-3) < got  # a larger δ buys a smaller ε
    labelled = defense_epsilons(defense)
    assert labelled["add_remove"] == got
    if key == "local":  # only local DP is un-subsampled, where replace-one is exact
        assert set(labelled) == {"add_remove", "replace"} and labelled["replace"] > 2 * got
        assert labelled["replace"] == part.epsilon(adjacency="replace")
        assert defense_epsilons(defense, 1e-3)["replace"] < labelled["replace"]
    else:
        assert set(labelled) == {"add_remove"}


def test_defense_epsilon_is_none_without_an_accountant():
    for defense in (ClientDefense(), PRIVACY_DEFENSES.build("gaussian_noise", sigma=0.1),
                    PRIVACY_DEFENSES.build("pruning", fraction=0.5), PRIVACY_DEFENSES.build("clipping", max_norm=1.0)):
        assert defense_epsilon(defense) is None
        assert defense_epsilons(defense) == {}


# -- adjacency: add/remove (sensitivity C) vs replace-one (sensitivity 2C) ------------------

def _gaussian_rdp_epsilon(sensitivity: float, sigma: float, rounds: int, delta: float) -> float:
    """ε of ``rounds`` Gaussian mechanisms (noise std σ, no subsampling) from the closed-form RDP
    α·Δ²/(2σ²) per round (Mironov 2017, Prop. 7), converted at Opacus' orders as Opacus does."""
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = [rounds * a * sensitivity ** 2 / (2 * sigma ** 2) for a in orders]
    return float(get_privacy_spent(orders=orders, rdp=rdp, delta=delta)[0])


def test_local_dp_reports_epsilon_under_add_remove_and_replace_adjacency():
    """Issue 13: σ = 1, 10 rounds, δ = 1e-5 gives 19.05 (add/remove, sensitivity C) and 48.80
    (replace, sensitivity 2C); replace is the sensitivity-2C Gaussian, i.e. the accountant at σ/2."""
    transform = LocalDPNoise(clip_norm=0.5, noise_multiplier=1.0)
    for r in range(10):
        transform(ClientUpdate(0, torch.full((20,), 3.0), "delta", 4), _gen(r))
    transform(ClientUpdate(1, torch.full((20,), 3.0), "delta", 4), _gen(99))
    add_remove, replace = transform.epsilon(), transform.epsilon(adjacency="replace")
    assert add_remove == transform.epsilon(adjacency="add_remove") == transform.client_epsilon(0)
    assert round(add_remove, 2) == 19.05 and round(replace, 2) == 48.80
    # closed form with the sensitivity itself (in units of C), not the σ/2 shortcut
    assert add_remove == pytest.approx(_gaussian_rdp_epsilon(1.0, 1.0, 10, DELTA), rel=1e-9)
    assert replace == pytest.approx(_gaussian_rdp_epsilon(2.0, 1.0, 10, DELTA), rel=1e-9)
    assert replace == pytest.approx(_opacus_epsilon(RDPAccountant(), 0.5, 1.0, 10), rel=1e-12)
    per_client = transform.client_epsilons(1e-3, adjacency="replace")
    assert per_client == pytest.approx({0: _opacus_epsilon(RDPAccountant(), 0.5, 1.0, 10, 1e-3),
                                        1: _opacus_epsilon(RDPAccountant(), 0.5, 1.0, 1, 1e-3)}, rel=1e-12)
    prv = LocalDPNoise(1.0, 1.0, accountant="prv")
    for r in range(3):
        prv(ClientUpdate(0, torch.ones(5), "delta", 4), _gen(r))
    assert prv.epsilon(adjacency="replace") == pytest.approx(_opacus_epsilon(PRVAccountant(), 0.5, 1.0, 3), rel=1e-9)
    assert prv.epsilon(adjacency="replace") > prv.epsilon()


def test_subsampled_parts_account_add_remove_only_and_say_so():
    central = DPFedAvgAggregator(1.0, 1.0, expected_clients=2, num_clients=4)
    central(torch.ones(2, 3))
    for part, name in ((DPSGD(1.0), "dp_sgd"), (central, r"dp_fedavg \(central\)")):
        assert part.adjacencies == ("add_remove",)
        assert part.epsilon(adjacency="add_remove") == part.epsilon()
        with pytest.raises(ValueError, match=rf"{name}.*'replace' adjacency is not accounted.*add/remove"):
            part.epsilon(adjacency="replace")
        with pytest.raises(ValueError, match=rf"{name}.*'replace'"):
            part.client_epsilons(adjacency="replace")
    for part in (DPSGD(1.0), central, LocalDPNoise(1.0, 1.0)):
        with pytest.raises(ValueError, match=r"adjacency must be one of \('add_remove', 'replace'\).*'swap'"):
            part.epsilon(adjacency="swap")
    assert LocalDPNoise(1.0, 1.0).adjacencies == ("add_remove", "replace")
    with pytest.raises(ValueError, match=r"un-subsampled.*sample rate 1.*\[0\.5\]"):
        replace_history([(1.0, 0.5, 3)])  # σ/2 is not replace-one under subsampling


def test_dp_fedavg_creates_nothing_on_the_default_device():
    """A CPU run under a ``meta`` default device is bit-identical: every tensor follows the updates'
    device (a stand-in for CUDA updates)."""
    updates = torch.randn(3, 40, generator=_gen(0))
    expected = DPFedAvgAggregator(0.5, 1.0, expected_clients=2, num_clients=6, seed=1)(updates)
    local = LocalDPNoise(0.5, 1.0)(ClientUpdate(0, updates[0], "delta", 4), _gen(2)).vector
    with torch.device("meta"):
        got = DPFedAvgAggregator(0.5, 1.0, expected_clients=2, num_clients=6, seed=1)(updates)
        got_local = LocalDPNoise(0.5, 1.0)(ClientUpdate(0, updates[0], "delta", 4), _gen(2)).vector
    assert torch.equal(got.aggregate, expected.aggregate) and torch.equal(got.weights, expected.weights)
    assert got.weights.device.type == "cpu" and torch.equal(got_local, local)
