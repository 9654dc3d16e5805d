"""The robustness task: a federation with malicious and unreliable clients, under a defense.

Roles are drawn with the run's seed: each attack group of the resolved ``attack`` takes
its count of clients (role = the attack's registry name), then the unreliable clients
(role ``unreliable``, a fraction of their data corrupted); the rest are honest. Each
group is one colluding ``Adversary`` whose behaviour is the poisoning attack built by
name: a data attack (``poison``) and/or an update attack (``craft``). The defense is an
aggregator or a privacy defense, also by name. Metrics: accuracy per round, attack
success rate and detection precision/recall per role (``benchmarks.harness.scoring``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from attacks.registry import POISONING_ATTACKS
from defenses.privacy import prepare_model
from fl_core import Adversary, Simulation, torch_generator, train_client

from ..atomic import write_atomic
from ..params import build_component
from ..scoring import robustness_scores
from .common import (
    build_defense,
    build_global_model,
    corrupt_clients,
    defense_epsilon,
    federation_config,
    federation_context,
    load_data,
    split_clients,
)

HISTORY = "history.json"


def run_robustness(config: dict[str, Any], workdir: Path,
                   progress: bool = False) -> tuple[dict[str, Any], dict[str, Path]]:
    """Execute one robustness run; returns (metrics, artefact files)."""
    seed = config["seed"]
    fed = config["federation"]
    train = load_data(config["dataset"], seed)
    test = load_data(config["test_dataset"], seed)
    groups = config["attack"]["groups"]
    unreliable = config["unreliable"]
    roles, members = assign_roles(fed["clients"], groups, unreliable["clients"] if unreliable else 0, seed)
    clients = split_clients(train, fed, seed, roles)
    if unreliable:
        corrupt_clients(clients, members["unreliable"], unreliable, seed)
    adversaries, attacks = [], []
    for i, group in enumerate(groups):
        context = federation_context(fed, seed, "poisoning", i)
        context.update({"num_malicious": group["clients"], "num_classes": train.num_classes})
        attack = build_component(POISONING_ATTACKS, group["name"], group["params"], context)
        data_attack = attack if callable(getattr(attack, "poison", None)) else None
        update_attack = attack if callable(getattr(attack, "craft", None)) else None
        if data_attack is None and update_attack is None:
            raise TypeError(f"poisoning attack {group['name']!r} has neither poison(data, generator) nor craft(ctx)")
        adversaries.append(Adversary(members[f"group{i}"], data_attack, update_attack, name=f"{group['name']}#{i}"))
        attacks.append(attack)
    defense, aggregator = build_defense(config["defense"], fed, seed)
    model = prepare_model(defense, build_global_model(config["model"], train, seed))
    sim = Simulation(model, clients, federation_config(fed, seed), test, aggregator,
                     trainer=defense.trainer or train_client, adversaries=adversaries, transforms=defense.transforms,
                     progress=progress)
    start = time.perf_counter()
    history = sim.run()
    seconds = time.perf_counter() - start
    evaluated = [r for r in history.rounds if r.accuracy is not None]
    metrics: dict[str, Any] = {
        "final_accuracy": history.final_accuracy,
        "final_loss": evaluated[-1].loss if evaluated else None,
        "accuracy_curve": [[r.round + 1, r.accuracy] for r in evaluated],
        "loss_curve": [[r.round + 1, r.loss] for r in evaluated],
        "fl_seconds": seconds,
        "seconds_per_round": seconds / max(len(history.rounds), 1),
        "roles": {role: len(ids) for role, ids in _by_role(roles, fed["clients"]).items()},
        "rejected_updates": sum(len(r.rejected) for r in history.rounds),
        "epsilon": defense_epsilon(defense, aggregator),
    }
    metrics.update(robustness_scores(sim, history, test, attacks, groups))
    path = write_atomic(workdir / HISTORY, history.to_json())
    return metrics, {HISTORY: path}


def assign_roles(num_clients: int, groups: list[dict[str, Any]], unreliable: int,
                 seed: int) -> tuple[dict[int, str], dict[str, list[int]]]:
    """Seeded choice of who is malicious (per group) and unreliable; the rest are honest.

    Depends only on ``(seed, "roles")``, so adding a component never reshuffles roles.
    """
    if sum(g["clients"] for g in groups) + unreliable > num_clients:
        raise ValueError(f"{sum(g['clients'] for g in groups)} malicious and {unreliable} unreliable clients "
                         f"exceed {num_clients} clients")
    order = torch.randperm(num_clients, generator=torch_generator(seed, "roles")).tolist()
    roles: dict[int, str] = {}
    members: dict[str, list[int]] = {}
    at = 0
    for i, group in enumerate(groups):
        ids = sorted(order[at: at + group["clients"]])
        at += group["clients"]
        members[f"group{i}"] = ids
        roles.update({cid: group["name"] for cid in ids})
    members["unreliable"] = sorted(order[at: at + unreliable])
    roles.update({cid: "unreliable" for cid in members["unreliable"]})
    return roles, members


def _by_role(roles: dict[int, str], num_clients: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for cid in range(num_clients):
        out.setdefault(roles.get(cid, "honest"), []).append(cid)
    return out
