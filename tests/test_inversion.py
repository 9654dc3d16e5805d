"""Gradient inversion: matching losses, the simulated client, label recovery, the attacks.

Tiny models and synthetic smooth images keep this file fast; the paper-scale numbers
live in benchmarks/reproductions/inversion/.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedarena import attacks  # noqa: F401  (registers the attacks)
from fedarena.attacks.inversion import (
    ClientSimulator,
    GradientMatcher,
    InvertingGradients,
    last_layer,
    recover_labels,
)
from fedarena.attacks.inversion.base import Assumptions
from fedarena.attacks.inversion.problem import build_problem
from fedarena.attacks.registry import INVERSION_ATTACKS
from fedarena.fl_core.client import GlobalState, train_client
from fedarena.fl_core.data import ImageDataset, Normalization
from fedarena.fl_core.models import build_model
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.threat import Observation, ThreatModel, make_observation
from fedarena.fl_core.updates import ClientUpdate, LocalTraining
from fedarena.fl_core.vectors import ParameterLayout, model_to_vector

UNIT = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
NORM = Normalization((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
NO_GRANTS = ThreatModel()


def smooth_images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Natural-looking (low-frequency) images in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 3, 3, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def client_round(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, training: LocalTraining,
                 threat: ThreatModel = NO_GRANTS, normalization: Normalization = UNIT, num_classes: int = 10):
    data = ImageDataset("synthetic", images, labels, num_classes, normalization)
    state = GlobalState(model_to_vector(model))
    update, private = train_client(model, state, 0, data, training, torch_generator(0, "client"))
    obs = make_observation(model, state.params, update, private, training, threat, normalization, num_classes)
    return obs, update, private


def lenet(size: int = 8, seed: int = 0) -> nn.Module:
    return build_model("lenet", 10, (3, size, size), seed=seed)


# -- matching losses and the simulated client ----------------------------------------------


@pytest.mark.parametrize("loss", ["l2", "cosine", "layer_cosine"])
@pytest.mark.parametrize("algorithm", ["fedsgd", "fedavg"])
def test_true_batch_gives_near_zero_matching_loss(loss: str, algorithm: str) -> None:
    model = lenet()
    images, labels = smooth_images(4), torch.tensor([1, 3, 3, 7])
    batch = 4 if algorithm == "fedsgd" else 2  # FedAvg: two local steps of two images
    training = LocalTraining(algorithm=algorithm, lr=0.1, epochs=1, batch_size=batch, model_mode="eval")
    obs, _, private = client_round(model, images, labels, training, ThreatModel(labels_known=True))
    problem = build_problem(obs, loss=loss, assumptions=Assumptions(), labels="auto",  # type: ignore[arg-type]
                            batch_label_method="bias")
    at_truth = float(problem.matching(private.inputs, private.labels, create_graph=False).detach())
    elsewhere = float(problem.matching(smooth_images(4, seed=9), private.labels, create_graph=False).detach())
    assert abs(at_truth) < 1e-5 * max(1.0, elsewhere)
    assert elsewhere > 100 * max(abs(at_truth), 1e-9)


@pytest.mark.parametrize("optimizer,momentum,wd,steps", [("sgd", 0.0, 0.0, None), ("sgd", 0.9, 1e-3, 5),
                                                          ("adam", 0.0, 1e-3, 3)])
def test_fedavg_unrolling_reproduces_the_client_delta(optimizer: str, momentum: float, wd: float,
                                                     steps: int | None) -> None:
    model = lenet()
    images, labels = smooth_images(6), torch.tensor([0, 1, 1, 2, 5, 5])
    training = LocalTraining(algorithm="fedavg", lr=0.05, epochs=1, steps=steps, batch_size=4,
                             optimizer=optimizer, momentum=momentum, weight_decay=wd,  # type: ignore[arg-type]
                             model_mode="eval")
    obs, update, private = client_round(model, images, labels, training)
    simulated = ClientSimulator(obs.model, training, "eval")(private.inputs, private.labels, create_graph=False)
    if steps is None or steps <= 2:  # one pass in first-use order: exactly the client's batches
        assert torch.allclose(simulated, update.vector, atol=1e-6, rtol=1e-4)
    else:  # later passes reshuffle on the client; the unrolled direction still agrees closely
        assert F.cosine_similarity(simulated, update.vector, dim=0) > 0.9


def test_fedavg_unrolling_with_train_mode_batchnorm_is_exact() -> None:
    model = build_model("convnet", 10, (3, 9, 9), width=2, seed=1)
    images, labels = smooth_images(4, size=9), torch.tensor([2, 2, 4, 9])
    training = LocalTraining(algorithm="fedavg", lr=0.1, epochs=1, batch_size=2, model_mode="train")
    obs, update, private = client_round(model, images, labels, training)
    simulated = ClientSimulator(obs.model, training, "train")(private.inputs, private.labels, create_graph=False)
    assert torch.allclose(simulated, update.vector, atol=1e-6, rtol=1e-4)


def test_bn_prior_and_adaptive_transform_vanish_at_the_true_batch() -> None:
    model = build_model("convnet", 10, (3, 9, 9), width=2, seed=0)
    grants = ThreatModel(labels_known=True, bn_statistics_known=True)
    obs, _, private = client_round(model, smooth_images(3, size=9), torch.tensor([0, 4, 4]),
                                   LocalTraining(algorithm="fedsgd", batch_size=3, model_mode="eval"), grants, NORM)
    keep = torch.rand(obs.update.vector.numel(), generator=torch.Generator().manual_seed(0)) < 0.3
    pruned = dataclasses.replace(obs, update=dataclasses.replace(obs.update, vector=obs.update.vector * keep))
    problem = build_problem(pruned, loss="cosine", assumptions=Assumptions(), labels="auto", batch_label_method="bias",
                            update_transform=lambda u: u * keep)
    assert problem.bn_prior is not None
    assert float(problem.bn_prior(private.inputs)) < 1e-5 < float(problem.bn_prior(smooth_images(3, size=9, seed=5)))
    assert abs(float(problem.matching(private.inputs, private.labels, create_graph=False).detach())) < 1e-5
    naive = build_problem(pruned, loss="cosine", assumptions=Assumptions(), labels="auto", batch_label_method="bias")
    assert float(naive.matching(private.inputs, private.labels, create_graph=False).detach()) > 1e-3


def test_simulated_gradient_is_differentiable_in_the_images() -> None:
    model = lenet()
    sim = ClientSimulator(model, LocalTraining(algorithm="fedsgd", batch_size=2), "eval")
    x = smooth_images(2).requires_grad_(True)
    matcher = GradientMatcher(torch.randn(ParameterLayout.of(model).dim), ParameterLayout.of(model), "cosine")
    (gx,) = torch.autograd.grad(matcher(sim(x, torch.tensor([1, 2]))), x)
    assert gx.shape == x.shape and gx.abs().sum() > 0

class _WithUnusedParameter(nn.Module):
    """A convnet (BatchNorm) with a trainable parameter its forward never reads (a head the
    task does not use): its slot of the simulated gradient must be zeros."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 8 * 8, 10))
        self.spare = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_direct_fedsgd_path_equals_the_flat_vector_path_bit_for_bit(mode: str) -> None:
    """FedSGD without private parameters differentiates the model's own parameters instead of
    views of the flat ``w0`` (a speed path, issue 16): the update, its derivative in the images
    (the attack's double-backward) and BatchNorm's running statistics are exactly those of the
    ``functional_call`` path on ``w0``."""
    training = LocalTraining(algorithm="fedsgd", batch_size=2)
    model = _WithUnusedParameter()
    direct, flat = ClientSimulator(model, training, mode), ClientSimulator(model, training, mode)
    x, y = smooth_images(2, seed=4), torch.tensor([3, 7])
    probe = torch.randn(direct.layout.dim, generator=torch.Generator().manual_seed(0))
    results = []
    for sim, run in ((direct, lambda v: direct(v, y)),
                     (flat, lambda v: flat._grad(flat.w0, v, y, create_graph=True, functional=False))):
        v = x.clone().requires_grad_(True)
        update = run(v)
        (dx,) = torch.autograd.grad(torch.dot(update, probe) + update.square().sum(), v)
        results.append((update.detach(), dx, [b.clone() for b in sim.model.buffers()]))
    (u1, dx1, buffers1), (u2, dx2, buffers2) = results
    assert torch.equal(u1, u2) and torch.equal(dx1, dx2)
    assert all(torch.equal(a, b) for a, b in zip(buffers1, buffers2, strict=True))
    spare = [n.startswith("spare.") for n in direct.layout.names]
    numels = torch.tensor(direct.layout.numels)
    in_spare = torch.repeat_interleave(torch.tensor(spare), numels)
    assert torch.equal(u1[in_spare], torch.zeros(int(in_spare.sum()))) and u1[~in_spare].abs().sum() > 0
    if mode == "train":  # the running statistics moved, in both simulators alike
        assert not torch.equal(buffers1[0], model.net[1].running_mean)



def test_cosine_loss_is_scale_invariant_and_l2_is_not() -> None:
    layout = ParameterLayout((("a", "b")), (torch.Size([3]), torch.Size([2, 2])))
    target = torch.randn(7)
    cos, l2 = GradientMatcher(target, layout, "cosine"), GradientMatcher(target, layout, "l2")
    assert float(cos(3 * target)) == pytest.approx(0.0, abs=1e-6)
    assert float(cos(-target)) == pytest.approx(2.0, abs=1e-6)
    assert float(l2(3 * target)) == pytest.approx(float(4 * target.pow(2).sum()), rel=1e-5)
    layer = GradientMatcher(target, layout, "layer_cosine")
    flipped = torch.cat([target[:3], -target[3:]])  # one layer agrees, the other is opposite
    assert float(layer(flipped)) == pytest.approx(2.0, abs=1e-5)


def test_matcher_rejects_unknown_loss_and_wrong_size() -> None:
    layout = ParameterLayout(("a",), (torch.Size([4]),))
    with pytest.raises(ValueError, match="unknown matching loss"):
        GradientMatcher(torch.ones(4), layout, "l3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flat vector"):
        GradientMatcher(torch.ones(5), layout, "l2")


# -- label recovery -------------------------------------------------------------------------


@pytest.mark.parametrize("label", [0, 4, 9])
def test_idlg_gets_the_label_right(label: int) -> None:
    model = lenet()
    obs, _, _ = client_round(model, smooth_images(1), torch.tensor([label]),
                             LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval"))
    layer = last_layer(obs.update.vector, ParameterLayout.of(obs.model), 10)
    assert recover_labels(layer, 1, "idlg").tolist() == [label]
    # Without a bias, iDLG's own rule (the weight row with the negative sum) still holds
    # for LeNet's non-negative sigmoid features.
    assert recover_labels(dataclasses.replace(layer, bias=None), 1, "idlg").tolist() == [label]


def test_batch_label_recovery_handles_repeated_labels() -> None:
    model = build_model("convnet", 10, (3, 9, 9), width=4, seed=0)
    labels = torch.tensor([3, 3, 3, 1, 7, 7, 0, 3])
    obs, _, _ = client_round(model, smooth_images(8, size=9), labels,
                             LocalTraining(algorithm="fedsgd", batch_size=8, model_mode="eval"))
    problem = build_problem(obs, loss="cosine", assumptions=Assumptions(), labels="bias", batch_label_method="bias")
    assert problem.labels.tolist() == sorted(labels.tolist())  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="one image"):
        recover_labels(last_layer(obs.update.vector, ParameterLayout.of(obs.model), 10), 8, "idlg")


def test_llg_counts_a_single_repeated_label() -> None:
    model = lenet()
    obs, _, _ = client_round(model, smooth_images(4), torch.tensor([6, 6, 6, 6]),
                             LocalTraining(algorithm="fedsgd", batch_size=4, model_mode="eval"))
    layer = last_layer(obs.update.vector, ParameterLayout.of(obs.model), 10)
    assert recover_labels(layer, 4, "llg").tolist() == [6, 6, 6, 6]


def test_last_layer_needs_a_classifier() -> None:
    layout = ParameterLayout(("w",), (torch.Size([4, 3]),))
    with pytest.raises(ValueError, match="final linear layer with 10 outputs"):
        last_layer(torch.zeros(12), layout, 10)


# -- attacks ------------------------------------------------------------------------------


def test_registry_lists_the_inversion_attacks() -> None:
    assert {"dlg", "idlg", "inverting_gradients", "inverting_gradients_fedavg"} <= set(INVERSION_ATTACKS.names())


def test_dlg_rebuilds_one_image_on_a_tiny_model() -> None:
    model = build_model("mlp", 10, (3, 8, 8), hidden=(32,), seed=0)
    truth = smooth_images(1, seed=3)
    obs, _, private = client_round(model, truth, torch.tensor([2]),
                                   LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval"))
    rec = INVERSION_ATTACKS.build("dlg", iterations=15, restarts=2).reconstruct(obs)
    mse = (rec.images.clamp(0, 1) - private.inputs).pow(2).mean()
    assert 10 * torch.log10(1 / mse) > 25
    assert rec.label_method == "idlg" and rec.labels.tolist() == [2]
    assert rec.restart_losses[rec.chosen_restart] == min(rec.restart_losses)
    assert rec.threat_model == ThreatModel().flags() and rec.loss_trace[-1] < rec.loss_trace[0]


def test_dlg_optimises_soft_labels_for_a_batch() -> None:
    model = build_model("mlp", 10, (3, 8, 8), hidden=(64,), seed=0)
    obs, _, private = client_round(model, smooth_images(2), torch.tensor([1, 5]),
                                   LocalTraining(algorithm="fedsgd", batch_size=2, model_mode="eval"))
    rec = INVERSION_ATTACKS.build("dlg", iterations=10).reconstruct(obs)
    assert rec.label_method == "optimize" and rec.images.shape == (2, 3, 8, 8)
    assert sorted(rec.labels.tolist()) == [1, 5]
    assert rec.restart_losses[0] < 0.02 * rec.loss_trace[0]  # the matching loss fell by > 50x
    mse = (rec.images.clamp(0, 1)[:, None] - private.inputs[None]).pow(2).flatten(2).mean(2)  # [rec, truth]
    best_pairing = min(mse[0, 0] + mse[1, 1], mse[0, 1] + mse[1, 0]) / 2  # images come in any order
    assert 10 * torch.log10(1 / best_pairing) > 25


def test_ig_batched_restarts_equal_sequential_ones_and_pick_by_own_loss() -> None:
    obs, _, _ = client_round(lenet(), smooth_images(2), torch.tensor([1, 8]),
                             LocalTraining(algorithm="fedsgd", batch_size=2, model_mode="eval"), normalization=NORM)
    common = dict(iterations=4, restarts=3, signed=False, lr=0.05, seed=4)
    batched = InvertingGradients(**common).reconstruct(obs)
    sequential = InvertingGradients(**common, batched_restarts="never").reconstruct(obs)
    assert any("vmap" in n for n in batched.notes) and not any("vmap" in n for n in sequential.notes)
    assert torch.allclose(batched.images, sequential.images, atol=1e-4)
    assert batched.restart_losses == pytest.approx(sequential.restart_losses, abs=1e-5)
    assert batched.chosen_restart == min(range(3), key=lambda r: batched.restart_losses[r])
    low, high = NORM.bounds(batched.images)
    assert (batched.images >= low - 1e-6).all() and (batched.images <= high + 1e-6).all()  # boxed
    assert batched.config["iterations"] == 4 and batched.config["update_mode"] == "gradient"


@pytest.mark.parametrize("mode", ["unroll", "as_gradient"])
def test_ig_inverts_fedavg_deltas_in_both_modes(mode: str) -> None:
    model = lenet()
    training = LocalTraining(algorithm="fedavg", lr=0.1, steps=2, batch_size=2, model_mode="eval")
    obs, _, _ = client_round(model, smooth_images(2), torch.tensor([3, 4]), training)
    rec = INVERSION_ATTACKS.build("inverting_gradients", iterations=20, update_mode=mode).reconstruct(obs)
    assert rec.config["update_mode"] == mode and rec.images.shape == (2, 3, 8, 8)
    assert sorted(rec.labels.tolist()) == [3, 4]
    assert rec.restart_losses[0] < 0.05 * rec.loss_trace[0]  # the matching loss fell by > 20x


def test_unknown_hyperparameters_are_assumed_and_recorded() -> None:
    model = lenet()
    training = LocalTraining(algorithm="fedavg", lr=0.1, steps=1, batch_size=2, model_mode="eval")
    obs, _, _ = client_round(model, smooth_images(2), torch.tensor([3, 4]), training,
                             ThreatModel(local_hyperparameters_known=False, model_mode_known=False))
    assumed = LocalTraining(algorithm="fedavg", lr=0.2, steps=1, batch_size=2)
    rec = INVERSION_ATTACKS.build("inverting_gradients_fedavg", iterations=2,
                                  assumed_training=assumed).reconstruct(obs)
    assert rec.assumed["training"] == assumed and rec.assumed["model_mode"] == "eval"
    assert rec.config["local_lr"] == 0.2


def test_attack_settings_and_inputs_are_validated() -> None:
    with pytest.raises(TypeError, match="unknown settings"):
        InvertingGradients(iteratons=5)
    with pytest.raises(ValueError, match="restarts"):
        InvertingGradients(restarts=0)
    model = lenet()
    obs, update, _ = client_round(model, smooth_images(1), torch.tensor([1]),
                                  LocalTraining(algorithm="fedsgd", batch_size=1))
    bad = dataclasses.replace(obs, update=ClientUpdate(0, torch.full_like(update.vector, float("nan")),
                                                       "gradient", 1))
    with pytest.raises(ValueError, match="NaN"):
        INVERSION_ATTACKS.build("dlg", iterations=1).reconstruct(bad)


# -- the observation never holds the private batch ----------------------------------------


def _tensors(obj: object, path: str = "observation", seen: set[int] | None = None):
    """Every tensor reachable from ``obj``: dataclass fields, containers, module state and attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, nn.Module):
        for name, t in obj.state_dict(keep_vars=True).items():
            yield from _tensors(t, f"{path}.{name}", seen)
        for mod_name, module in obj.named_modules():
            for attr, value in vars(module).items():
                if not attr.startswith("_"):
                    yield from _tensors(value, f"{path}.{mod_name}.{attr}", seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name), f"{path}.{f.name}", seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, list | tuple | set):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{path}[{i}]", seen)


def _holds(tensor: torch.Tensor, inputs: torch.Tensor) -> bool:
    """True if ``tensor`` shares memory with ``inputs`` or contains any private image's values."""
    t = tensor.detach()
    if t.untyped_storage().data_ptr() == inputs.untyped_storage().data_ptr():
        return True
    flat = t.reshape(-1).float()
    for image in inputs.reshape(inputs.shape[0], -1):
        if flat.numel() < image.numel():
            continue
        for start in (flat == image[0]).nonzero().reshape(-1).tolist():
            window = flat[start:start + image.numel()]
            if window.numel() == image.numel() and torch.equal(window, image):
                return True
    return False


@pytest.mark.parametrize("algorithm", ["fedsgd", "fedavg"])
def test_observation_never_contains_the_private_batch(algorithm: str) -> None:
    model = build_model("convnet", 10, (3, 9, 9), width=2, seed=0)
    images = smooth_images(3, size=9)
    training = LocalTraining(algorithm=algorithm, lr=0.1, epochs=1, batch_size=3, model_mode="train")
    every_grant = ThreatModel(labels_known=True, num_images_known=True, bn_statistics_known=True,
                              local_hyperparameters_known=True, model_mode_known=True)
    obs, _, private = client_round(model, images, torch.tensor([1, 2, 3]), training, every_grant, NORM)
    found = list(_tensors(obs))
    assert any(p.endswith("conv0.weight") for p, _ in found) and any("bn_statistics" in p for p, _ in found)
    leaks = [p for p, t in found if _holds(t, private.inputs)]
    assert leaks == []
    # The walker does find a planted copy: the test can fail.
    planted = dataclasses.replace(obs, update=dataclasses.replace(obs.update, metadata={"x": private.inputs[1:2]}))
    assert [p for p, t in _tensors(planted) if _holds(t, private.inputs)] == ["observation.update.metadata['x']"]


def test_observation_fields_are_exactly_the_known_ones() -> None:
    # A new Observation field must be added to the leak walk above deliberately.
    assert [f.name for f in dataclasses.fields(Observation)] == [
        "model", "update", "threat_model", "input_shape", "num_classes", "normalization", "local_training",
        "model_mode", "labels", "num_images", "bn_statistics", "dropout_masks", "private_names",
        "private_embedding", "private_head"]
