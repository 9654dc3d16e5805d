"""The robustness task: a federation with malicious and unreliable clients, under a defense.

The poisoned federation is built by ``fedarena.benchmarks.harness.tasks.federation`` (seeded roles:
each attack group takes its count of clients, then the unreliable ones; one colluding
``Adversary`` per group, its behaviour the poisoning attack built by registry name) and
scored by ``fedarena.benchmarks.metrics.robustness`` (accuracy, attack success rate of targeted
attacks, detection precision/recall per role). The defense, an aggregator or a privacy
defense, is built by name here; a privacy defense brings its trainer and transforms.
The federation's protocol (``federation.protocol``, FedAvg by default) builds the
server's model from the suite's model and decides what is shared: under HyperFL the
attacks craft, and the aggregators aggregate, hypernetwork updates, and a targeted
attack's success rate is the mean over the honest clients' personalised models.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from fedarena.benchmarks.harness.tasks.federation import AttackGroup, UnreliableSpec, build_federation, summarize
from fedarena.benchmarks.metrics.robustness import detection_scores
from fedarena.defenses.privacy import defense_epsilon, defense_epsilons, prepare_model
from fedarena.fl_core import Simulation, train_client

from ..atomic import write_atomic
from .common import (
    build_defense,
    build_global_model,
    build_protocol,
    client_parallelism,
    federation_config,
    load_data,
)

HISTORY = "history.json"


def run_robustness(config: dict[str, Any], workdir: Path, progress: bool = False,
                   device: torch.device | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """Execute one robustness run on ``device`` (default CPU); returns (metrics, artefact files)."""
    seed = config["seed"]
    fed = config["federation"]
    train = load_data(config["dataset"], seed)
    test = load_data(config["test_dataset"], seed)
    groups = [AttackGroup(g["name"], g["clients"], g["params"],
                          g["update_attack"]["name"] if g.get("update_attack") else None,
                          g["update_attack"]["params"] if g.get("update_attack") else {})
              for g in config["attack"]["groups"]]
    u = config["unreliable"]
    unreliable = None if u is None else UnreliableSpec(u["clients"], u["corruption"]["name"],
                                                       u["corruption"]["params"], u["data_fraction"],
                                                       u["train_fraction"])
    federation = build_federation(train, fed["clients"], seed, groups, unreliable, fed["partition"]["name"],
                                  fed["partition"]["params"])
    defense, aggregator = build_defense(config["defense"], fed, seed)
    protocol = build_protocol(fed)
    model = protocol.server_model(prepare_model(defense, build_global_model(config["model"], train, seed)), seed)
    trainer = defense.trainer or train_client
    sim = Simulation(model.to(device or "cpu"), federation.clients, federation_config(fed, seed), test, aggregator,
                     trainer=trainer, adversaries=federation.adversaries, transforms=defense.transforms,
                     progress=progress, protocol=protocol, **client_parallelism(trainer))
    start = time.perf_counter()
    history = sim.run()
    seconds = time.perf_counter() - start
    evaluated = [r for r in history.rounds if r.accuracy is not None]
    metrics: dict[str, Any] = summarize(sim, history, test, federation.attacks)
    asr = [v for k, v in metrics.items() if k.startswith("asr_") and v is not None]
    metrics.update({
        "attack_success_rate": sum(asr) / len(asr) if asr else None,
        "detection": {role: s.as_dict() for role, s in detection_scores(history).items()},
        "final_loss": evaluated[-1].loss if evaluated else None,
        "accuracy_curve": [[r.round + 1, r.accuracy] for r in evaluated],
        "loss_curve": [[r.round + 1, r.loss] for r in evaluated],
        "fl_seconds": seconds,
        "seconds_per_round": seconds / max(len(history.rounds), 1),
        "roles": _role_counts(federation.roles),
        "rejected_updates": sum(len(r.rejected) for r in history.rounds),
        "epsilon": defense_epsilon(defense),  # add/remove adjacency
        "epsilon_by_adjacency": defense_epsilons(defense),  # {"add_remove": ε, "replace": ε} ({} without DP)
    })
    path = write_atomic(workdir / HISTORY, history.to_json())
    return metrics, {HISTORY: path}


def _role_counts(roles: dict[int, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for role in roles.values():
        out[role] = out.get(role, 0) + 1
    return dict(sorted(out.items()))
