"""Small synthetic data and tiny models for fast tests (no files needed)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from fedarena.fl_core.data import ImageDataset, Normalization

if TYPE_CHECKING:
    from fedarena.benchmarks.harness.suite import Suite


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


def suite_failing_at_run_time(text: str, file: str, block: int, indices: list[int]) -> Suite:
    """``parse_suite(text)``, then block ``block``'s dataset ``indices`` replaced by ones that validation
    would refuse (as if the data changed after it): that block's runs fail when they run.

    Validation catches every mistake a suite can hold, so a test of how a run's failure is
    recorded and reported needs one made behind its back.
    """
    from fedarena.benchmarks.harness.ids import run_id
    from fedarena.benchmarks.harness.suite import RunSpec, parse_suite

    suite = parse_suite(text, file)
    runs = []
    for spec in suite.runs:
        if spec.meta["block"] == block:
            config = {**spec.config, "dataset": {**spec.config["dataset"], "indices": list(indices)}}
            spec = RunSpec(run_id(config), spec.suite, config, spec.meta)
        runs.append(spec)
    return dataclasses.replace(suite, runs=tuple(runs))
