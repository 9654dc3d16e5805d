"""What every inversion attack returns (``Reconstruction``) and the choices they share.

An attack reads only an ``Observation``; whatever the threat model withholds (labels,
the number of images, the client's local hyperparameters, its model mode) is either
recovered analytically, optimised jointly, or replaced by an *assumed* value that is an
explicit attack setting and is recorded in the result (DESIGN: unknowns are
optimisation variables).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from torch import Tensor

from fedarena.fl_core.threat import Observation
from fedarena.fl_core.updates import LocalTraining

ModelMode = Literal["train", "eval"]


@dataclass
class Reconstruction:
    """One attack's answer for one observed client upload.

    ``images`` are in the model's normalised input space ``[B, C, H, W]`` (undo with the
    observation's ``Normalization``); ``labels`` are hard labels ``[B]`` (the argmax of
    jointly optimised soft labels when the attack optimised them). ``loss_trace`` is the
    chosen restart's objective per iteration; ``restart_losses`` are the final gradient-
    matching losses that chose it (never ground truth). ``assumed`` lists every value the
    attack had to assume because the threat model withheld it. ``variables``: the chosen
    restart's final optimisation variables (``x``, ``logits``, ``mask.*``, ``param.*``, a
    latent…), for scores of the recovered unknowns; not part of ``record()``.
    """

    attack: str
    images: Tensor
    labels: Tensor
    loss_trace: list[float]
    wall_time: float
    threat_model: dict[str, bool]
    restarts: int
    chosen_restart: int
    restart_losses: list[float]
    label_method: str
    config: dict[str, Any]
    assumed: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    variables: dict[str, Tensor] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON-friendly summary (no tensors) for result stores."""
        return {
            "attack": self.attack, "labels": self.labels.tolist(), "wall_time": self.wall_time,
            "threat_model": dict(self.threat_model), "restarts": self.restarts,
            "chosen_restart": self.chosen_restart, "restart_losses": list(self.restart_losses),
            "label_method": self.label_method, "config": dict(self.config),
            "assumed": {k: str(v) for k, v in self.assumed.items()}, "notes": list(self.notes),
            "final_loss": self.loss_trace[-1] if self.loss_trace else None,
        }


class InversionAttack(ABC):
    """Base of the registered attacks: ``reconstruct(observation) -> Reconstruction``."""

    name: str = "inversion"

    @abstractmethod
    def reconstruct(self, observation: Observation) -> Reconstruction: ...


@dataclass(frozen=True)
class CommonSettings:
    """Settings every optimisation attack shares (each attack subclasses with its defaults).

    ``labels``: ``auto`` (granted labels, else analytic recovery: iDLG for one image,
    ``batch_labels`` for more), ``optimize`` (DLG's jointly optimised soft labels) or a
    recovery method (``idlg``, ``yin``, ``llg``, ``bias``). ``update_mode`` for FedAvg
    deltas: ``auto``/``unroll`` (simulate the local steps) or ``as_gradient`` (baseline).
    ``update_transform``: a known deterministic transform (clipping, pruning mask) the
    adaptive attacker applies to its simulated update before matching. ``assumed_*``:
    the attacker's values for what the threat model withholds (see ``Assumptions``).
    ``*_weight``: the weights of the regularisers in ``priors.REGULARISERS`` (0 = absent).
    """

    restarts: int = 1
    labels: str = "auto"
    batch_labels: str = "bias"
    prob_estimate: str = "model"
    loss: str = "cosine"
    tv_weight: float = 0.0
    bn_weight: float = 0.0
    l2_weight: float = 0.0
    update_mode: str = "auto"
    update_transform: Callable[[Tensor], Tensor] | None = None
    assumed_training: LocalTraining | None = None
    assumed_model_mode: ModelMode = "eval"
    assumed_num_images: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts}")
        if self.tv_weight < 0 or self.bn_weight < 0 or self.l2_weight < 0:
            raise ValueError(f"prior weights must be >= 0, got tv_weight={self.tv_weight}, "
                             f"bn_weight={self.bn_weight}, l2_weight={self.l2_weight}")
        if self.prob_estimate not in ("model", "uniform"):
            raise ValueError(f"prob_estimate must be 'model' or 'uniform', got {self.prob_estimate!r}")
        if self.assumed_training is not None and not isinstance(self.assumed_training, LocalTraining):
            if not isinstance(self.assumed_training, dict):
                raise ValueError("assumed_training must be a LocalTraining or a dict of its fields")
            object.__setattr__(self, "assumed_training", LocalTraining(**self.assumed_training))

    @property
    def assumptions(self) -> Assumptions:
        return Assumptions(self.assumed_training, self.assumed_model_mode, self.assumed_num_images)

    def record(self) -> dict[str, Any]:
        """JSON-friendly config (callables and objects by name)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or isinstance(value, bool | int | float | str):
                out[f.name] = value
            else:
                out[f.name] = getattr(value, "__name__", None) or repr(value)
        return out


def build_settings(cls: type, attack: str, settings: dict[str, Any]) -> Any:
    """``cls(**settings)`` with an error that names the attack and its options."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise TypeError(f"{attack}: unknown settings {unknown}; its settings are {known}")
    return cls(**settings)


@dataclass(frozen=True)
class Assumptions:
    """Values an attacker falls back on when the threat model withholds the real ones.

    ``training``: the client's ``LocalTraining`` (lr, steps/epochs, batch size,
    optimizer). When None, FedSGD is assumed for gradients and one full-batch SGD epoch
    with ``lr`` = 0.01 (fl_core's default) for deltas. ``model_mode``: the mode the
    client's model computes in (``eval`` when unknown: no dropout noise, BatchNorm on
    running statistics, as in the IG paper's experiments). ``num_images``: the batch
    size to reconstruct; when None the update's ``num_samples`` is used, which the
    server reads anyway to weight FedAvg.
    """

    training: LocalTraining | None = None
    model_mode: ModelMode = "eval"
    num_images: int | None = None


@dataclass(frozen=True)
class ResolvedSetting:
    """The client behaviour an attack simulates, and which parts were assumed."""

    training: LocalTraining
    model_mode: ModelMode
    num_images: int
    assumed: dict[str, Any]


def resolve_setting(observation: Observation, assumptions: Assumptions) -> ResolvedSetting:
    """Granted values from the observation, assumed ones from the attack's settings."""
    assumed: dict[str, Any] = {}
    update = observation.update
    if observation.num_images is not None:
        num = observation.num_images
    elif assumptions.num_images is not None:
        num = assumptions.num_images
        assumed["num_images"] = num
    else:
        num = int(update.num_samples)
        assumed["num_images"] = f"{num} (from update.num_samples)"
    if num < 1:
        raise ValueError(f"cannot reconstruct {num} images: the number of images must be >= 1")
    if observation.local_training is not None:
        training = observation.local_training
    else:
        training = assumptions.training or _default_training(update.kind, num)
        assumed["training"] = training
    expected_kind = training.kind
    if expected_kind != update.kind:
        raise ValueError(f"the update is a {update.kind!r} but the (assumed) local training "
                         f"{training.algorithm!r} produces a {expected_kind!r}")
    if observation.model_mode is not None:
        mode = observation.model_mode
    else:
        mode = assumptions.model_mode
        assumed["model_mode"] = mode
    if mode not in ("train", "eval"):
        raise ValueError(f"model mode must be 'train' or 'eval', got {mode!r}")
    return ResolvedSetting(training, mode, num, assumed)


def _default_training(kind: str, num_images: int) -> LocalTraining:
    if kind == "gradient":
        return LocalTraining(algorithm="fedsgd", batch_size=num_images)
    return LocalTraining(algorithm="fedavg", lr=0.01, epochs=1, batch_size=num_images)


def check_observation(observation: Observation) -> Tensor:
    """The observed update vector, validated (finite, flat, matching the model)."""
    vector = observation.update.vector
    if not isinstance(vector, Tensor) or vector.dim() != 1:
        raise ValueError("observation.update.vector must be a flat tensor")
    dim = sum(p.numel() for p in observation.model.parameters() if p.requires_grad)
    if dim == 0:
        raise ValueError("the observed model has no trainable parameters: its update carries nothing to invert")
    if vector.numel() != dim:
        raise ValueError(f"observation.update.vector has {vector.numel()} entries but the model has "
                         f"{dim} trainable parameters")
    if not torch.isfinite(vector).all():
        raise ValueError("observation.update.vector contains NaN or infinite values")
    if observation.update.kind not in ("gradient", "delta"):
        raise ValueError(f"unknown update kind {observation.update.kind!r}")
    return vector.detach()
