"""Builders shared by the privacy and robustness tasks, all by registry name.

A resolved run configuration (see ``suite``) names every component; these turn the
names into objects with the run's seed. Nothing here knows a particular attack or
defense: a new one is a registry entry and the harness picks it up.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from fedarena.defenses.registry import AGGREGATORS, PRIVACY_DEFENSES, ClientDefense
from fedarena.fl_core import Client, FederationConfig, ImageDataset, LocalTraining, derive_seed, torch_generator
from fedarena.fl_core.aggregation import Aggregator
from fedarena.fl_core.client import LocalTrainer
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model
from fedarena.fl_core.parallel import workers_refuse
from fedarena.fl_core.partition import partition
from fedarena.fl_core.protocol import PROTOCOLS, FLProtocol

from ..params import build_component


def load_data(spec: dict[str, Any], seed: int) -> ImageDataset:
    """The dataset split a run uses, restricted to ``indices`` or a seeded ``size`` subset."""
    data = load_dataset(spec["name"], split=spec["split"], **spec["params"])
    idx = subset_indices(spec, len(data), seed)
    return data if idx is None else data.subset(idx)


def subset_indices(spec: dict[str, Any], available: int, seed: int) -> torch.Tensor | list[int] | None:
    """The samples of a split of ``available`` a run keeps (None: all); the suite validator
    asks the same question before any run, with the size from ``dataset_facts``."""
    if spec.get("indices") is not None:
        bad = [i for i in spec["indices"] if i >= available]
        if bad:
            raise ValueError(f"dataset {spec['name']!r} ({spec['split']}) has {available} samples; "
                             f"indices {bad[:5]} are out of range")
        return spec["indices"]
    if spec.get("size") is not None:
        if spec["size"] > available:
            raise ValueError(f"dataset {spec['name']!r} ({spec['split']}) has {available} samples, "
                             f"fewer than size={spec['size']}")
        idx = torch.randperm(available, generator=torch_generator(seed, "data", spec["split"]))[: spec["size"]]
        return idx.sort().values
    return None


def build_global_model(spec: dict[str, Any], data: ImageDataset, seed: int) -> nn.Module:
    return build_model(spec["name"], data.num_classes, data.input_shape, seed=seed, **spec["params"])


def build_protocol(fed: dict[str, Any]) -> FLProtocol:
    """The run's protocol (``federation.protocol``; FedSGD/FedAvg when the suite names none).
    One instance per run: a protocol remembers its federation's model layout."""
    spec = fed.get("protocol") or {"name": "fedavg", "params": {}}
    return build_component(PROTOCOLS, spec["name"], spec["params"], {})


def local_training(fed: dict[str, Any]) -> LocalTraining:
    return LocalTraining(**fed["local"])


def federation_config(fed: dict[str, Any], seed: int, rounds: int | None = None) -> FederationConfig:
    return FederationConfig(rounds=rounds if rounds is not None else fed["rounds"],
                            clients_per_round=fed["clients_per_round"], local=local_training(fed),
                            server_lr=fed["server_lr"], seed=seed, eval_every=fed["eval_every"])


CLIENT_WORKERS_ENV = "FEDARENA_CLIENT_WORKERS"
_CLIENT_WORKERS: contextvars.ContextVar[int | None] = contextvars.ContextVar("fedarena_client_workers",
                                                                             default=None)


def client_workers() -> int:
    """Client worker processes per federation, default 1.

    An execution setting like ``--device``, not part of the run id (results are identical
    for every N). A suite run gets it from ``run_suite`` (``--client-workers N``, else the
    suite's ``engine.client_workers``), set around the task by ``execute_run`` with
    ``using_client_workers``; a task called directly (a reproduction script) reads
    ``FEDARENA_CLIENT_WORKERS`` from the environment.
    """
    chosen = _CLIENT_WORKERS.get()
    if chosen is not None:
        return chosen
    value = os.environ.get(CLIENT_WORKERS_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{CLIENT_WORKERS_ENV} must be a whole number >= 1, got {value!r}")
    return int(value)


@contextlib.contextmanager
def using_client_workers(workers: int | None) -> Iterator[None]:
    """Inside the block, ``client_workers()`` is ``workers`` (None: leave it to the environment)."""
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"client_workers must be a whole number >= 1, got {workers!r}")
    token = _CLIENT_WORKERS.set(workers)
    try:
        yield
    finally:
        _CLIENT_WORKERS.reset(token)


def client_parallelism(trainer: LocalTrainer) -> dict[str, int]:
    """``Simulation``'s ``client_workers`` and ``client_threads`` for a run training with ``trainer``.

    The run's torch threads are shared out over its client workers (at least one each).
    A trainer that workers cannot run (a stateful object: DP-SGD) trains in process, and
    the run says so in its stored ``warnings`` rather than falling back silently.
    """
    workers = client_workers()
    refused = workers_refuse(trainer) if workers > 1 else None
    if refused:
        warnings.warn(f"client_workers={workers} not used: {refused}; this run's clients trained in process",
                      RuntimeWarning, stacklevel=2)
        workers = 1
    return {"client_workers": workers, "client_threads": max(1, torch.get_num_threads() // workers)}


def federation_context(fed: dict[str, Any], seed: int, *keys: object) -> dict[str, Any]:
    """Values a factory may take from the run, by parameter name (mirrors ``suite._fed_context``)."""
    per_round = fed["clients_per_round"] or fed["clients"]
    return {"num_clients": fed["clients"], "clients_per_round": per_round, "rounds": fed["rounds"],
            "planned_rounds": fed["rounds"], "seed": component_seed(seed, *keys)}


def component_seed(seed: int, *keys: object) -> int:
    """The ``seed`` argument a component gets: derived from the run's seed, and 32-bit so
    that it also suits numpy and scikit-learn (``random_state`` < 2**32)."""
    return derive_seed(seed, *keys) % 2**32


def split_clients(data: ImageDataset, fed: dict[str, Any], seed: int) -> list[Client]:
    """Partition ``data`` over the federation's (honest) clients with the configured partitioner."""
    part = fed["partition"]
    parts = partition(part["name"], data.labels, fed["clients"], seed, **part["params"])
    return [Client(cid, data.subset(idx)) for cid, idx in enumerate(parts)]


def build_defense(spec: dict[str, Any], fed: dict[str, Any], seed: int) -> tuple[ClientDefense, Aggregator | None]:
    """(client-side defense, server aggregator) for a resolved defense; ``none`` gives neither."""
    if spec["name"] == "none":
        return ClientDefense(), None
    context = federation_context(fed, seed, "defense")
    if spec.get("kind", "privacy") == "aggregator":
        return ClientDefense(), build_component(AGGREGATORS, spec["name"], spec["params"], context)
    defense = build_component(PRIVACY_DEFENSES, spec["name"], spec["params"], context)
    if not isinstance(defense, ClientDefense):
        raise TypeError(f"privacy defense {spec['name']!r} returned {type(defense).__name__}, not a ClientDefense")
    return defense, defense.aggregator
