"""Build a poisoned federation: partition the data, assign roles, wire the attacks.

Roles are drawn with the seed: each attack group takes its count of clients (role =
the attack's registry name), then the unreliable clients; the rest are honest. Each
group is one colluding ``Adversary`` (a data attack and/or an update attack). Unreliable
clients are benign: a fraction of their data is degraded with ``fedarena.fl_core.corruptions``
and, optionally, they keep only part of it (MUD-HoG's unreliable client trains on
~30 % of its batches, ``unreliable_fracTrain``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fedarena.attacks.registry import POISONING_ATTACKS
from fedarena.benchmarks.metrics.robustness import attack_success_rate, detection_scores, flatten_scores
from fedarena.fl_core import Adversary, Client, FederationConfig, History, ImageDataset, Simulation
from fedarena.fl_core.aggregation import Aggregator
from fedarena.fl_core.corruptions import corrupt
from fedarena.fl_core.partition import partition
from fedarena.fl_core.protocol import FLProtocol
from fedarena.fl_core.seeding import derive_seed, torch_generator


@dataclass(frozen=True)
class AttackGroup:
    """``clients`` colluding clients running poisoning attack ``name`` (their role).

    ``update_attack`` optionally adds a model-poisoning attack to a data attack (e.g.
    ``backdoor`` + ``model_replacement``).
    """

    name: str
    clients: int
    params: dict[str, Any] = field(default_factory=dict)
    update_attack: str | None = None
    update_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnreliableSpec:
    """``clients`` unreliable clients; ``data_fraction`` of their data corrupted by
    ``corruption`` (a ``fedarena.fl_core.corruptions`` name) with ``params``; they keep a seeded
    ``train_fraction`` of their samples."""

    clients: int
    corruption: str = "gaussian_blur"
    params: dict[str, Any] = field(default_factory=dict)
    data_fraction: float = 0.5
    train_fraction: float = 1.0


@dataclass
class Federation:
    clients: list[Client]
    adversaries: list[Adversary]
    roles: dict[int, str]
    attacks: dict[str, Any]  # group name → attack object (its data attack if it has one)


def assign_roles(num_clients: int, groups: Sequence[AttackGroup], unreliable: int, seed: int) -> dict[int, str]:
    """Seeded roles for every client id (``honest`` for those no group took)."""
    taken = sum(g.clients for g in groups) + unreliable
    if taken > num_clients:
        raise ValueError(f"{taken} malicious and unreliable clients exceed {num_clients} clients")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"attack groups must have distinct names (they are roles), got {names}")
    order = torch.randperm(num_clients, generator=torch_generator(seed, "roles")).tolist()
    roles = {cid: "honest" for cid in range(num_clients)}
    at = 0
    for group in groups:
        roles.update({cid: group.name for cid in order[at: at + group.clients]})
        at += group.clients
    roles.update({cid: "unreliable" for cid in order[at: at + unreliable]})
    return roles


def build_federation(train: ImageDataset, num_clients: int, seed: int, groups: Sequence[AttackGroup] = (),
                     unreliable: UnreliableSpec | None = None, partition_name: str = "dirichlet",
                     partition_params: dict[str, Any] | None = None) -> Federation:
    """Clients with their data and roles, and one adversary per attack group."""
    parts = partition(partition_name, train.labels, num_clients, seed, **(partition_params or {}))
    roles = assign_roles(num_clients, groups, unreliable.clients if unreliable else 0, seed)
    clients = [Client(cid, train.subset(idx), roles[cid]) for cid, idx in enumerate(parts)]
    if unreliable is not None:
        for client in clients:
            if client.role == "unreliable":
                client.data = _degrade(client.data, unreliable, derive_seed(seed, "unreliable", client.client_id))
    adversaries, attacks = [], {}
    for group in groups:
        members = [cid for cid, role in roles.items() if role == group.name]
        attack = POISONING_ATTACKS.build(group.name, **group.params)
        data_attack = attack if callable(getattr(attack, "poison", None)) else None
        update_attack = attack if callable(getattr(attack, "craft", None)) else None
        if group.update_attack is not None:
            if update_attack is not None:
                raise ValueError(f"group {group.name!r} already crafts updates; it cannot add {group.update_attack!r}")
            update_attack = POISONING_ATTACKS.build(group.update_attack, **group.update_params)
        adversaries.append(Adversary(members, data_attack, update_attack, name=group.name))
        attacks[group.name] = attack
    return Federation(clients, adversaries, roles, attacks)


def run_federation(model: nn.Module, federation: Federation, config: FederationConfig, test: ImageDataset,
                   aggregator: Aggregator | None, log: Callable[[str], None] | None = None,
                   label: str = "run") -> tuple[Simulation, History, float]:
    """Run a copy of ``model`` with the federation's clients under ``aggregator``, round by
    round (``log`` gets one progress line per round); returns (sim, history, seconds)."""
    clients = [Client(c.client_id, c.data, c.role) for c in federation.clients]
    sim = Simulation(copy.deepcopy(model), clients, config, test, aggregator,
                     adversaries=federation.adversaries, progress=False)
    start = time.perf_counter()
    for r in range(config.rounds):
        record = sim.run_round(r)
        sim.history.rounds.append(record)
        if log is not None:
            acc = f"{record.accuracy:.4f}" if record.accuracy is not None else "-"
            log(f"[{label}] round {r + 1}/{config.rounds}: accuracy {acc} ({record.seconds:.1f} s)")
    return sim, sim.history, time.perf_counter() - start


def summarize(sim: Simulation, history: History, test: ImageDataset, attacks: dict[str, Any],
              rounds: str = "last") -> dict[str, Any]:
    """Final accuracy, attack success rate per targeted attack, detection P/R per role."""
    out: dict[str, Any] = {"final_accuracy": history.final_accuracy}
    for name, attack in attacks.items():
        asr = _success_rate(sim, test, attack)
        if asr is not None:
            out[f"asr_{name}"] = asr
    out.update(flatten_scores(detection_scores(history, rounds)))  # type: ignore[arg-type]
    return out


def _success_rate(sim: Simulation, test: ImageDataset, attack: Any) -> float | None:
    """ASR on the global model; under a personalised protocol (its own ``client_model``) the
    mean over the honest clients' own models, the models such an attack aims at."""
    if type(sim.protocol).client_model is FLProtocol.client_model:
        return attack_success_rate(sim.model, test, attack)
    honest = [c.client_id for c in sim.clients if c.role == "honest" and c.client_id in sim.client_states]
    if not honest:
        return None
    worker = copy.deepcopy(sim.model)
    rates = [attack_success_rate(sim.protocol.client_model(sim.model, sim.client_states[cid], worker), test, attack)
             for cid in honest]
    known = [r for r in rates if r is not None]
    return sum(known) / len(known) if len(known) == len(rates) else None


def _degrade(data: ImageDataset, spec: UnreliableSpec, seed: int) -> ImageDataset:
    data = corrupt(data, spec.corruption, spec.data_fraction, seed, **spec.params)
    if spec.train_fraction < 1.0:
        keep = max(1, round(spec.train_fraction * len(data)))
        idx = torch.randperm(len(data), generator=torch_generator(seed, "train_fraction"))[:keep]
        data = data.subset(idx.sort().values)
    return data
