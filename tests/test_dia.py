"""Dropout Inversion (``fedarena.attacks.inversion.dropout_inversion``) and its baselines, on tiny
MLPs with dropout; the client is written out with plain autograd and torch.optim.SGD
(``tests.test_inversion_variables.dropout_round``), independent of the attack's simulator."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from fedarena import attacks  # noqa: F401  (registers the attacks)
from fedarena.attacks.inversion import DropoutInversion, InvertingGradients
from fedarena.attacks.inversion.dropout_inversion import active_sites
from fedarena.attacks.registry import INVERSION_ATTACKS
from fedarena.benchmarks.metrics.privacy import mask_recovery, normalized_mse, score_privacy, summarize_privacy
from fedarena.fl_core.models import build_model
from fedarena.fl_core.threat import Observation, ThreatModel, make_observation
from fedarena.fl_core.updates import LocalTraining, PrivateData
from fedarena.fl_core.vectors import model_to_vector
from tests.test_inversion import smooth_images
from tests.test_inversion_variables import GRANTS, UNIT, dropout_round

#: the reference's IG settings at a tiny budget (both attacks get them in the p = 0 test)
SHARED = {"iterations": 25, "tv_weight": 1e-5, "lr_schedule": "plateau", "plateau_patience": 5}


def mlp(p: float) -> nn.Module:
    return build_model("mlp", 10, (3, 8, 8), hidden=(32,), dropout=p, seed=0)


def training(algorithm: str, batch: int = 2) -> LocalTraining:
    return LocalTraining(algorithm=algorithm, lr=0.1, epochs=1, batch_size=batch if algorithm == "fedsgd" else 1,
                         model_mode="train")


def regrant(model: nn.Module, obs: Observation, x: torch.Tensor, y: torch.Tensor, masks: dict[str, list[torch.Tensor]],
            t: LocalTraining, threat: ThreatModel) -> Observation:
    """The same upload seen under another threat model."""
    return make_observation(model, model_to_vector(model), obs.update, PrivateData(x, y, masks), t, threat, UNIT, 10)


@pytest.mark.parametrize("algorithm", ["fedsgd", "fedavg"])
def test_dia_at_rate_zero_is_ig_step_for_step(algorithm: str) -> None:
    x, y = smooth_images(2, seed=3), torch.tensor([4, 7])
    obs, _ = dropout_round(mlp(0.0), x, y, training(algorithm))
    dia = DropoutInversion(**SHARED, mask_weight=1e-4).reconstruct(obs)
    ig = InvertingGradients(**SHARED).reconstruct(obs)
    assert not [k for k in dia.variables if k.startswith("mask.")]
    assert torch.equal(dia.images, ig.images)
    assert dia.loss_trace == ig.loss_trace and len(ig.loss_trace) == SHARED["iterations"]


@pytest.mark.parametrize("algorithm", ["fedsgd", "fedavg"])
def test_true_images_and_true_masks_give_near_zero_loss_and_the_init_has_their_shape(algorithm: str) -> None:
    x, y = smooth_images(2, seed=3), torch.tensor([4, 7])
    obs, masks = dropout_round(mlp(0.5), x, y, training(algorithm))
    attack = DropoutInversion(iterations=1)
    problem = attack.build(obs)
    init = attack.init(problem)
    true = torch.stack(masks["dropout1"])  # [steps, *mask]: one per local step
    assert init["mask.dropout1"].shape == (1, *true.shape)
    assert set(init["mask.dropout1"].unique().tolist()) <= {0.0, 1.0}
    at_truth = float(problem.matching_of({"x": x, "mask.dropout1": true}, create_graph=False).detach())
    at_init = float(problem.matching_of({"x": x, "mask.dropout1": init["mask.dropout1"][0]},
                                        create_graph=False).detach())
    assert abs(at_truth) < 1e-5 and at_init > 1e-2


@pytest.mark.parametrize("algorithm", ["fedsgd", "fedavg"])
def test_masks_stay_in_the_unit_interval_and_move(algorithm: str) -> None:
    x, y = smooth_images(2, seed=3), torch.tensor([4, 7])
    obs, masks = dropout_round(mlp(0.5), x, y, training(algorithm))
    rec = DropoutInversion(iterations=30).reconstruct(obs)
    m = rec.variables["mask.dropout1"]
    assert m.min() >= 0 and m.max() <= 1
    assert ((m > 0) & (m < 1)).any()  # optimised, not left at the Bernoulli draw
    assert m.shape == torch.stack(masks["dropout1"]).shape  # fedavg: one mask set per local step


def test_dia_restarts_batch_under_vmap_with_the_step_schedule() -> None:
    x, y = smooth_images(1, seed=3), torch.tensor([4])
    obs, _ = dropout_round(mlp(0.5), x, y, training("fedsgd", 1))
    batched = DropoutInversion(iterations=4, restarts=2, lr_schedule="steps").reconstruct(obs)
    assert "2 restarts batched with torch.func.vmap" in batched.notes
    one = DropoutInversion(iterations=4, restarts=2, lr_schedule="steps", batched_restarts="never").reconstruct(obs)
    assert torch.allclose(batched.images, one.images, atol=1e-5)
    plateau = DropoutInversion(iterations=2, restarts=2).reconstruct(obs)
    assert any("plateau" in note for note in plateau.notes)


def test_dia_recovers_images_and_masks_that_eval_mode_ig_cannot() -> None:
    """The paper's finding at toy scale: against a client with p = 0.5, DIA's joint masks
    reconstruct far better than IG with the attacker in eval mode, from the same start."""
    x, y = smooth_images(1, seed=3), torch.tensor([4])
    obs, masks = dropout_round(mlp(0.5), x, y, training("fedsgd", 1))
    obs = dataclasses.replace(obs, model_mode=None)  # the mode is not granted: IG assumes eval
    settings = {"iterations": 300, "tv_weight": 1e-5, "lr_schedule": "plateau", "plateau_patience": 800}
    dia = DropoutInversion(**settings).reconstruct(obs)
    ig = InvertingGradients(**settings).reconstruct(obs)
    assert ig.assumed["model_mode"] == "eval" and dia.assumed["model_mode"] == "train"
    dia_mse, ig_mse = float(normalized_mse(dia.images, x)[0]), float(normalized_mse(ig.images, x)[0])
    assert dia_mse < 0.5 * ig_mse, (dia_mse, ig_mse)
    recovered = {"dropout1": dia.variables["mask.dropout1"]}
    assert mask_recovery(recovered, masks) > 0.5


def test_informed_ig_refuses_without_the_oracle_grant_and_uses_the_true_masks_with_it() -> None:
    model, x, y = mlp(0.5), smooth_images(2, seed=3), torch.tensor([4, 7])
    t = training("fedsgd")
    obs, masks = dropout_round(model, x, y, t)
    assert obs.dropout_masks is None  # GRANTS withholds the masks
    informed = INVERSION_ATTACKS.build("inverting_gradients_informed", iterations=2)
    with pytest.raises(PermissionError, match="dropout_masks_known"):
        informed.reconstruct(obs)
    granted = regrant(model, obs, x, y, masks, t, dataclasses.replace(GRANTS, dropout_masks_known=True))
    assert granted.dropout_masks is not None
    problem = informed.build(granted)
    assert abs(float(problem.matching_of({"x": x}, create_graph=False))) < 1e-5
    eval_ig = InvertingGradients(assumed_model_mode="eval").build(dataclasses.replace(granted, model_mode=None))
    assert float(eval_ig.matching_of({"x": x}, create_graph=False)) > 1e-2  # no masks: the mismatch


def test_random_masks_are_fresh_per_forward_and_seeded() -> None:
    x, y = smooth_images(1, seed=3), torch.tensor([4])
    obs, _ = dropout_round(mlp(0.5), x, y, training("fedsgd", 1))
    build = lambda seed: INVERSION_ATTACKS.build("inverting_gradients_random_masks", iterations=6, seed=seed)  # noqa: E731
    a, b, c = build(0).reconstruct(obs), build(0).reconstruct(obs), build(1).reconstruct(obs)
    assert torch.equal(a.images, b.images) and a.loss_trace == b.loss_trace
    assert a.loss_trace != c.loss_trace
    problem = build(0).build(obs)
    first, second = (float(problem.matching_of({"x": x}, create_graph=False)) for _ in range(2))
    assert first != second  # a new mask on every forward


def test_mask_recovery_on_a_planted_mask() -> None:
    true = {"a": [torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])], "b": [torch.ones(2, 2)]}
    exact = {"a": torch.stack(true["a"]), "b": torch.ones(1, 2, 2)}
    assert mask_recovery(exact, true) == 1.0
    soft = {"a": torch.tensor([[[0.9, 0.4, 0.6, 0.2], [0.1, 0.3, 0.7, 0.45]]]), "b": torch.full((1, 2, 2), 0.4)}
    # site a: 0.2 is wrong (true 1); b: all four rounded to 0 are wrong -> 7 of 12 right
    assert mask_recovery(soft, true) == pytest.approx(7 / 12)
    # the image order of a matched batch permutes the masks' image axis
    swapped = {"a": exact["a"].flip(1), "b": exact["b"]}
    assert mask_recovery(swapped, true, order=[1, 0]) == 1.0
    with pytest.raises(ValueError, match="did not record"):
        mask_recovery({"c": torch.ones(1, 2)}, true)


def test_privacy_scores_carry_the_normalised_mse_and_the_mask_recovery() -> None:
    x = smooth_images(2, seed=3)
    rec = x.flip(0) + 0.1  # reversed order: the matching must undo it
    true = {"dropout1": [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]}
    variables = {"x": rec, "mask.dropout1": torch.tensor([[[0.0, 1.0], [0.9, 0.2]]])}  # masks follow rec's order
    scores = score_privacy(rec, x, UNIT, None, torch.tensor([0, 1]), variables, true)
    assert scores.order == [1, 0]
    assert scores.extra["mse_normalized"] == pytest.approx([0.01, 0.01])
    assert scores.extra["mask_recovery"] == 1.0
    summary = summarize_privacy([scores])
    assert summary["mask_recovery"] == 1.0 and summary["mse_normalized"] == pytest.approx(0.01)
    plain = score_privacy(rec, x, UNIT, None, torch.tensor([0, 1]))
    assert "mask_recovery" not in plain.extra and "mask_recovery" not in summarize_privacy([plain])


def test_active_sites_of_the_dia_models() -> None:
    vit = build_model("vit_dia", 10, (3, 32, 32), dropout=0.5, seed=0)
    sites = active_sites(vit)
    assert sites and set(sites.values()) == {0.5}
    assert active_sites(build_model("mlp_dia", 10, (1, 28, 28), dropout=0.0, seed=0)) == {}


HARNESS_SUITE = """
runs:
  - task: privacy
    dataset: {name: digits, indices: [0, 1, 2, 3]}
    model: {name: mlp, params: {hidden: [16], dropout: 0.5}}
    federation: {clients: 2, rounds: 1, local: {algorithm: fedsgd, batch_size: 2, model_mode: train}}
    threat_model: {labels_known: true, model_mode_known: false}
    attacks: [{name: dropout_inversion, params: {iterations: 5}}, {name: inverting_gradients, params: {iterations: 5}}]
    defenses: [none]
"""


def test_the_privacy_task_reports_mask_recovery_for_dia_and_the_normalised_mse_for_both() -> None:
    from fedarena.benchmarks.harness.execute import execute_run
    from fedarena.benchmarks.harness.suite import parse_suite

    dia, ig = (execute_run(spec) for spec in parse_suite(HARNESS_SUITE, "dia.yaml").runs)
    assert dia.status == "ok" and ig.status == "ok", (dia.error, ig.error)
    assert 0.0 <= dia.metrics["mask_recovery"] <= 1.0 and dia.metrics["mse_normalized"] > 0
    assert "mask_recovery" not in ig.metrics and ig.metrics["mse_normalized"] > 0
    assert dia.metrics["reconstructions"][0]["assumed"]["model_mode"] == "train"
