"""The inversion variables mechanism: named unknowns, parametrizations, regularisers, and the
``OptimizationAttack`` base (restarts, selection, non-finite stopping).

Each extra unknown is proved by a toy attack written as one small subclass here, the way
a real one (Dropout Inversion, GIFD, HyperFL) is added: one module, no base changes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedarena import attacks  # noqa: F401  (registers the attacks)
from fedarena.attacks.inversion import (
    REGULARISERS,
    Evaluation,
    GeneratorInputs,
    InvertingGradients,
    OptimizationAttack,
    Parametrization,
    Regulariser,
    Step,
    split_generator,
    total_variation,
)
from fedarena.attacks.inversion.inverting_gradients import IGSettings
from fedarena.attacks.inversion.problem import InversionProblem
from fedarena.attacks.inversion.variables import Variables
from fedarena.fl_core.data import Normalization
from fedarena.fl_core.models import build_model
from fedarena.fl_core.models.dropout import dropout_masks
from fedarena.fl_core.threat import Observation, ThreatModel, make_observation
from fedarena.fl_core.updates import ClientUpdate, LocalTraining, PrivateData
from fedarena.fl_core.vectors import model_to_vector
from tests.test_inversion import NORM, client_round, lenet, smooth_images

UNIT = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
GRANTS = ThreatModel(labels_known=True, model_mode_known=True, local_hyperparameters_known=True)


def _flat_grads(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(F.cross_entropy(model(x), y), params)])


def dropout_round(model: nn.Module, x: Tensor, y: Tensor, training: LocalTraining,
                  seed: int = 5) -> tuple[Observation, dict[str, list[Tensor]]]:
    """A client training with dropout, written out with plain autograd and torch.optim.SGD
    (independent of the attack's simulator); returns the observation and the true masks."""
    client = copy.deepcopy(model).train()
    start = model_to_vector(client)
    optimizer = torch.optim.SGD([p for p in client.parameters() if p.requires_grad], lr=training.lr)
    with dropout_masks(client, generator=torch.Generator().manual_seed(seed), record=True) as masks:
        if training.algorithm == "fedsgd":
            vector, kind = _flat_grads(client, x, y), "gradient"
        else:
            for k in range(0, x.shape[0], training.batch_size):
                optimizer.zero_grad()
                F.cross_entropy(client(x[k:k + training.batch_size]), y[k:k + training.batch_size]).backward()
                optimizer.step()
            vector, kind = model_to_vector(client) - start, "delta"
    update = ClientUpdate(0, vector.detach(), kind, x.shape[0])  # type: ignore[arg-type]
    obs = make_observation(model, start, update, PrivateData(x, y, masks), training, GRANTS, UNIT, 10)
    return obs, masks


def dropout_mlp() -> nn.Module:
    return build_model("mlp", 10, (3, 8, 8), hidden=(32,), dropout=0.5, seed=0)


@pytest.mark.parametrize("algorithm", ["fedsgd", "fedavg"])
def test_true_images_with_true_masks_give_near_zero_matching_loss(algorithm: str) -> None:
    x, y = smooth_images(2, seed=3), torch.tensor([4, 7])
    training = LocalTraining(algorithm=algorithm, lr=0.1, epochs=1, batch_size=2 if algorithm == "fedsgd" else 1,
                             model_mode="train")
    obs, masks = dropout_round(dropout_mlp(), x, y, training)
    problem = InvertingGradients().build(obs)
    true = {"x": x, "mask.dropout1": torch.stack(masks["dropout1"])}  # one mask per local step
    assert true["mask.dropout1"].shape == ((1, 2, 32) if algorithm == "fedsgd" else (2, 1, 32))
    assert problem.simulator.mask_shapes(x, y) == {"dropout1": true["mask.dropout1"].shape}
    at_truth = float(problem.matching_of(true, create_graph=False).detach())
    keep_all = float(problem.matching_of({**true, "mask.dropout1": torch.ones_like(true["mask.dropout1"])},
                                         create_graph=False).detach())
    swapped = float(problem.matching_of({**true, "mask.dropout1": true["mask.dropout1"].flip(0, 1)},
                                        create_graph=False).detach())
    assert abs(at_truth) < 1e-5 and keep_all > 1e-2 and swapped > 1e-2


class ToyDropoutInversion(InvertingGradients):
    """IG with the dropout masks of site ``dropout1`` as extra unknowns, kept in [0, 1]."""

    name = "toy_dropout_inversion"

    def init(self, problem: InversionProblem) -> Variables:
        variables = super().init(problem)
        assert problem.labels is not None
        shapes = problem.simulator.mask_shapes(variables["x"][0], problem.labels)
        variables["mask.dropout1"] = torch.ones(self.settings.restarts, *shapes["dropout1"])
        return variables

    def stepper(self, problem: InversionProblem, variables: Variables, evaluation: Evaluation) -> Step:
        step = super().stepper(problem, variables, evaluation)

        def masked(iteration: int) -> Tensor:
            loss = step(iteration)
            with torch.no_grad():
                variables["mask.dropout1"].clamp_(0, 1)
            return loss

        return masked


def test_dropout_masks_are_recovered_jointly_with_the_image() -> None:
    model, x, y = dropout_mlp(), smooth_images(1, seed=3), torch.tensor([4])
    obs, masks = dropout_round(model, x, y, LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="train"))
    rec = ToyDropoutInversion(iterations=60, tv_weight=0.0).reconstruct(obs)
    assert rec.restart_losses[0] < 0.02 * rec.loss_trace[0]
    recovered, truth = rec.variables["mask.dropout1"][0, 0], masks["dropout1"][0][0]
    active = model.fc1(x.flatten(1))[0] > 0  # a mask on a dead ReLU unit changes nothing: unidentifiable
    assert active.sum() > 8 and torch.equal((recovered[active] > 0.5), truth[active] > 0)
    # The same attack without the mask variables cannot explain the update.
    plain = InvertingGradients(iterations=60, tv_weight=0.0).reconstruct(obs)
    assert plain.restart_losses[0] > 5 * rec.restart_losses[0]


def test_masks_need_a_train_mode_client() -> None:
    obs, masks = dropout_round(dropout_mlp(), smooth_images(1), torch.tensor([1]),
                               LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="train"))
    problem = InvertingGradients(assumed_model_mode="eval").build(dataclasses.replace(obs, model_mode=None))
    with pytest.raises(ValueError, match="dropout is off"):
        problem.matching_of({"x": smooth_images(1), "mask.dropout1": torch.stack(masks["dropout1"])})


class ToyPrivateHead(InvertingGradients):
    """IG with the client's private (unshared, frozen) output bias as an extra unknown."""

    name = "toy_private_head"

    def init(self, problem: InversionProblem) -> Variables:
        variables = super().init(problem)
        observed = dict(problem.observation.model.named_parameters())["fc2.bias"].detach()
        variables["param.fc2.bias"] = observed.expand(self.settings.restarts, -1).clone()
        return variables


def test_a_private_parameter_is_an_optimisation_variable() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", 10, (3, 8, 8), hidden=(32,), seed=0)
    model.fc2.bias.requires_grad_(False)  # private: never shared, never in the update
    client = copy.deepcopy(model)
    with torch.no_grad():
        client.fc2.bias.copy_(torch.linspace(-2, 2, 10))  # the client's own value
    x, y = smooth_images(1, seed=4), torch.tensor([6])
    update = ClientUpdate(0, _flat_grads(client.eval(), x, y), "gradient", 1)
    obs = make_observation(model, model_to_vector(model), update, PrivateData(x, y),
                           LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval"), GRANTS, UNIT, 10)
    problem = ToyPrivateHead().build(obs)
    truth = float(problem.matching_of({"x": x, "param.fc2.bias": client.fc2.bias}, create_graph=False))
    observed = float(problem.matching_of({"x": x}, create_graph=False))  # the server's stale value
    assert abs(truth) < 1e-6 and observed > 1e-3
    with pytest.raises(ValueError, match="not parameters of the model"):
        problem.matching_of({"x": x, "param.fc9.bias": client.fc2.bias})
    rec = ToyPrivateHead(iterations=40, tv_weight=0.0).reconstruct(obs)
    plain = InvertingGradients(iterations=40, tv_weight=0.0).reconstruct(obs)
    assert rec.restart_losses[0] < 0.5 * plain.restart_losses[0]
    recovered = rec.variables["param.fc2.bias"]
    assert (recovered - client.fc2.bias).norm() < 0.9 * (model.fc2.bias - client.fc2.bias).norm()


def tiny_generator(latent: int = 6, size: int = 8) -> nn.Sequential:
    torch.manual_seed(1)
    gen = nn.Sequential(nn.Linear(latent, 24), nn.ReLU(), nn.Linear(24, 48), nn.ReLU(),
                        nn.Linear(48, 3 * size * size), nn.Unflatten(1, (3, size, size)), nn.Sigmoid())
    return gen.requires_grad_(False)


@pytest.mark.parametrize("at", [0, 2, "3", 7])
def test_generator_split_reproduces_the_full_forward(at: int | str) -> None:
    gen = tiny_generator()
    head, tail = split_generator(gen, at)
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tail(head(z)), gen(z))
    full, from_split = GeneratorInputs(gen, "z"), GeneratorInputs(tail, "h")
    assert torch.equal(full({"z": z}), from_split({"h": head(z)}))


def test_generator_split_points_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown split point"):
        split_generator(tiny_generator(), "decoder")
    with pytest.raises(ValueError, match="outside"):
        split_generator(tiny_generator(), 9)
    with pytest.raises(TypeError, match="nn.Sequential"):
        split_generator(nn.Linear(2, 2), 1)  # type: ignore[arg-type]


class ToyLatentInversion(InvertingGradients):
    """IG over a generator's features at a split point: images are ``tail(h)``."""

    name = "toy_latent_inversion"

    def __init__(self, generator: nn.Sequential, split: int, **settings: object) -> None:
        super().__init__(**settings)
        self.head, self.tail = split_generator(generator, split)

    def parametrization(self, observation: Observation) -> Parametrization:
        return Parametrization(GeneratorInputs(self.tail, "h"))

    def init(self, problem: InversionProblem) -> Variables:
        z = torch.randn(self.settings.restarts * problem.shape[0], 6, generator=torch.Generator().manual_seed(2))
        return {"h": self.head(z).reshape(self.settings.restarts, problem.shape[0], -1)}


def test_an_attack_over_a_generator_split_optimises_features() -> None:
    gen = tiny_generator()
    head, tail = split_generator(gen, 2)
    truth = gen(torch.randn(1, 6, generator=torch.Generator().manual_seed(7)))  # in the generator's range
    model = build_model("mlp", 10, (3, 8, 8), hidden=(32,), seed=0)
    obs, _, _ = client_round(model, truth, torch.tensor([3]),
                             LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval"))
    attack = ToyLatentInversion(gen, 2, iterations=40, tv_weight=0.0, lr=0.05)
    problem = attack.build(obs)
    assert float(problem.matching_of({"h": head(torch.randn(1, 6))}, create_graph=False)) > 1e-3
    rec = attack.reconstruct(obs)
    assert rec.restart_losses[0] < 0.1 * rec.loss_trace[0]
    assert torch.equal(rec.images, tail(rec.variables["h"]))  # the images are the generator's output
    assert set(rec.variables) == {"h"}


@pytest.mark.parametrize("weights", [dict(tv_weight=0.0, l2_weight=0.0), dict(tv_weight=0.3, l2_weight=0.0),
                                     dict(tv_weight=0.0, l2_weight=0.02), dict(tv_weight=0.3, l2_weight=0.02)])
def test_regulariser_weights_come_from_settings(weights: dict[str, float]) -> None:
    obs, _, _ = client_round(lenet(), smooth_images(2), torch.tensor([1, 2]),
                             LocalTraining(algorithm="fedsgd", batch_size=2, model_mode="eval"))
    attack = InvertingGradients(bn_weight=0.5, **weights)  # bn: no statistics granted, so absent
    problem = attack.build(obs)
    x = smooth_images(2, seed=5)
    value = attack.objective(problem)({"x": x}).detach()
    matching = problem.matching_of({"x": x}).detach()
    if not any(weights.values()):
        assert torch.equal(value, matching)  # weight 0: the term is absent, not added as 0·term
    per_image_norm = x.flatten(1).norm(dim=1).mean()
    expected = matching + weights["tv_weight"] * total_variation(x) + weights["l2_weight"] * per_image_norm
    assert float(value) == pytest.approx(float(expected), rel=1e-6)
    assert float(value - matching) == pytest.approx(float(expected - matching), rel=1e-4, abs=1e-7)


def test_registered_regularisers_and_a_mask_prior_reading_variables() -> None:
    assert {"tv", "bn", "l2"} <= set(REGULARISERS.names())

    def mask_l1(problem: InversionProblem):
        return lambda variables, inputs: sum(v.abs().sum() for k, v in variables.items() if k.startswith("mask."))

    @dataclasses.dataclass(frozen=True)
    class Settings(IGSettings):
        mask_weight: float = 0.0

    class WithMaskPrior(ToyDropoutInversion):
        settings_class = Settings
        regularisers = (*InvertingGradients.regularisers, Regulariser("mask_l1", "mask_weight", mask_l1))

    obs, masks = dropout_round(dropout_mlp(), smooth_images(1), torch.tensor([2]),
                               LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="train"))
    variables = {"x": smooth_images(1, seed=8), "mask.dropout1": torch.stack(masks["dropout1"])}
    without = WithMaskPrior(tv_weight=0.0).objective(WithMaskPrior().build(obs))(variables).detach()
    attack = WithMaskPrior(tv_weight=0.0, mask_weight=0.01)
    value = attack.objective(attack.build(obs))(variables).detach()
    assert float(value - without) == pytest.approx(0.01 * float(masks["dropout1"][0].sum()), rel=1e-4)

    class Missing(InvertingGradients):
        regularisers = ("tv", Regulariser("latent", "latent_weight", lambda p: None))

    with pytest.raises(ValueError, match="latent_weight"):
        Missing().objective(Missing().build(obs))


class PlantedRestarts(InvertingGradients):
    """IG whose restart 0 starts at NaN (diverges at once) and restart 1 at the true images."""

    name = "planted_restarts"
    truth: Tensor

    def init(self, problem: InversionProblem) -> Variables:
        x = self._init(problem)
        x[0] = float("nan")
        x[1] = self.truth
        return {"x": x}


@pytest.mark.parametrize("batched", ["auto", "never"])
def test_selection_picks_the_lowest_loss_restart_even_when_not_last(batched: str) -> None:
    obs, _, private = client_round(lenet(), smooth_images(2), torch.tensor([1, 8]),
                                   LocalTraining(algorithm="fedsgd", batch_size=2, model_mode="eval"),
                                   ThreatModel(labels_known=True), UNIT)
    attack = PlantedRestarts(iterations=3, restarts=3, lr=1e-4, tv_weight=0.0, batched_restarts=batched)
    attack.truth = private.inputs
    rec = attack.reconstruct(obs)
    assert rec.chosen_restart == 1 and rec.restarts == 3
    assert rec.restart_losses[0] == math.inf and math.isfinite(rec.restart_losses[2])
    assert rec.restart_losses[1] < 1e-3 < rec.restart_losses[2]
    assert any("restart 0 stopped at iteration 0" in n for n in rec.notes)
    assert any("vmap" in n for n in rec.notes) == (batched == "auto")
    assert len(rec.loss_trace) == 3


class PoisonedStep(InvertingGradients):
    """IG whose step writes NaN into the images of restart ``victim`` at iteration 3."""

    name = "poisoned_step"
    victim = 0

    def stepper(self, problem: InversionProblem, variables: Variables, evaluation: Evaluation) -> Step:
        step = super().stepper(problem, variables, evaluation)
        batched = variables["x"].dim() == 5

        def poisoned(iteration: int) -> Tensor:
            loss = step(iteration)
            if iteration == 3:
                with torch.no_grad():
                    (variables["x"][self.victim] if batched else variables["x"]).fill_(float("nan"))
            return loss

        return poisoned


def test_a_non_finite_iterate_stops_the_restart_at_its_last_finite_one() -> None:
    obs, _, _ = client_round(lenet(), smooth_images(2), torch.tensor([1, 8]),
                             LocalTraining(algorithm="fedsgd", batch_size=2, model_mode="eval"), normalization=NORM)
    common: dict[str, object] = dict(restarts=2, lr_decay=False, seed=3)
    reference = InvertingGradients(iterations=3, **common)
    problem = reference.build(obs)
    init = {"x": reference._init(problem)}
    three = reference.optimise_batched(problem, init)  # where both restarts are after 3 steps
    poisoned = PoisonedStep(iterations=8, **common)
    runs = poisoned.optimise_batched(problem, init)
    assert runs[0].stopped == 3 and runs[1].stopped is None
    assert torch.equal(runs[0].variables["x"], three[0].variables["x"]) and runs[0].trace == three[0].trace
    assert len(runs[1].trace) == 8 and not torch.equal(runs[1].variables["x"], three[1].variables["x"])
    one = poisoned.optimise(problem, {"x": init["x"][0]})
    assert one.stopped == 3 and len(one.trace) == 3
    assert torch.equal(one.variables["x"], reference.optimise(problem, {"x": init["x"][0]}).variables["x"])


def test_the_base_needs_an_initialisation() -> None:
    class NoInit(OptimizationAttack):
        def stepper(self, problem: InversionProblem, variables: Variables, evaluation: Evaluation) -> Step:
            raise AssertionError("not reached")

    obs, _, _ = client_round(lenet(), smooth_images(1), torch.tensor([1]),
                             LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval"))
    with pytest.raises(NotImplementedError, match="init or init_restart"):
        NoInit().reconstruct(obs)


def test_the_documented_example_attack_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """docs/adding_an_attack.md's python example, as written (its registry entry is undone after)."""
    from fedarena.attacks.registry import INVERSION_ATTACKS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "adding_an_attack.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.setattr(INVERSION_ATTACKS, "_entries", dict(INVERSION_ATTACKS._entries))
    module = types.ModuleType("doc_example")  # a real module, as dataclasses need
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(blocks[0], "adding_an_attack.md", "exec"), module.__dict__)
    first, final = map(float, re.search(r"matching loss ([0-9.]+) -> ([0-9.]+)", capsys.readouterr().out).groups())
    assert final < 0.05 * first
