"""``--device cpu|cuda|cuda:N|auto``: where a run builds its model and data.

The device is an execution choice, not part of an experiment: it is in neither the run
id nor the configuration digest, and each stored run records the device it ran on.
``auto`` picks CUDA when torch sees a GPU, else the CPU.
"""

from __future__ import annotations

import argparse
import re

import torch

CHOICES = "cpu, cuda, cuda:N or auto"
_PATTERN = re.compile(r"^(cpu|cuda|cuda:\d+|auto)$")


def resolve_device(text: str) -> torch.device:
    """The torch device ``text`` names; ``auto`` → ``cuda`` when available, else ``cpu``.

    Raises ``ValueError`` for a malformed name, or a CUDA device this machine does not have.
    """
    name = text.strip().lower()
    if not _PATTERN.match(name):
        raise ValueError(f"device must be {CHOICES}, got {text!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {text!r} asked for, but torch sees no CUDA device here "
                             f"(torch {torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {text!r} asked for, but there are only {torch.cuda.device_count()} "
                             "CUDA devices (cuda:0 …)")
    return device


def device_argument(text: str) -> str:
    """argparse ``type=``: the resolved device as a string (``cpu``, ``cuda``, ``cuda:1``)."""
    try:
        return str(resolve_device(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """The one ``--device`` option of the CLI and the benchmark scripts (default cpu)."""
    parser.add_argument("--device", type=device_argument, default="cpu", metavar="DEVICE",
                        help=f"where to run: {CHOICES} (default cpu; auto: CUDA when present)")
