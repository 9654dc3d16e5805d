"""Shared pieces of the robustness benchmark scripts: data, machine description, reports."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fedarena.benchmarks.harness.atomic import write_atomic
from fedarena.fl_core import ImageDataset
from fedarena.fl_core.datasets import load_dataset


def load_mnist(train_size: int | None, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """MNIST from the data root; ``train_size`` keeps a seeded random subset of the 60,000."""
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    if train_size is not None and train_size < len(train):
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:train_size]
        train = train.subset(idx.sort().values)
    return train, test


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}), shared with other jobs; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def today() -> str:
    return dt.datetime.now().isoformat(timespec="minutes")


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """A results table, written atomically: complete or absent."""
    write_atomic(path, "\n".join(lines) + "\n")
