"""What the inversion benchmarks share: CIFAR-10 images, one observed client round,
scoring, and the Markdown result file (command, machine, date, then the numbers)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from fedarena.benchmarks.harness.atomic import write_atomic
from fedarena.benchmarks.metrics.privacy import PrivacyScores, score_privacy
from fedarena.benchmarks.reproductions import RESULTS, command
from fedarena.fl_core.client import GlobalState, train_client
from fedarena.fl_core.data import ImageDataset, Normalization
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.threat import Observation, ThreatModel, make_observation
from fedarena.fl_core.updates import LocalTraining, PrivateData
from fedarena.fl_core.vectors import model_to_vector

FIGURES = RESULTS / "figures"
# DLG's reference feeds the model ToTensor() pixels in [0, 1], without normalisation.
PIXELS = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def cifar10_test(indices: Sequence[int], normalization: Normalization | None = None) -> ImageDataset:
    """CIFAR-10 test images ``indices`` (from the data root); optionally another normalisation."""
    data = load_dataset("cifar10", split="test").subset(list(indices))
    return data if normalization is None else dataclasses.replace(data, normalization=normalization)


def observe(model: nn.Module, data: ImageDataset, training: LocalTraining,
            threat: ThreatModel | None = None, seed: int = 0) -> tuple[Observation, PrivateData]:
    """Run one honest client round on ``data`` and return the curious server's view and
    (separately, for scoring only) the private batch the client used."""
    threat = threat or ThreatModel()
    state = GlobalState(model_to_vector(model))
    update, private = train_client(model, state, 0, data, training, torch_generator(seed, "benchmark", "client"))
    obs = make_observation(model, state.params, update, private, training, threat, data.normalization,
                           data.num_classes)
    return obs, private


def score(images: torch.Tensor, labels: torch.Tensor, private: PrivateData,
          normalization: Normalization) -> PrivacyScores:
    """The privacy task's scoring (``fedarena.benchmarks.metrics.privacy.score_privacy``) of one attacked batch."""
    return score_privacy(images, private.inputs, normalization, labels, private.labels)


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def header(title: str, module: str, argv: Sequence[str] | None) -> list[str]:
    return [
        f"# {title}", "",
        f"- command: `{command(module, list(argv) if argv is not None else None)}`",
        f"- machine: {os.cpu_count()} CPU cores (shared with other jobs while this ran), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}",
        f"- date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}", "",
    ]


def write_result(name: str, lines: list[str]) -> Path:
    return write_atomic(RESULTS / f"{name}.md", "\n".join(lines) + "\n")


class Stopwatch:
    """``with Stopwatch() as t: ...; t.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def log(message: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)
