"""The kinds of run a suite can ask for, by ``task`` name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# (config, workdir, progress, device) -> (metrics, artefact files); the device is not part of the config.
TaskFn = Callable[[dict[str, Any], Path, bool, torch.device], tuple[dict[str, Any], dict[str, Path]]]


def task_function(task: str) -> TaskFn:
    """The function executing ``task`` runs (imported on demand: it pulls in torch and every registry)."""
    if task == "privacy":
        from .privacy import run_privacy

        return run_privacy
    if task == "robustness":
        from .robustness import run_robustness

        return run_robustness
    raise ValueError(f"unknown task {task!r}; known: privacy, robustness")
