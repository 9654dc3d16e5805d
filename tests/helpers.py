"""Small synthetic data and tiny models for fast tests (no files needed)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from fl_core.data import ImageDataset, Normalization


def shared_assets() -> Path | None:
    """The data root with the shared assets, or None when it is absent."""
    root = os.environ.get("FEDARENA_DATA")
    if root and Path(root, "datasets").is_dir():
        return Path(root)
    fallback = Path(__file__).resolve().parents[2] / "shared" / "assets"
    return fallback if (fallback / "datasets").is_dir() else None


def synthetic_images(n: int = 64, channels: int = 1, size: int = 8, classes: int = 4, seed: int = 0) -> ImageDataset:
    """Separable synthetic classes: a fixed random prototype per class plus per-sample noise."""
    labels = torch.arange(n) % classes
    prototypes = torch.rand(classes, channels, size, size, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(seed)
    images = (0.7 * prototypes[labels] + 0.3 * torch.rand(n, channels, size, size, generator=gen)).clamp(0, 1)
    norm = Normalization((0.5,) * channels, (0.25,) * channels)
    return ImageDataset("synthetic", images, labels, classes, norm)


def tiny_mlp(in_features: int = 64, classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, classes))


def tiny_cnn_bn(channels: int = 1, classes: int = 4, size: int = 8, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * size * size, classes))
