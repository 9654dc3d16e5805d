"""Engines: where runs execute. ``local`` (inline, or ``--workers N`` spawned processes) and
``ray`` (``--ray auto``: a local instance with ``--workers`` CPUs; ``--ray ADDRESS``: a cluster;
one task per run). A run trains a round's clients in ``client_workers`` processes of its own
(``fedarena.fl_core.parallel.ClientPool``, started where the run executes; a Ray task reserves a CPU
for each). Each yields ``(spec, result)`` as runs finish; only the driver
(``runner.run_suite``) writes artefacts and the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from ..store import RunResult
from ..suite import RunSpec


class Backend(Protocol):
    """Executes runs somewhere and yields each ``(spec, result)`` as soon as it is done."""

    def run(self, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunResult]]: ...

    def close(self) -> None: ...


def make_backend(workers: int = 1, ray_address: str | None = None, progress: bool = True,
                 device: str = "cpu", client_workers: int = 1) -> Backend:
    """The backend for ``--workers``/``--ray``; each run trains its clients in ``client_workers`` processes."""
    if client_workers < 1:
        raise ValueError(f"--client-workers must be >= 1, got {client_workers}")
    if ray_address:
        from .ray import RayBackend

        return RayBackend(ray_address, device=device, workers=workers, client_workers=client_workers)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    from .local import InlineBackend, ProcessBackend

    return (InlineBackend(progress, device, client_workers) if workers == 1
            else ProcessBackend(workers, device=device, client_workers=client_workers))
