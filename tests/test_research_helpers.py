"""The three things a researcher does by hand (issue #18): an ``Observation`` from their
own model, update and images; an omniscient poisoning attack on a plain ``[n, d]``
stack; a privacy defense on their own update. Each is checked against the path the
harness takes (``make_observation``, ``RoundContext``, ``Simulation``'s transforms)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedarena import (
    attacks,  # noqa: F401  (registers the attacks)
    defenses,  # noqa: F401  (registers the defenses)
)
from fedarena.attacks.poisoning import ALIE, IPM, AdditiveNoise, MinMax, MinSum, poison_stack
from fedarena.attacks.poisoning.model_poisoning import alie_z
from fedarena.attacks.registry import INVERSION_ATTACKS
from fedarena.defenses.privacy import (
    Clipping,
    apply_defense,
    clipping,
    dp_fedavg,
    dp_sgd,
    gaussian_noise,
    pruning,
    quantization,
)
from fedarena.fl_core.client import GlobalState, train_client
from fedarena.fl_core.data import ImageDataset, Normalization
from fedarena.fl_core.models import build_model
from fedarena.fl_core.observe import observe, snapshot_weights
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.simulation import RoundContext
from fedarena.fl_core.threat import ThreatModel, make_observation
from fedarena.fl_core.updates import ClientUpdate, LocalTraining
from fedarena.fl_core.vectors import model_to_vector

UNIT = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def smooth_images(n: int, seed: int = 3) -> torch.Tensor:
    coarse = torch.rand(n, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.clamp(0, 1) - b).pow(2).mean()))


# -- observe: the global weights are the ones the gradient was taken at --------------------


def trained_after_gradient():
    """A research script's state: the gradient was taken, then the optimiser stepped."""
    model = build_model("mlp", 10, (3, 8, 8), hidden=(32,), seed=0)
    model.eval()
    truth, labels = smooth_images(1), torch.tensor([2])
    start = snapshot_weights(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.zero_grad()
    F.cross_entropy(model(truth), labels).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    return model, start, grads, truth, labels


def test_observe_inverts_at_the_snapshot_not_at_the_trained_weights() -> None:
    model, start, grads, truth, labels = trained_after_gradient()
    obs = observe(model, grads, global_weights=start, images=truth, labels=labels)
    assert torch.equal(model_to_vector(obs.model), start.vector)
    assert not torch.equal(model_to_vector(model), start.vector)  # the model itself did move
    dlg = INVERSION_ATTACKS.build("dlg", iterations=15, restarts=2)
    good = psnr(dlg.reconstruct(obs).images, truth)
    # what a hand-made observation of the trained model gives: the failure observe prevents
    wrong = observe(model, grads, global_weights=model_to_vector(model), images=truth, labels=labels)
    bad = psnr(dlg.reconstruct(wrong).images, truth)
    assert good > 25 and bad < 15, (good, bad)


def test_observe_refuses_a_model_or_missing_weights() -> None:
    model, start, grads, truth, labels = trained_after_gradient()
    with pytest.raises(TypeError, match="global_weights"):
        observe(model, grads, images=truth, labels=labels)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="not a model"):
        observe(model, grads, global_weights=model, images=truth, labels=labels)  # type: ignore[arg-type]
    other = build_model("mlp", 10, (3, 8, 8), hidden=(16,), seed=0)
    with pytest.raises(ValueError, match="another architecture"):
        observe(model, grads, global_weights=snapshot_weights(other), images=truth, labels=labels)
    with pytest.raises(ValueError, match="flat vector"):
        observe(model, grads, global_weights=start.vector[:-1], images=truth, labels=labels)
    with pytest.raises(ValueError, match="local_training"):
        observe(model, grads, global_weights=start, images=truth, kind="delta")
    with pytest.raises(ValueError, match="labels_known"):
        observe(model, grads, global_weights=start, images=truth, threat_model=ThreatModel(labels_known=True))
    with pytest.raises(ValueError, match="2 labels for 1 images"):
        observe(model, grads, global_weights=start, images=truth, labels=torch.tensor([1, 2]))


def test_observe_equals_the_harness_observation() -> None:
    """The same client round, once through train_client + make_observation, once by hand."""
    model = build_model("mlp", 10, (3, 8, 8), hidden=(32,), seed=1)
    images, labels = smooth_images(2, seed=5), torch.tensor([4, 7])
    training = LocalTraining(algorithm="fedavg", lr=0.1, steps=2, batch_size=2, model_mode="eval")
    threat = ThreatModel(labels_known=True)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}  # a state dict before training
    state = GlobalState(model_to_vector(model))
    data = ImageDataset("synthetic", images, labels, 10, UNIT)
    update, private = train_client(model, state, 0, data, training, torch_generator(0, "client"))
    harness = make_observation(model, state.params, update, private, training, threat, UNIT, 10)
    names = [n for n, _ in model.named_parameters()]
    by_name = dict(zip(names, update.vector.split([p.numel() for p in model.parameters()]), strict=True))
    mine = observe(model, by_name, global_weights=start, images=private.inputs, labels=private.labels,
                   threat_model=threat, local_training=training, kind="delta", normalization=UNIT)
    assert torch.equal(model_to_vector(mine.model), model_to_vector(harness.model))
    assert torch.equal(mine.update.vector, harness.update.vector) and mine.update.kind == "delta"
    assert torch.equal(mine.labels, harness.labels)
    for field in ("input_shape", "num_classes", "normalization", "local_training", "model_mode", "num_images"):
        assert getattr(mine, field) == getattr(harness, field), field


# -- poison_stack: an omniscient attack without a RoundContext -------------------------------


def stack(n: int = 10, d: int = 30, seed: int = 0) -> torch.Tensor:
    return 0.3 + torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_poison_stack_alie_is_mean_minus_z_sigma_of_the_honest_rows() -> None:
    updates, malicious = stack(), [1, 4, 7]
    out = poison_stack(ALIE(), updates, malicious)
    honest = updates[[i for i in range(10) if i not in malicious]]
    expected = honest.mean(0) - alie_z(10, 3, "paper") * honest.std(0)
    for i in range(10):
        assert torch.allclose(out[i], expected) if i in malicious else torch.equal(out[i], updates[i])
    assert torch.equal(updates, stack())  # the caller's stack is not touched


@pytest.mark.parametrize("attack", [IPM(epsilon=0.5), MinMax(), MinSum(), AdditiveNoise(std=0.1)],
                         ids=["ipm", "min_max", "min_sum", "additive_noise"])
def test_poison_stack_is_the_simulations_round_context(attack) -> None:
    updates, malicious = stack(seed=2), [0, 9]
    honest = updates[1:9]
    ctx = RoundContext(round=3, honest=honest, own=updates[malicious], client_ids=malicious,
                       num_samples=torch.ones(2), num_clients=10, global_params=torch.zeros(30, dtype=updates.dtype),
                       kind="delta", generator=torch_generator(7, "update_attack", 0, 3))
    expected = attack.craft(ctx)
    out = poison_stack(attack, updates, malicious, round=3, seed=7)
    assert torch.equal(out[malicious], expected) and torch.equal(out[1:9], honest)


def test_poison_stack_names_bad_input() -> None:
    with pytest.raises(ValueError, match="distinct row indices"):
        poison_stack(ALIE(), stack(), [3, 3])
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        poison_stack(ALIE(), stack(), [10])
    with pytest.raises(ValueError, match="nothing to craft"):
        poison_stack(ALIE(), stack(), [])
    with pytest.raises(ValueError, match=r"float \[n, d\]"):
        poison_stack(ALIE(), stack()[0], [0])


# -- apply_defense: a defense on one's own update --------------------------------------------


@pytest.mark.parametrize("defense", [gaussian_noise(sigma=0.1), clipping(max_norm=1.0), pruning(fraction=0.25),
                                     quantization(bits=4), dp_fedavg(mode="local")],
                         ids=["gaussian_noise", "clipping", "pruning", "quantization", "local_dp"])
def test_apply_defense_is_what_the_simulation_uploads(defense) -> None:
    update = torch.randn(40, generator=torch.Generator().manual_seed(1))
    upload = ClientUpdate(5, update, "delta", 1)
    for i, transform in enumerate(defense.transforms):  # fl_core.Simulation's loop, client 5, round 2
        upload = transform(upload, torch_generator(11, "transform", i, 5, 2))
    out = apply_defense(defense, update, client_id=5, round=2, seed=11)
    assert torch.equal(out, upload.vector) and not torch.equal(out, update)


def test_apply_defense_values() -> None:
    update = torch.tensor([3.0, 4.0, 0.0, -1.0])
    assert torch.allclose(apply_defense(Clipping(1.0), update).norm(), torch.tensor(1.0))
    stacked = apply_defense(gaussian_noise(sigma=1.0), torch.zeros(3, 50))
    assert not torch.equal(stacked[0], stacked[1])  # one generator per client row
    assert torch.equal(stacked[2], apply_defense(gaussian_noise(sigma=1.0), torch.zeros(50), client_id=2))
    with pytest.raises(ValueError, match="trains the client"):
        apply_defense(dp_sgd(), update)
    with pytest.raises(ValueError, match="at the server"):
        apply_defense(dp_fedavg(mode="central", num_clients=10, clients_per_round=10), update)
