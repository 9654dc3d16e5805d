"""A privacy defense applied to a researcher's own update (issue #18).

The registered defenses (``clipping``, ``gaussian_noise``, ``laplace_noise``, ``pruning``,
``quantization``, local ``dp_fedavg``) are transforms of one client's upload; the
simulation calls each with its own generator. ``apply_defense`` does the same on a plain
vector with the generator the simulation would give that client in that round
(``torch_generator(seed, "transform", i, client_id, round)``), so the noise matches a
simulated run's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.simulation import UpdateTransform
from fedarena.fl_core.updates import ClientUpdate, UpdateKind

from ..registry import ClientDefense


def apply_defense(
    defense: ClientDefense | UpdateTransform | Sequence[UpdateTransform],
    update: Tensor,
    *,
    kind: UpdateKind = "delta",
    num_samples: int = 1,
    client_id: int = 0,
    round: int = 0,
    seed: int = 0,
) -> Tensor:
    """``update`` (a flat ``[d]`` vector, or ``[n, d]`` for clients ``client_id``,
    ``client_id + 1``, …) after the defense's upload transforms, in their order.

    ``defense``: a registered factory's result (``clipping(max_norm=1.0)``,
    ``pruning(fraction=0.9)``…), one transform (``Clipping(1.0)``) or a list of them.
    Defenses that change local training (``dp_sgd``) or the server (central
    ``dp_fedavg``) cannot be applied to a finished update and are refused.
    """
    transforms = _transforms(defense)
    if not isinstance(update, Tensor) or update.dim() not in (1, 2) or not update.is_floating_point():
        shape = tuple(update.shape) if isinstance(update, Tensor) else type(update).__name__
        raise ValueError(f"apply_defense: update must be a float [d] vector or [n, d] stack, got {shape}")
    if update.dim() == 2:
        return torch.stack([apply_defense(transforms, row, kind=kind, num_samples=num_samples, client_id=client_id + i,
                                          round=round, seed=seed) for i, row in enumerate(update)])
    upload = ClientUpdate(client_id, update.detach(), kind, num_samples)
    for i, transform in enumerate(transforms):
        upload = transform(upload, torch_generator(seed, "transform", i, client_id, round))
    return upload.vector


def _transforms(defense: ClientDefense | UpdateTransform | Sequence[UpdateTransform]) -> list[UpdateTransform]:
    if isinstance(defense, ClientDefense):
        if defense.trainer is not None:
            raise ValueError(f"apply_defense: this defense trains the client ({type(defense.trainer).__name__}); "
                             "it changes how the update is computed, not a finished update")
        if defense.aggregator is not None:
            raise ValueError(f"apply_defense: this defense acts at the server ({type(defense.aggregator).__name__}); "
                             "apply its aggregator to the update stack instead")
        return list(defense.transforms)
    if callable(defense):
        return [defense]
    if isinstance(defense, Sequence) and all(callable(t) for t in defense):
        return list(defense)
    raise TypeError(f"apply_defense: expected a ClientDefense or upload transform(s), got {type(defense).__name__}")
