"""In-memory image datasets: pixels in [0, 1] plus the normalisation the model sees.

Keeping raw [0, 1] pixels and the per-dataset constants side by side lets metrics undo
normalisation exactly and lets corruptions (blur, noise) act on real pixel values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std``; public knowledge of the data pipeline."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std

    def normalize(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        return x * std + mean

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-channel (low, high) of normalised pixels: the box [0, 1] mapped through."""
        mean, std = self._stats(x)
        return (0 - mean) / std, (1 - mean) / std


@dataclass
class ImageDataset:
    """Images ``[N, C, H, W]`` float32 in [0, 1] and int64 labels ``[N]``."""

    name: str
    images: Tensor
    labels: Tensor
    num_classes: int
    normalization: Normalization
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be [N, C, H, W], got {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )
        if len(self.normalization.mean) != self.images.shape[1]:
            raise ValueError(f"{self.name}: normalisation has {len(self.normalization.mean)} channels, "
                             f"images have {self.images.shape[1]}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: Tensor | list[int]) -> ImageDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageDataset(self.name, self.images[idx], self.labels[idx], self.num_classes,
                            self.normalization, self.classes)

    def normalized(self, indices: Tensor | None = None) -> Tensor:
        x = self.images if indices is None else self.images[indices]
        return self.normalization.normalize(x)

    def to(self, device: str | torch.device) -> ImageDataset:
        """The same dataset on ``device`` (itself when already there): moved once, not per round."""
        if self.images.device == torch.device(device) and self.labels.device == torch.device(device):
            return self
        return ImageDataset(self.name, self.images.to(device), self.labels.to(device), self.num_classes,
                            self.normalization, self.classes)
