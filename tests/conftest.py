"""Shared fixtures; helpers live in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fedarena.fl_core.data import ImageDataset

from .helpers import shared_assets, synthetic_images

os.environ.setdefault("MPLBACKEND", "Agg")
# Test tensors are small: one intra-op thread is as fast and avoids oversubscribing the
# cores when tests start worker processes (observed 10-40x slowdowns with 2 threads each).
torch.set_num_threads(1)


@pytest.fixture
def assets_root() -> Path:
    root = shared_assets()
    if root is None:
        pytest.skip("shared assets absent: set FEDARENA_DATA to a folder holding datasets/ and weights/")
    return root


@pytest.fixture
def tiny_data() -> ImageDataset:
    return synthetic_images()
