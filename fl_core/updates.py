"""What a client does (``LocalTraining``), what it uploads (``ClientUpdate``) and the
private data it used (``PrivateData``), which only the harness may see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

UpdateKind = Literal["gradient", "delta"]


@dataclass(frozen=True)
class LocalTraining:
    """How a client trains in one round.

    ``fedsgd``: one gradient of one batch of ``batch_size`` samples (kind ``gradient``).
    ``fedavg``: ``epochs`` passes (or exactly ``steps`` steps when given) of ``optimizer``
    with learning rate ``lr`` over shuffled batches (kind ``delta`` = w_after − w_before).
    ``model_mode`` is the mode the client's model is in while it computes (dropout,
    BatchNorm behave differently in train and eval mode).
    """

    algorithm: Literal["fedsgd", "fedavg"] = "fedavg"
    lr: float = 0.01
    epochs: int = 1
    steps: int | None = None
    batch_size: int = 32
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    model_mode: Literal["train", "eval"] = "train"

    def __post_init__(self) -> None:
        if self.algorithm not in ("fedsgd", "fedavg"):
            raise ValueError(f"LocalTraining.algorithm must be 'fedsgd' or 'fedavg', got {self.algorithm!r}")
        if not self.lr > 0:
            raise ValueError(f"LocalTraining.lr must be > 0, got {self.lr}")
        if self.epochs < 1:
            raise ValueError(f"LocalTraining.epochs must be >= 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"LocalTraining.steps must be >= 1 or None, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"LocalTraining.batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"LocalTraining.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.model_mode not in ("train", "eval"):
            raise ValueError(f"LocalTraining.model_mode must be 'train' or 'eval', got {self.model_mode!r}")

    @property
    def kind(self) -> UpdateKind:
        return "gradient" if self.algorithm == "fedsgd" else "delta"


@dataclass
class ClientUpdate:
    """Everything that leaves a client in one round.

    ``vector`` covers the model's trainable parameters in ``ParameterLayout`` order.
    ``buffers`` carries float buffers after local training (BatchNorm running
    statistics) so the server can average them as plain FedAvg does; aggregators and
    attacks never touch it. ``metadata`` holds protocol facts (local steps, loss),
    never data.
    """

    client_id: int
    vector: Tensor
    kind: UpdateKind
    num_samples: int
    metadata: dict[str, Any] = field(default_factory=dict)
    buffers: Tensor | None = None


@dataclass
class PrivateData:
    """The batch(es) a client trained on: normalised inputs in the order first used.

    Returned beside the update and kept by the harness for scoring; an attack never
    receives it (see ``Observation``). ``dropout_masks`` are the masks the client's
    dropout sites actually used (``fedarena.fl_core.models.dropout``): ``{site: [mask per
    forward]}``, one forward per local step, rows in that step's batch order; None when
    the model had no active dropout. ``parameters`` are the client's private parameters
    (not in its upload) as it used them for that upload, ``{role: {parameter name:
    value}}`` with roles such as ``"embedding"`` and ``"head"`` (HyperFL records them;
    names are the server model's): ground truth for scoring, and what the
    ``embedding_known`` / ``head_known`` oracle grants hand over.
    """

    inputs: Tensor
    labels: Tensor
    dropout_masks: dict[str, list[Tensor]] | None = None
    parameters: dict[str, dict[str, Tensor]] | None = None
