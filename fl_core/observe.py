"""An ``Observation`` from a researcher's own model, update and images (issue #18).

An inversion attack differentiates the client's training at the *global* weights, the
ones the gradient or delta was computed at. A hand-built observation that hands over the
model after the client trained (an ``optimizer.step()`` later, the natural state of a
research script) makes the attack match the update at the wrong point, and nothing
complains: DLG's PSNR drops from 16 dB to 10 dB on the same batch. So ``observe`` never
reads the model's current parameters: the weights the update is relative to are a
required argument, best a ``snapshot_weights(model)`` taken before training, and a model
passed in their place is refused. The snapshot also checks that it belongs to the
model's architecture (names and shapes).

What the attacker learns beyond the update is still decided in one place,
``make_observation``, from the threat model's grants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .data import Normalization
from .threat import Observation, ThreatModel, make_observation
from .updates import ClientUpdate, LocalTraining, PrivateData, UpdateKind
from .vectors import ParameterLayout, check_vector, model_to_vector


@dataclass(frozen=True)
class WeightSnapshot:
    """A model's trainable parameters at one moment, with the layout they belong to."""

    vector: Tensor
    layout: ParameterLayout


def snapshot_weights(model: nn.Module) -> WeightSnapshot:
    """The model's trainable parameters now (a detached copy): take it before training,
    pass it as ``observe(..., global_weights=snapshot)``."""
    return WeightSnapshot(model_to_vector(model).clone(), ParameterLayout.of(model))


def observe(
    model: nn.Module,
    update: Tensor | Sequence[Tensor] | Mapping[str, Tensor] | ClientUpdate,
    *,
    global_weights: WeightSnapshot | Tensor | Mapping[str, Tensor],
    images: Tensor,
    labels: Tensor | None = None,
    threat_model: ThreatModel | None = None,
    local_training: LocalTraining | None = None,
    kind: UpdateKind | None = None,
    normalization: Normalization | None = None,
    num_classes: int | None = None,
    client_id: int = 0,
) -> Observation:
    """The curious server's view of one client's ``update``, for ``attack.reconstruct``.

    ``model``: the architecture (its current parameters are ignored). ``update``: a flat
    vector, per-parameter tensors in ``model.parameters()`` order (``torch.autograd.grad``'s
    output) or by name, or a ``ClientUpdate``; a gradient by default (``kind``), a
    ``delta`` (w_after − w_before) needs the client's ``local_training``.
    ``global_weights``: the weights the update was computed at — a ``snapshot_weights``
    taken before training, a flat vector or a state dict. ``images`` (and ``labels``): the
    client's private batch in the model's input space; only the side information
    ``threat_model`` grants is derived from it (shape and count by default, labels when
    ``labels_known``). ``normalization``: how ``images`` were normalised (identity when
    they are pixels in [0, 1]); ``num_classes``: the model's output size when None.
    """
    if isinstance(global_weights, nn.Module):
        raise TypeError("observe: global_weights must be the weights the update was computed at "
                        "(snapshot_weights(model) before training, a flat vector or a state dict), not a model: "
                        "a model's current parameters may already be the trained ones")
    layout = ParameterLayout.of(model)
    start = _global_vector(global_weights, layout)
    vector, update_kind, num_samples = _update_vector(update, layout, kind)
    if not isinstance(images, Tensor) or images.dim() < 2 or images.shape[0] < 1:
        raise ValueError(f"observe: images must be a batch [B, ...] with B >= 1, got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    threat = threat_model or ThreatModel()
    if labels is None:
        if threat.labels_known:
            raise ValueError("observe: the threat model grants labels (labels_known) but no labels were given")
        labels = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)  # never read
    elif labels.shape[:1] != images.shape[:1]:
        raise ValueError(f"observe: {labels.shape[0]} labels for {images.shape[0]} images")
    training = local_training or _default_training(update_kind, model, images.shape[0])
    if training.kind != update_kind:
        raise ValueError(f"observe: the update is a {update_kind!r} but local_training ({training.algorithm!r}) "
                         f"produces a {training.kind!r}")
    norm = normalization or Normalization((0.0,) * images.shape[1], (1.0,) * images.shape[1])
    classes = num_classes if num_classes is not None else _output_size(model, images[:1])
    upload = ClientUpdate(client_id, vector, update_kind, num_samples if num_samples is not None else images.shape[0])
    return make_observation(model, start, upload, PrivateData(images, labels), training, threat, norm, classes)


def _global_vector(weights: WeightSnapshot | Tensor | Mapping[str, Tensor], layout: ParameterLayout) -> Tensor:
    if isinstance(weights, WeightSnapshot):
        if weights.layout != layout:
            raise ValueError("observe: global_weights is a snapshot of another architecture (its parameter names "
                             "or shapes differ from the model's)")
        return weights.vector
    if isinstance(weights, Mapping):
        try:
            return layout.flatten({n: t.detach() for n, t in weights.items()})
        except KeyError as exc:
            raise ValueError(f"observe: global_weights {exc.args[0]}") from None
    if not isinstance(weights, Tensor):
        raise TypeError(f"observe: global_weights must be a WeightSnapshot, a flat tensor or a state dict, "
                        f"got {type(weights).__name__}")
    check_vector(weights, layout.dim)
    return weights.detach()


def _update_vector(update: Tensor | Sequence[Tensor] | Mapping[str, Tensor] | ClientUpdate, layout: ParameterLayout,
                   kind: UpdateKind | None) -> tuple[Tensor, UpdateKind, int | None]:
    num_samples = None
    if isinstance(update, ClientUpdate):
        if kind is not None and kind != update.kind:
            raise ValueError(f"observe: kind={kind!r} but the ClientUpdate is a {update.kind!r}")
        vector, kind, num_samples = update.vector, update.kind, update.num_samples
    elif isinstance(update, Tensor):
        vector = update
    elif isinstance(update, Mapping | Sequence):
        vector = layout.flatten(update)
    else:
        raise TypeError(f"observe: update must be a tensor, a sequence or mapping of tensors, or a ClientUpdate, "
                        f"got {type(update).__name__}")
    check_vector(vector, layout.dim)
    kind = kind or "gradient"
    if kind not in ("gradient", "delta"):
        raise ValueError(f"observe: kind must be 'gradient' or 'delta', got {kind!r}")
    return vector.detach(), kind, num_samples


def _default_training(kind: UpdateKind, model: nn.Module, batch: int) -> LocalTraining:
    if kind == "delta":
        raise ValueError("observe: a delta depends on how the client trained; pass local_training=LocalTraining(...) "
                         "(lr, epochs or steps, batch size, optimizer)")
    return LocalTraining(algorithm="fedsgd", batch_size=batch, model_mode="train" if model.training else "eval")


@torch.no_grad()
def _output_size(model: nn.Module, image: Tensor) -> int:
    was = model.training
    model.eval()
    try:
        return int(model(image).shape[-1])
    finally:
        model.train(was)
