"""``fedarena run --ray ADDRESS``: one Ray task per run, results written by the driver.

Ray is an optional extra (``pip install 'fedarena[ray]'``); every node of the cluster
needs FedArena installed (and the data root, for datasets that need files). Tasks
return the same ``RunResult`` as local workers, artefacts included as bytes, so the
driver writes artefacts and store rows exactly as for a local suite.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..store import RunResult

if TYPE_CHECKING:
    from ..suite import RunSpec


class RayUnavailableError(RuntimeError):
    """``--ray`` was asked for but Ray cannot be imported."""


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"--ray needs the optional Ray extra, which is not installed ({exc}); "
            "install it with: pip install 'fedarena[ray]'") from None
    return ray


class RayBackend:
    """Submits every run as a task (``num_cpus`` each) and yields results as they finish."""

    def __init__(self, address: str, *, num_cpus: float = 1.0, threads: int = 1, ray: Any = None,
                 device: str = "cpu") -> None:
        self.ray = ray if ray is not None else import_ray()
        if not self.ray.is_initialized():
            self.ray.init(address=address)
        self.threads, self.device = threads, device
        from ..execute import execute_run  # torch and the registries: only once Ray is there

        self._remote = self.ray.remote(num_cpus=num_cpus)(execute_run)
        self._pending: list[Any] = []

    def run(self, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunResult]]:
        refs = {self._remote.remote(spec, False, self.threads, self.device): spec for spec in specs}
        self._pending = list(refs)
        while refs:
            done, _ = self.ray.wait(list(refs), num_returns=1)
            for ref in done:
                spec = refs.pop(ref)
                self._pending = list(refs)
                try:
                    result = self.ray.get(ref)
                except Exception as exc:  # the task itself died (node lost, OOM): record it
                    now = time.time()
                    result = RunResult(spec.run_id, "failed", {}, {}, f"RayTaskError: {exc}", now, now, "ray")
                yield spec, result

    def close(self) -> None:
        for ref in self._pending:
            try:
                self.ray.cancel(ref)
            except Exception:
                pass
        self._pending = []
