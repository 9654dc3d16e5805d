"""The kinds of run a suite can ask for, by ``task`` name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

TaskFn = Callable[[dict[str, Any], Path, bool], tuple[dict[str, Any], dict[str, Path]]]


def task_function(task: str) -> TaskFn:
    """The function executing ``task`` runs (imported on demand: it pulls in torch and every registry)."""
    if task == "privacy":
        from .privacy import run_privacy

        return run_privacy
    if task == "robustness":
        from .robustness import run_robustness

        return run_robustness
    raise ValueError(f"unknown task {task!r}; known: privacy, robustness")
