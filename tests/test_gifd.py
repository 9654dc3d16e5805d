"""generator_latent and GIFD (issue 16) on the real mnist_gan prior and a LeNet-sized model.

The private images are the generator's own outputs, so the true unknowns (its latent and
its features) are known and must match with ~zero loss; stage selection is checked on
planted cases where the best stage is the first one and where it is a later one.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import Tensor

from fedarena import attacks  # noqa: F401  (registers the attacks)
from fedarena.attacks.inversion import GIFD, GeneratorLatent, build_generator
from fedarena.attacks.inversion.generators import SplitGenerator
from fedarena.attacks.inversion.gifd import LATENT, adam_update, ramp_lr, topk_mask
from fedarena.attacks.inversion.problem import InversionProblem
from fedarena.attacks.inversion.variables import Parametrization, Variables
from fedarena.attacks.registry import INVERSION_ATTACKS
from fedarena.fl_core.data import Normalization
from fedarena.fl_core.data_root import MissingDataError
from fedarena.fl_core.models import build_model
from fedarena.fl_core.threat import Observation, ThreatModel
from fedarena.fl_core.updates import LocalTraining
from tests.test_inversion import client_round

from .helpers import shared_assets

MNIST = Normalization((0.1307,), (0.3081,))
FEDSGD = LocalTraining(algorithm="fedsgd", batch_size=2, model_mode="eval")
FEDAVG = LocalTraining(algorithm="fedavg", batch_size=2, epochs=2, lr=0.1, model_mode="eval")  # 2 unrolled steps


@pytest.fixture(scope="module")
def gan() -> SplitGenerator:
    root = shared_assets()
    if root is None or not (root / "weights" / "csinva-mnist" / "G--300.ckpt").is_file():
        pytest.skip("weights/csinva-mnist/G--300.ckpt absent (set FEDARENA_DATA to the shared assets)")
    return build_generator("mnist_gan", root=root)


def _observe(gan: SplitGenerator, training: LocalTraining, n: int = 2,
             seed: int = 1) -> tuple[Observation, Tensor, list[int]]:
    """A client whose private batch is ``n`` generated digits; returns the observation, and the
    latents and labels in the order the client trained on them.

    FedSGD labels are recovered analytically; FedAvg grants them (label counts read from a
    two-step sigmoid-LeNet delta are wrong here, a limit of the label recovery, not of GIFD)."""
    z = torch.randn(n, *gan.latent_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        x01 = (gan(z) + 1) / 2
    model = build_model("lenet", 10, (1, 28, 28), seed=0)
    labels = torch.tensor([3, 5, 7, 1][:n])
    threat = ThreatModel(labels_known=training.algorithm == "fedavg")
    obs, _, private = client_round(model, x01, labels, training, threat, normalization=MNIST)
    # the client shuffled its batch: the latents in the order it trained on
    order = [int((private.inputs[i] - x01).flatten(1).abs().sum(1).argmin()) for i in range(n)]
    return obs, z[order], private.labels.tolist()


def _loss(problem: InversionProblem, variables: Variables) -> float:
    return float(problem.matching_of(variables, create_graph=False).detach())


@pytest.mark.parametrize("training", [FEDSGD, FEDAVG], ids=["fedsgd", "fedavg"])
def test_true_latent_and_features_match(gan: SplitGenerator, training: LocalTraining) -> None:
    obs, z, y = _observe(gan, training)
    attack = GIFD(iterations=1, feature_iterations=1, restarts=1)
    problem = attack.build(obs)
    assert problem.labels is not None and sorted(problem.labels.tolist()) == [3, 5]  # batch of 2
    z = z[[y.index(label) for label in problem.labels.tolist()]]  # the latents in the labels' order
    assert _loss(problem, {LATENT: z}) < 1e-5
    wrong = torch.randn(z.shape, generator=torch.Generator().manual_seed(9))
    assert _loss(problem, {LATENT: wrong}) > 1e-2
    for split in gan.split_points[1:]:
        stage = replace(problem, parametrization=Parametrization(attack.inputs(obs, split)))
        with torch.no_grad():
            feature = gan.head(z, split)
        assert _loss(stage, {split: feature}) < 1e-5


def test_ramp_lr_is_the_reference_schedule() -> None:
    assert ramp_lr(0.0, 0.1) == 0.0  # the reference's first step has lr 0
    assert ramp_lr(0.025, 0.1) == pytest.approx(0.05)  # half-way up the 5 % warm-up
    assert ramp_lr(0.1, 0.1) == pytest.approx(0.1) and ramp_lr(0.25, 0.1) == pytest.approx(0.1)
    assert ramp_lr(0.625, 0.1) == pytest.approx(0.05)  # half-way down the last 75 %: 0.5 - 0.5 cos(pi/2)
    assert ramp_lr(1.0, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_adam_update_is_torch_adam_bit_for_bit() -> None:
    """GIFD's stepper runs ``adam_update`` (torch's Adam arithmetic without the optimiser object):
    every iterate equals ``torch.optim.Adam``'s exactly, under the lr ramp (lr 0 first) and with
    gradients over six orders of magnitude (including exact zeros)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(2, 100, 1, 1), (1, 256)]  # a DCGAN latent batch, an MLP generator feature
    start = [torch.randn(shape, generator=gen) for shape in shapes]
    ours = [p.clone() for p in start]
    theirs = [p.clone().requires_grad_(True) for p in start]
    optimizer = torch.optim.Adam(theirs, lr=0.1)
    moments, squares, steps = [torch.zeros_like(p) for p in ours], [torch.zeros_like(p) for p in ours], [0, 0]
    iterations = 40
    for it in range(iterations):
        lr = ramp_lr(it / iterations, 0.1)
        grads = [torch.randn(shape, generator=gen) * 10.0 ** (it % 7 - 4) for shape in shapes]
        grads[1][0, :16] = 0.0
        for group in optimizer.param_groups:
            group["lr"] = lr
        for p, g in zip(theirs, grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        with torch.no_grad():
            adam_update(ours, grads, moments, squares, steps, lr)
        assert all(torch.equal(a, b.detach()) for a, b in zip(ours, theirs, strict=True)), it
    assert steps == [iterations, iterations] and not torch.equal(ours[0], start[0])


def test_topk_mask_keeps_the_largest_entries() -> None:
    target = torch.tensor([0.1, -3.0, 0.0, 2.0, -0.5])
    assert topk_mask(target, 0.4).tolist() == [0, 1, 0, 1, 0]
    assert topk_mask(target, 1.0).tolist() == [1] * 5


def test_latent_stays_on_its_initial_sphere_and_gifd_stage0_is_the_latent_search(gan: SplitGenerator) -> None:
    obs, _, _ = _observe(gan, FEDSGD)
    settings = {"iterations": 12, "restarts": 2, "lr": 0.2}
    latent = GeneratorLatent(**settings).reconstruct(obs)
    rec, stages = GIFD(**settings, feature_iterations=3).reconstruct_stages(obs)
    z0 = GeneratorLatent(**settings).init(GeneratorLatent(**settings).build(obs))[LATENT][latent.chosen_restart]
    z = latent.variables[LATENT]
    assert not torch.allclose(z, z0)
    assert torch.allclose(z.flatten(1).norm(dim=1), z0.flatten(1).norm(dim=1), rtol=1e-5)
    assert latent.restart_losses == rec.restart_losses
    assert torch.equal(stages[0].images, latent.images) and stages[0].split == LATENT
    assert [s.split for s in stages] == list(gan.split_points)


@pytest.mark.parametrize("absolute", [False, True])
def test_feature_stages_respect_the_l1_radius(gan: SplitGenerator, absolute: bool) -> None:
    obs, _, _ = _observe(gan, FEDSGD)
    radius, step = (0.02, 0.03) if not absolute else (0.5, 0.5)
    attack = GIFD(iterations=5, restarts=1, feature_iterations=15, lr=1.0, radius=radius, radius_step=step,
                  absolute_radius=absolute)
    _, stages = attack.reconstruct_stages(obs)
    previous = stages[0]
    for k, stage in enumerate(stages[1:], start=1):
        with torch.no_grad():
            start = gan.advance(previous.variables[previous.split], previous.split, stage.split)
        deviation = (stage.variables[stage.split] - start).flatten(1).abs().sum(dim=1)
        limit = attack.radius_of(k, start)
        assert stage.radius == pytest.approx(radius + (k - 1) * step)
        assert (deviation <= limit * (1 + 1e-4) + 1e-6).all()
        assert (deviation >= limit * 0.99).all()  # lr 1 pushes to the boundary: the ball is what binds
        previous = stage


class _FromTruth(GIFD):
    """GIFD started at the true latents (a planted case: stage 0 is already exact)."""

    name = "gifd_from_truth"
    truth: Tensor

    def init(self, problem: InversionProblem) -> Variables:
        return {LATENT: self.truth[None]}


def test_best_stage_is_chosen_by_loss_not_position(gan: SplitGenerator) -> None:
    obs, z, _ = _observe(gan, FEDSGD, n=1)
    # planted: the exact latent, lr 0 in stage 0 (1 iteration), then feature stages that wander off it
    planted = _FromTruth(iterations=1, restarts=1, feature_iterations=10, lr=0.5, radius=1.0, radius_step=1.0)
    planted.truth = z
    rec, stages = planted.reconstruct_stages(obs)
    losses = [s.loss for s in stages]
    assert losses[0] < 1e-5 and min(losses[1:]) > losses[0]
    assert rec.config["chosen_stage"] == LATENT and torch.equal(rec.images, stages[0].images)
    assert LATENT in rec.variables
    # a random start: the feature stages improve on the latent, and the lowest loss wins
    rec, stages = GIFD(iterations=10, restarts=1, feature_iterations=20).reconstruct_stages(obs)
    losses = [s.loss for s in stages]
    best = min(range(len(stages)), key=lambda i: losses[i])
    assert best > 0 and losses[best] < losses[0]
    assert rec.config["chosen_stage"] == stages[best].split and torch.equal(rec.images, stages[best].images)
    assert rec.config["stage_losses"] == {s.split: s.loss for s in stages}


@pytest.mark.parametrize("name", ["generator_latent", "gifd"])
def test_fedavg_path_runs_and_reduces_the_loss(gan: SplitGenerator, name: str) -> None:
    obs, _, _ = _observe(gan, FEDAVG)
    assert obs.update.kind == "delta"
    rec = INVERSION_ATTACKS.build(name, iterations=25, restarts=1, feature_iterations=10, lr=0.2).reconstruct(obs) \
        if name == "gifd" else INVERSION_ATTACKS.build(name, iterations=25, restarts=1, lr=0.2).reconstruct(obs)
    assert rec.config["update_mode"] == "unroll" and rec.config["local_steps"] is None
    assert rec.config["simulated_algorithm"] == "fedavg"
    first = rec.loss_trace[0]
    assert math.isfinite(rec.restart_losses[0]) and rec.restart_losses[0] < 0.8 * first
    if name == "gifd":
        assert min(rec.config["stage_losses"].values()) <= rec.restart_losses[0]


@pytest.mark.parametrize("name", ["generator_latent", "gifd"])
def test_missing_generator_weights_name_the_file(gan: SplitGenerator, name: str, tmp_path: Path) -> None:
    obs, _, _ = _observe(gan, FEDSGD)
    with pytest.raises(MissingDataError) as info:
        INVERSION_ATTACKS.build(name, generator="mnist_gan", data_root=str(tmp_path), iterations=1).reconstruct(obs)
    msg = str(info.value)
    assert f"missing G--300.ckpt in {tmp_path / 'weights' / 'csinva-mnist'}" in msg and msg.count("G--300.ckpt") == 1


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="labels='optimize'"):
        GIFD(labels="optimize")
    with pytest.raises(ValueError, match="topk"):
        GeneratorLatent(topk=0.0)
    with pytest.raises(ValueError, match="radius"):
        GIFD(radius=-1.0)


def test_too_many_stages_named(gan: SplitGenerator) -> None:
    with pytest.raises(ValueError, match="only 2 feature split points"):
        GIFD(stages=3).feature_splits(gan)
    assert GIFD(stages=1).feature_splits(gan) == ["block1"]
