"""What a curious server sees of one client in one round (DESIGN: ``Observation``).

Every piece of side information is granted by an explicit ``ThreatModel`` flag, and
``make_observation`` is the single place that decides what crosses from the client's
round into the attacker's hands: the private batch itself never does. The upload is
passed on as a sanitised copy: its vector, kind, client id and number of samples
always (the server needs them to aggregate), its ``metadata`` (training loss, local
steps, a defense's parameters) and post-training ``buffers`` (BatchNorm running
statistics) only when granted, as breaching gates the latter behind ``provide_buffers``.

A protocol may keep parameters of the client's model private (HyperFL: the embedding
and the head). Their *names* are architecture, always visible (``private_names``); the
observed model holds them frozen at the server's values (its public initialisation), so
its trainable parameters are exactly the uploaded layout. Their *values* as the client
used them cross only under the oracle grants ``embedding_known`` / ``head_known``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .data import Normalization
from .updates import ClientUpdate, LocalTraining, PrivateData
from .vectors import vector_to_model


@dataclass(frozen=True)
class ThreatModel:
    """Grants of side information to the attacker; every result records them.

    ``training_metadata_known`` grants the update's ``metadata`` (it holds the training
    loss, a function of the private batch); ``buffers_known`` the client's buffers after
    local training. ``dropout_masks_known`` is an *oracle*, never a realistic grant: the
    masks the client's dropout sites actually drew (``PrivateData.dropout_masks``), for
    research upper bounds such as a "well-informed" Dropout Inversion baseline.
    ``embedding_known`` and ``head_known`` are oracles of the same kind, for protocols that
    keep parts of the client's model private (HyperFL): the client's private embedding,
    and its private classifier head, as it used them for the upload
    (``PrivateData.parameters``) — upper bounds on what an attacker who recovered them
    could do, never realistic grants.
    """

    labels_known: bool = False
    num_images_known: bool = True
    bn_statistics_known: bool = False
    local_hyperparameters_known: bool = True
    model_mode_known: bool = True
    training_metadata_known: bool = False
    buffers_known: bool = False
    dropout_masks_known: bool = False
    embedding_known: bool = False
    head_known: bool = False

    def flags(self) -> dict[str, bool]:
        return asdict(self)


@dataclass(frozen=True)
class Observation:
    """One client's upload in one round, plus only what the threat model grants.

    ``model`` carries the architecture and the *global* parameters the client started
    from. ``update`` is the sanitised upload (see the module note). ``bn_statistics`` are
    per-BatchNorm-layer (mean, var) of the private batch at that layer's input, as
    assumed by BN-prior attacks. ``dropout_masks`` (oracle grant) are ``{site: [mask per
    forward]}`` as ``fedarena.fl_core.models.dropout.dropout_masks`` replays them.
    ``private_names``: the parameters of ``model`` the client keeps private (frozen in
    ``model`` at the server's values, not part of the update); ``private_embedding`` and
    ``private_head`` (oracle grants): ``{name: value}`` of those the client really used.
    """

    model: nn.Module
    update: ClientUpdate
    threat_model: ThreatModel
    input_shape: tuple[int, ...]
    num_classes: int
    normalization: Normalization
    local_training: LocalTraining | None = None
    model_mode: Literal["train", "eval"] | None = None
    labels: Tensor | None = None
    num_images: int | None = None
    bn_statistics: tuple[tuple[Tensor, Tensor], ...] | None = None
    dropout_masks: dict[str, list[Tensor]] | None = None
    private_names: tuple[str, ...] = ()
    private_embedding: dict[str, Tensor] | None = None
    private_head: dict[str, Tensor] | None = None

    @property
    def private_parameters(self) -> dict[str, Tensor]:
        """Every granted private parameter, ``{name: value}`` (empty without grants)."""
        return {**(self.private_embedding or {}), **(self.private_head or {})}


def make_observation(
    model: nn.Module,
    global_vector: Tensor,
    update: ClientUpdate,
    private: PrivateData,
    training: LocalTraining,
    threat_model: ThreatModel,
    normalization: Normalization,
    num_classes: int,
) -> Observation:
    """Build the attacker's view; ``private`` is read only to derive granted side info.

    ``global_vector`` is the server's shared vector; parameters the client keeps private
    (``private.parameters``) are frozen in the observed copy first, so it fills the rest."""
    observed = copy.deepcopy(model)
    roles = private.parameters or {}
    names = tuple(n for n, _ in observed.named_parameters() if any(n in group for group in roles.values()))
    unknown = sorted({n for group in roles.values() for n in group} - set(names))
    if unknown:
        raise ValueError(f"the client's private parameters {unknown} are not parameters of the model")
    owned = dict(observed.named_parameters())
    for name in names:
        owned[name].requires_grad_(False)
    vector_to_model(global_vector, observed)
    observed.eval()
    bn_stats = _batchnorm_statistics(observed, private.inputs) if threat_model.bn_statistics_known else None
    masks = private.dropout_masks if threat_model.dropout_masks_known else None
    return Observation(
        model=observed,
        update=_sanitised(update, threat_model),
        threat_model=threat_model,
        input_shape=tuple(private.inputs.shape[1:]),
        num_classes=num_classes,
        normalization=normalization,
        local_training=training if threat_model.local_hyperparameters_known else None,
        model_mode=training.model_mode if threat_model.model_mode_known else None,
        labels=private.labels.clone() if threat_model.labels_known else None,
        num_images=int(private.inputs.shape[0]) if threat_model.num_images_known else None,
        bn_statistics=bn_stats,
        dropout_masks=None if masks is None else {site: [m.detach().clone() for m in ms] for site, ms in masks.items()},
        private_names=names,
        private_embedding=_granted(roles, "embedding") if threat_model.embedding_known else None,
        private_head=_granted(roles, "head") if threat_model.head_known else None,
    )


def _granted(roles: dict[str, dict[str, Tensor]], role: str) -> dict[str, Tensor] | None:
    """Copies of the private parameters of ``role`` (None when the client has none)."""
    group = roles.get(role)
    return None if not group else {name: value.detach().clone() for name, value in group.items()}


def _sanitised(update: ClientUpdate, threat_model: ThreatModel) -> ClientUpdate:
    """A copy of ``update`` holding only what the server needs and what ``threat_model`` grants."""
    return ClientUpdate(
        client_id=update.client_id,
        vector=update.vector.detach().clone(),
        kind=update.kind,
        num_samples=update.num_samples,
        metadata=copy.deepcopy(update.metadata) if threat_model.training_metadata_known else {},
        buffers=update.buffers.detach().clone()
        if threat_model.buffers_known and update.buffers is not None else None,
    )


@torch.no_grad()
def _batchnorm_statistics(model: nn.Module, inputs: Tensor) -> tuple[tuple[Tensor, Tensor], ...]:
    stats: list[tuple[Tensor, Tensor]] = []

    def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0]
        dims = [0] + list(range(2, x.dim()))
        stats.append((x.mean(dims), x.var(dims, unbiased=False)))

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    handles = [m.register_forward_pre_hook(hook) for m in bns]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    return tuple(stats)
