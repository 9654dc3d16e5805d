"""What the Dropout Inversion scripts share (``dia_demo``, ``dia_sweep``, ``dia_speed``):
the attacks by short name with the reference's settings, one attacked image as a cached
unit, and its scores.

The client is the real FL client (``fedarena.fl_core.client.train_client``): FedSGD in train mode,
its dropout masks drawn from its own seeded generator and recorded on the ground-truth
side (``PrivateData.dropout_masks``). Labels are granted (as in the reference); the model
mode is not, so eval-mode IG assumes ``eval`` and DIA assumes ``train``. Only the
well-informed IG sees the client's masks, through the oracle grant
``dropout_masks_known`` of its own observation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fedarena.attacks.registry import INVERSION_ATTACKS
from fedarena.benchmarks.harness.units import UnitCache, digest
from fedarena.benchmarks.metrics.privacy import score_privacy, to_unit
from fedarena.fl_core.client import GlobalState, train_client
from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.models.dropout import dropout_masks
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.threat import Observation, ThreatModel, make_observation
from fedarena.fl_core.updates import LocalTraining, PrivateData
from fedarena.fl_core.vectors import model_to_vector

from .common import Stopwatch

#: short name → (registry name, label)
ATTACKS: dict[str, tuple[str, str]] = {
    "ig": ("inverting_gradients", "IG (eval-mode attacker)"),
    "dia": ("dropout_inversion", "DIA"),
    "informed": ("inverting_gradients_informed", "well-informed IG (oracle masks)"),
    "random": ("inverting_gradients_random_masks", "IG (train mode, random masks)"),
}
#: the reference's attack settings (DIA.yaml / IG.yaml / WIIG.yaml): Adam lr 0.1, TV 1e-5,
#: plateau ×0.1 after 800 iterations; DIA adds mask weight 1e-4 (its default)
REFERENCE = {"lr": 0.1, "tv_weight": 1e-5, "lr_schedule": "plateau", "plateau_patience": 800}
THREAT = ThreatModel(labels_known=True, model_mode_known=False)


def threat_for(attack: str) -> ThreatModel:
    """The grants of ``attack``'s observation: the oracle masks for the informed IG only."""
    return ThreatModel(**{**THREAT.flags(), "dropout_masks_known": attack == "informed"})


@dataclass
class Unit:
    """One (image, attack) result: scores, reconstruction and truth in [0, 1], trace."""

    index: int
    attack: str
    psnr: float
    ssim: float
    lpips: float | None
    lpips_note: str
    mse_normalized: float
    mask_recovery: float | None
    final_loss: float
    seconds: float
    iterations: int
    reconstruction: torch.Tensor
    truth: torch.Tensor
    trace: list[float]


def unit_key(setting: dict[str, object], attack: str, index: int) -> str:
    return f"{digest(setting)}/{attack}/image_{index}"


def observe(model: nn.Module, data: ImageDataset, training: LocalTraining, threat: ThreatModel,
            seed: int = 0) -> tuple[Observation, PrivateData]:
    """One honest client round with its dropout masks drawn and recorded as
    ``fedarena.fl_core.simulation.Simulation`` does (the client's own ``("dropout", client, round)``
    stream), then the curious server's view; the private batch apart, for scoring only."""
    state = GlobalState(model_to_vector(model))
    masks_gen = torch_generator(seed, "dropout", 0, 0, device=state.params.device)
    with dropout_masks(model, generator=masks_gen, record=True) as masks:
        update, private = train_client(model, state, 0, data, training, torch_generator(seed, "benchmark", "client"))
    if masks:
        private = dataclasses.replace(private, dropout_masks=masks)
    obs = make_observation(model, state.params, update, private, training, threat, data.normalization,
                           data.num_classes)
    return obs, private


def attack_image(attack: str, model: nn.Module, data: ImageDataset, index: int, iterations: int,
                 seed: int = 0) -> Unit:
    """Run ``attack`` (a key of ``ATTACKS``) on the client's FedSGD gradient of one image."""
    training = LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="train")
    obs, private = observe(model, data, training, threat_for(attack), seed=seed)
    name = ATTACKS[attack][0]
    rec_attack = INVERSION_ATTACKS.build(name, **REFERENCE, iterations=iterations, seed=seed)
    with Stopwatch() as t:
        rec = rec_attack.reconstruct(obs)
    s = score_privacy(rec.images, private.inputs, data.normalization, rec.labels, private.labels, rec.variables,
                      private.dropout_masks)
    return Unit(index=index, attack=attack, psnr=s.psnr[0], ssim=s.ssim[0],
                lpips=None if s.lpips is None else s.lpips[0], lpips_note=s.lpips_note,
                mse_normalized=s.extra["mse_normalized"][0], mask_recovery=s.extra.get("mask_recovery"),
                final_loss=float(rec.restart_losses[rec.chosen_restart]), seconds=t.seconds,
                iterations=len(rec.loss_trace), reconstruction=to_unit(rec.images, data.normalization)[0],
                truth=to_unit(private.inputs, data.normalization)[0], trace=[float(v) for v in rec.loss_trace])


def save(cache: UnitCache, key: str, unit: Unit) -> None:
    cache.put_tensors(key, asdict(unit))


def load(cache: UnitCache, key: str) -> Unit | None:
    data = cache.get_tensors(key)
    return None if data is None else Unit(**data)
