"""Executing one run, anywhere: in the driver, in a worker process or as a Ray task.

``execute_run`` never raises for a failing run: the error (with its traceback) comes
back in the ``RunResult`` so the suite records it and goes on. Artefacts are written
to a private temporary folder and returned as bytes; only the driver writes into the
output folder and the store.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

from fedarena.fl_core import derive_seed

from .store import RunResult
from .suite import RunSpec
from .tasks import task_function
from .tasks.common import using_client_workers

MAX_WARNINGS = 20


def execute_run(spec: RunSpec, progress: bool = False, threads: int | None = None, device: str = "cpu",
                client_workers: int | None = None) -> RunResult:
    """Run ``spec`` on ``device`` and return its metrics and artefacts (or its error).

    ``client_workers``: processes that train a round's clients (``tasks.common.client_workers``;
    None leaves it to ``FEDARENA_CLIENT_WORKERS``); ``threads`` is the run's torch thread
    count, which the task shares out over them.
    """
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    started = time.time()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    seed = spec.config["seed"]
    # Components draw from their own derived streams; the global RNGs are seeded too so a
    # component that uses them is still reproducible, whatever ran before in this process.
    torch.manual_seed(derive_seed(seed, "global", "torch"))
    np.random.seed(derive_seed(seed, "global", "numpy") % 2**32)
    random.seed(derive_seed(seed, "global", "random"))
    try:
        with warnings.catch_warnings(record=True) as caught, \
                tempfile.TemporaryDirectory(prefix=f"fedarena-{spec.run_id}-") as tmp, \
                using_client_workers(client_workers):
            warnings.simplefilter("always")
            metrics, files = task_function(spec.config["task"])(spec.config, Path(tmp), progress, torch.device(device))
            artefacts = {name: Path(path).read_bytes() for name, path in files.items()}
        notes = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
        if notes:
            metrics["warnings"] = notes[:MAX_WARNINGS]
        return RunResult(spec.run_id, "ok", metrics, artefacts, None, started, time.time(), worker, device)
    except Exception as exc:  # a failing run is a result, not a crash of the suite
        error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
        return RunResult(spec.run_id, "failed", {}, {}, error, started, time.time(), worker, device)
