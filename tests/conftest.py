"""Shared fixtures; helpers live in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fl_core.data import ImageDataset

from .helpers import shared_assets, synthetic_images

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def assets_root() -> Path:
    root = shared_assets()
    if root is None:
        pytest.skip("shared assets absent: set FEDARENA_DATA to a folder holding datasets/ and weights/")
    return root


@pytest.fixture
def tiny_data() -> ImageDataset:
    return synthetic_images()
