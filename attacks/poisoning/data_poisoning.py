"""Data poisoning: malicious clients change the data they train on (``poison(data, gen)``).

Each class is a ``fedarena.fl_core.simulation.DataAttack``: it returns a new ``ImageDataset``
(the client's own data is never modified in place) and draws any randomness from the
generator the simulation passes, so runs are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from fedarena.fl_core.data import ImageDataset

from ..registry import POISONING_ATTACKS

TriggerPattern = Literal["square", "checkerboard", "cross"]


@POISONING_ATTACKS.register("label_flip")
class LabelFlip:
    """Targeted label flipping: samples of each source class get its target label.

    ``pairs``: ``{source: target}`` or ``[[source, target], …]``; default ``{1: 7}``
    (MUD-HoG's ``Attacker_LabelFlipping1to7``). ``fraction`` of the source samples are
    flipped (default all, as in MUD-HoG), chosen with the round's generator.
    """

    def __init__(self, pairs: dict[int, int] | list[list[int]] | None = None, fraction: float = 1.0) -> None:
        self.pairs = _check_pairs("label_flip", {1: 7} if pairs is None else pairs)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"label_flip: fraction must be in [0, 1], got {fraction}")
        self.fraction = float(fraction)

    def poison(self, data: ImageDataset, generator: torch.Generator) -> ImageDataset:
        _check_classes("label_flip", self.pairs, data.num_classes)
        labels = data.labels.clone()
        source = torch.tensor(list(self.pairs), dtype=labels.dtype, device=labels.device)
        target = torch.tensor(list(self.pairs.values()), dtype=labels.dtype, device=labels.device)
        hit = (data.labels.unsqueeze(1) == source).nonzero()  # [k, 2]: sample, pair index
        if self.fraction < 1.0 and len(hit):
            keep = torch.randperm(len(hit), generator=generator)[: round(self.fraction * len(hit))].to(hit.device)
            hit = hit[keep.sort().values]
        labels[hit[:, 0]] = target[hit[:, 1]]
        return _with(data, data.images, labels)

    @property
    def targets(self) -> dict[int, int]:
        """Source class → target class, for attack-success-rate scoring."""
        return dict(self.pairs)


@POISONING_ATTACKS.register("multi_label_flip")
class MultiLabelFlip(LabelFlip):
    """Several source classes to one target, MUD-HoG's ``Attacker_MultiLabelFlipping``
    (default {1, 2, 3} → 7)."""

    def __init__(self, sources: list[int] | None = None, target: int = 7, fraction: float = 1.0) -> None:
        sources = [1, 2, 3] if sources is None else list(sources)
        if not sources:
            raise ValueError("multi_label_flip: sources must not be empty")
        if target in sources:
            raise ValueError(f"multi_label_flip: target {target} is also a source")
        super().__init__({int(s): int(target) for s in sources}, fraction)


@POISONING_ATTACKS.register("backdoor")
class Backdoor:
    """Pixel-pattern backdoor (BadNets, Gu et al. 2017; the FL form of Bagdasaryan et al.
    2020): a ``fraction`` of the client's samples get the trigger stamped in and the
    label ``target``.

    Trigger: a ``size``×``size`` patch ``margin`` pixels from the bottom-right corner,
    every channel set to ``value`` (in [0, 1] pixel units) where ``pattern`` is on:
    ``square`` (all of the patch), ``checkerboard``, or ``cross`` (middle row and
    column). Defaults: ``square``, 3×3, margin 1, white, target 0, fraction 0.5 (MUD-HoG's
    ``Attacker_Backdoor`` poisons half of each batch). For model replacement, add a
    ``model_replacement`` update attack to the same adversary.
    """

    def __init__(self, target: int = 0, fraction: float = 0.5, pattern: TriggerPattern = "square",
                 size: int = 3, margin: int = 1, value: float = 1.0) -> None:
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ValueError(f"backdoor: target must be a non-negative class index, got {target!r}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"backdoor: fraction must be in (0, 1], got {fraction}")
        if pattern not in ("square", "checkerboard", "cross"):
            raise ValueError(f"backdoor: pattern must be 'square', 'checkerboard' or 'cross', got {pattern!r}")
        if size < 1 or margin < 0:
            raise ValueError(f"backdoor: size must be >= 1 and margin >= 0, got {size}, {margin}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"backdoor: value must be a pixel value in [0, 1], got {value}")
        self.target, self.fraction, self.pattern = target, float(fraction), pattern
        self.size, self.margin, self.value = size, margin, float(value)

    def trigger_mask(self, height: int, width: int, device: torch.device | str | None = None) -> Tensor:
        """Boolean ``[H, W]`` mask of the trigger's pixels (on ``device``, default CPU)."""
        if self.size + self.margin > min(height, width):
            raise ValueError(f"backdoor: a {self.size}px trigger {self.margin}px from the corner does not fit "
                             f"{height}x{width} images")
        patch = torch.ones(self.size, self.size, dtype=torch.bool)
        if self.pattern == "checkerboard":
            idx = torch.arange(self.size)
            patch = (idx.unsqueeze(1) + idx.unsqueeze(0)) % 2 == 0
        elif self.pattern == "cross":
            patch = torch.zeros_like(patch)
            patch[self.size // 2, :] = True
            patch[:, self.size // 2] = True
        mask = torch.zeros(height, width, dtype=torch.bool)
        top, left = height - self.margin - self.size, width - self.margin - self.size
        mask[top: top + self.size, left: left + self.size] = patch
        return mask.to(device) if device is not None else mask

    def apply_trigger(self, images: Tensor) -> Tensor:
        """A copy of ``images`` ``[N, C, H, W]`` (pixels in [0, 1]) with the trigger stamped in."""
        out = images.clone()
        mask = self.trigger_mask(images.shape[-2], images.shape[-1], images.device)
        out[..., mask] = self.value
        return out

    def poison(self, data: ImageDataset, generator: torch.Generator) -> ImageDataset:
        if self.target >= data.num_classes:
            raise ValueError(f"backdoor: target {self.target} is not a class of {data.name} "
                             f"({data.num_classes} classes)")
        count = round(self.fraction * len(data))
        chosen = torch.randperm(len(data), generator=generator)[:count].to(data.labels.device)
        images, labels = data.images.clone(), data.labels.clone()
        images[chosen] = self.apply_trigger(data.images[chosen])
        labels[chosen] = self.target
        return _with(data, images, labels)


def _check_pairs(name: str, pairs: Mapping[int, int] | Sequence[Sequence[int]]) -> dict[int, int]:
    items = list(pairs.items()) if isinstance(pairs, Mapping) else [tuple(p) for p in pairs]
    out: dict[int, int] = {}
    for item in items:
        if len(item) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in item):
            raise ValueError(f"{name}: each pair must be (source, target) class indices, got {item!r}")
        source, target = item
        if source == target:
            raise ValueError(f"{name}: pair {source}→{target} flips nothing")
        if source in out:
            raise ValueError(f"{name}: source class {source} appears twice")
        out[source] = target
    if not out:
        raise ValueError(f"{name}: no (source, target) pairs given")
    return out


def _check_classes(name: str, pairs: Mapping[int, int], num_classes: int) -> None:
    bad = sorted({c for pair in pairs.items() for c in pair if c >= num_classes})
    if bad:
        raise ValueError(f"{name}: classes {bad} do not exist ({num_classes} classes)")


def _with(data: ImageDataset, images: Tensor, labels: Tensor) -> ImageDataset:
    return ImageDataset(data.name, images, labels, data.num_classes, data.normalization, data.classes)
