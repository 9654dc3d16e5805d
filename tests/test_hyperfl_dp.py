"""HyperFL composed with DP-SGD on the client (issue #17, "Composition"): per-sample clipping
through the hypernetwork chain, the noise, the accounting of both phases, and the privacy
task's block (the attacker observes the noisy hypernetwork update)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedarena.attacks.inversion import InvertingGradients
from fedarena.benchmarks.harness.tasks.privacy import attacked_uploads
from fedarena.benchmarks.metrics.privacy import score_privacy
from fedarena.defenses.privacy import DPSGD, defense_epsilon
from fedarena.defenses.privacy.accounting import epsilon_from_history
from fedarena.defenses.protocols import HyperFL, PrivateHyperFLRound, build_hyperfl_net
from fedarena.defenses.protocols.hyperfl_dp import _head_phase, _hypernetwork_gradients, _NoisySum, clip_factors
from fedarena.defenses.registry import ClientDefense
from fedarena.fl_core import Client, FederationConfig, LocalTraining, Simulation, ThreatModel, make_observation
from fedarena.fl_core.client import GlobalState
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model
from fedarena.fl_core.vectors import ParameterLayout, buffers_to_vector, model_to_vector

from .helpers import synthetic_images

LOCAL = LocalTraining(lr=0.02, epochs=2, batch_size=10, momentum=0.5, weight_decay=5e-4)
FEDSGD = LocalTraining(algorithm="fedsgd", lr=0.02, batch_size=10)
# σ = 0 runs: Opacus' RDP analysis warns that ε is infinite at its smallest order (as it is)
pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the smallest alpha")


def _net(seed: int = 0):
    return build_hyperfl_net(build_model("mlp", 4, (1, 8, 8), hidden=(16,), seed=0), head="fc2", hidden_dim=8,
                             seed=seed)


def _state(net) -> GlobalState:
    return GlobalState(model_to_vector(net), buffers_to_vector(net))


def _round(dp: DPSGD, training: LocalTraining, n: int = 30, seed: int = 0, protocol: HyperFL | None = None):
    protocol = protocol or HyperFL()
    net = _net()
    protocol.shared_layout(net)
    round_ = protocol.local_trainer(dp)
    return round_(net, _state(net), 0, synthetic_images(n=n, seed=1), training, torch.Generator().manual_seed(seed))


def _per_sample_autograd(net, x, y, params):
    """Each sample's gradient w.r.t. ``params`` by its own backward pass (the brute force)."""
    return [torch.autograd.grad(F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]), params) for i in range(len(y))]


@pytest.mark.parametrize("with_head", [False, True])
def test_clipped_sum_through_the_hypernetwork_is_per_sample_autograds(with_head: bool) -> None:
    """The chain-rule per-sample norms and the rank-one clipped sums equal per-sample autograd
    through the whole HyperFLNet, with C at the median norm so that clipping binds (in
    float64, so that the two computations' rounding stays far below the tolerance)."""
    net = _net().double()
    data = synthetic_images(n=6, seed=2)
    x, y = data.normalized().double(), data.labels
    params = [*net.hypernetwork.parameters(), net.embedding, *(net.head_parameters() if with_head else [])]
    per = _per_sample_autograd(net, x, y, params)
    norms = torch.stack([torch.sqrt(sum(g.square().sum() for g in gs)) for gs in per])
    bound = float(norms.median())
    c = clip_factors(norms, bound)
    assert (c < 1).any() and (c == 1).any()
    want = [sum(c[i] * per[i][k] for i in range(len(y))) for k in range(len(params))]
    _hypernetwork_gradients(net, x, y, F.cross_entropy, _NoisySum(bound, 0.0, 1, torch.Generator()), with_head)
    for p, w in zip(params, want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-9, atol=1e-12)
    others = [p for p in net.head_parameters()] if not with_head else []
    assert all(p.grad is None for p in others)  # the head phase's parameters are not touched here


def test_head_phase_step_is_the_clipped_noisy_mean_of_per_sample_head_gradients() -> None:
    net = _net().double()
    data = synthetic_images(n=5, seed=3)
    x, y = data.normalized().double(), data.labels
    head = net.head_parameters()
    per = _per_sample_autograd(net, x, y, head)
    c = clip_factors(torch.stack([torch.sqrt(sum(g.square().sum() for g in gs)) for gs in per]), 0.05)
    assert (c < 1).all()
    before = [p.detach().clone() for p in head]
    plain = LocalTraining(lr=1.0, momentum=0.0, weight_decay=0.0)
    _head_phase(net, x, y, F.cross_entropy, _NoisySum(0.05, 0.0, 4, torch.Generator()), iter([torch.arange(5)]),
                1, plain)
    for k, (p, b) in enumerate(zip(head, before, strict=True)):
        torch.testing.assert_close(b - p.detach(), sum(c[i] * per[i][k] for i in range(5)) / 4, rtol=1e-9,
                                   atol=1e-12)


@pytest.mark.parametrize("training", [LOCAL, FEDSGD], ids=["fedavg", "fedsgd"])
def test_without_noise_and_clipping_on_a_full_batch_the_private_round_is_hyperfls(training) -> None:
    """σ = 0, C huge, batch = the client's 10 records (q = 1: Poisson takes every record, the
    expected batch is 10): each DP-SGD step is the honest step on the full batch, so the
    private round reproduces HyperFL's own round (up to summation order)."""
    training = training.__class__(**{**training.__dict__, "batch_size": 10})
    protocol = HyperFL()
    net = _net()
    protocol.shared_layout(net)
    data, gen = synthetic_images(n=10, seed=1), torch.Generator().manual_seed(0)
    honest, honest_private = protocol.local_trainer(protocol.trainer)(net, _state(net), 0, data, training, gen)
    net2 = _net()
    dp_update, dp_private = PrivateHyperFLRound(protocol, DPSGD(noise_multiplier=0.0, max_grad_norm=1e6))(
        net2, _state(net2), 0, data, training, torch.Generator().manual_seed(0))
    assert dp_update.kind == honest.kind
    torch.testing.assert_close(dp_update.vector, honest.vector, rtol=1e-4, atol=1e-6)
    assert dp_update.vector.abs().max() > 1e-3  # the round moved the model
    assert sorted(dp_private.labels.tolist()) == sorted(honest_private.labels.tolist())


def test_noise_has_std_sigma_c_over_the_expected_batch_and_is_seeded() -> None:
    """FedSGD, same seeds: σ = 2 minus σ = 0 is the noise alone (the Poisson batch is drawn
    from its own stream), N(0, (σC/B)²) per coordinate with B = int(n·q) = 10."""
    quiet, _ = _round(DPSGD(noise_multiplier=0.0, max_grad_norm=0.5), FEDSGD)
    noisy, private = _round(DPSGD(noise_multiplier=2.0, max_grad_norm=0.5), FEDSGD)
    again, _ = _round(DPSGD(noise_multiplier=2.0, max_grad_norm=0.5), FEDSGD)
    assert torch.equal(noisy.vector, again.vector)
    noise = noisy.vector - quiet.vector
    assert noise.numel() > 5000
    assert float(noise.std()) == pytest.approx(2.0 * 0.5 / 10, rel=0.05)
    assert abs(float(noise.mean())) < 0.1 * 0.1
    assert noisy.num_samples == 10 and 0 < len(private.labels) <= 30
    other, _ = _round(DPSGD(noise_multiplier=2.0, max_grad_norm=0.5), FEDSGD, seed=1)
    assert not torch.equal(other.vector, noisy.vector)


def test_both_phases_are_accounted_per_client_and_the_metadata_has_no_loss() -> None:
    dp = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0)
    seen = []
    clients = [Client(i, synthetic_images(n=30, seed=i)) for i in range(3)]
    net = _net()
    cfg = FederationConfig(rounds=2, seed=3, local=LOCAL)
    Simulation(net, clients, cfg, protocol=HyperFL(head_epochs=2), trainer=dp, progress=False,
               observers=[seen.append]).run()
    q, per_round = 1 / 3, 2 * 3 + 2 * 3  # head: 2 epochs × ⌊1/q⌋, hypernetwork: 2 epochs × ⌊1/q⌋
    for cid in range(3):
        assert dp.history(cid) == [(1.0, q, 2 * per_round)]
    assert dp.epsilon() == pytest.approx(epsilon_from_history([(1.0, q, 2 * per_round)], 1e-5))
    assert defense_epsilon(ClientDefense(trainer=dp)) == dp.epsilon() > 0
    shared = ParameterLayout.of(net.hypernetwork).dim
    for event in seen:
        assert event.update.vector.numel() == shared  # only the hypernetwork leaves, noised
        assert "loss" not in event.update.metadata and event.update.metadata["dp"] == "dp_sgd"
    assert seen[-1].update.metadata["epsilon"] == pytest.approx(dp.client_epsilon(seen[-1].update.client_id))


def test_target_epsilon_is_planned_over_hyperfls_round() -> None:
    dp = DPSGD(target_epsilon=4.0, planned_rounds=2, max_grad_norm=1.0)
    clients = [Client(0, synthetic_images(n=30, seed=0))]
    Simulation(_net(), clients, FederationConfig(rounds=2, seed=3, local=LOCAL), protocol=HyperFL(), trainer=dp,
               progress=False).run()
    assert dp.history(0)[0][2] == 2 * (3 + 6)  # 1 head epoch + 2 hypernetwork epochs of 3 steps, twice
    assert dp.epsilon() == pytest.approx(4.0, abs=0.05)


def test_the_private_state_is_trained_by_the_noisy_steps() -> None:
    """The embedding and head move in a private round (they are privatised, not frozen), and
    with more noise they move differently: their updates come through the noisy gradients."""
    protocol = HyperFL()
    runs = []
    for sigma in (0.0, 5.0):
        net = _net()
        protocol.shared_layout(net)
        start = [net.embedding.detach().clone(), *(p.detach().clone() for p in net.head_parameters())]
        PrivateHyperFLRound(protocol, DPSGD(noise_multiplier=sigma, max_grad_norm=1.0))(
            net, _state(net), 0, synthetic_images(n=30, seed=1), LOCAL, torch.Generator().manual_seed(0))
        runs.append([a - b for a, b in zip([net.embedding, *net.head_parameters()], start, strict=True)])
    for moved in runs:
        assert all(float(d.detach().abs().max()) > 0 for d in moved)
    assert all(not torch.allclose(a, b) for a, b in zip(*runs, strict=True))


def test_the_privacy_block_observes_the_noisy_upload_and_the_attack_runs() -> None:
    """The privacy task's federation under hyperfl + dp_sgd: the observation is the noisy
    hypernetwork gradient with the embedding and head named as unknowns; IG with them
    granted runs on it, and the noise drowns the image it recovers without DP."""
    data = load_dataset("digits", "train").subset(range(0, 1))
    cfg = FederationConfig(rounds=1, local=LocalTraining(algorithm="fedsgd", lr=0.02, batch_size=1))
    scores = {}
    for sigma in (0.0, 1.0):
        protocol = HyperFL(embedding_dim=8, hidden_dim=16)
        net = protocol.server_model(build_model("mlp", data.num_classes, data.input_shape, hidden=(16,), seed=0), 0)
        dp = DPSGD(noise_multiplier=sigma, max_grad_norm=1e3 if sigma == 0 else 1e-2)
        uploads = attacked_uploads(net, [Client(0, data)], cfg, ClientDefense(trainer=dp), None, 0, {0},
                                   protocol=protocol)
        ev = uploads.events[0]
        obs = make_observation(uploads.template, ev.state.params, ev.update, ev.private, ev.training,
                               ThreatModel(labels_known=True, embedding_known=True, head_known=True),
                               data.normalization, data.num_classes)
        assert obs.private_names == ("embedding", "target.fc2.weight", "target.fc2.bias")
        rec = InvertingGradients(iterations=200, tv_weight=0.0, seed=0).reconstruct(obs)
        scores[sigma] = score_privacy(rec.images, ev.private.inputs, data.normalization, rec.labels,
                                      ev.private.labels).psnr[0]
    assert scores[0.0] > 18 > 12 > scores[1.0]


def test_accountants_resume_from_their_state_dict() -> None:
    """A federation resumed from a cache carries its DP accountants (``state_dict``): ε after
    the next round is the uninterrupted run's, not a fresh client's."""
    from fedarena.benchmarks.reproductions.protocols.hyperfl_accuracy import DPSetting, Federation, build_method
    data = synthetic_images(n=60, size=28, classes=10, seed=5)
    clients = [Client(i, data.subset(torch.arange(30 * i, 30 * i + 30))) for i in range(2)]
    fed = Federation(clients, {c.client_id: c.data for c in clients}, 0, torch.device("cpu"))
    straight = build_method("local", fed, 2, DPSetting(clip=1.0, sigma=1.0))
    first = straight.round(0)
    saved = straight.state()
    resumed = build_method("local", fed, 2, DPSetting(clip=1.0, sigma=1.0))
    resumed.restore(saved)
    a, b = straight.round(1), resumed.round(1)
    assert a["epsilon"] > first["epsilon"] > 0
    assert b["epsilon"] == a["epsilon"] and b["acc"] == a["acc"]
    fresh = build_method("local", fed, 2, DPSetting(clip=1.0, sigma=1.0))
    assert fresh.round(1)["epsilon"] == pytest.approx(first["epsilon"])  # what a lost accountant would say
