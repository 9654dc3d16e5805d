"""The privacy task: a curious server inverts what the attacked clients upload.

Steps: build data, model and the privacy defense by name; run the federation up to the
attack round with the defense installed (its trainer, upload transforms, aggregator);
an observer turns each attacked client's upload in that round into an ``Observation``
(``fl_core.threat.make_observation``, so the attack sees only what the threat model
grants); the attack reconstructs; the private batch the client really used is kept
apart and only used for scoring. An *adaptive* attacker receives the defense's
deterministic part (``defenses.privacy.attacker_view``) as ``update_transform``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from attacks.registry import INVERSION_ATTACKS
from benchmarks.figures.plots import loss_curves
from benchmarks.metrics.privacy import score_privacy, summarize_privacy, to_unit
from defenses.privacy import attacker_view, prepare_model
from fl_core import Simulation, ThreatModel, UploadEvent, make_observation, train_client

from ..params import build_component
from .common import (
    build_defense,
    build_global_model,
    component_seed,
    defense_epsilon,
    federation_config,
    load_data,
    split_clients,
)

RECONSTRUCTION = "reconstruction.pt"
LOSS_CURVES = "loss.png"


def run_privacy(config: dict[str, Any], workdir: Path,
                progress: bool = False) -> tuple[dict[str, Any], dict[str, Path]]:
    """Execute one privacy run; returns (metrics, artefact files)."""
    seed = config["seed"]
    fed = config["federation"]
    data = load_data(config["dataset"], seed)
    defense, aggregator = build_defense(config["defense"], fed, seed)
    model = prepare_model(defense, build_global_model(config["model"], data, seed))
    clients = split_clients(data, fed, seed)
    attack_round = config["attack_round"]
    attacked = set(config["attacked_clients"])
    events: list[UploadEvent] = []

    def observe(event: UploadEvent) -> None:
        if event.round == attack_round and event.update.client_id in attacked:
            events.append(event)

    sim = Simulation(model, clients, federation_config(fed, seed, rounds=attack_round + 1), None, aggregator,
                     trainer=defense.trainer or train_client, transforms=defense.transforms, observers=[observe],
                     progress=progress)
    start = time.perf_counter()
    for r in range(attack_round + 1):
        if r == attack_round:  # the model the attacked clients start from, before this round's step
            template = _snapshot(sim)
        sim.history.rounds.append(sim.run_round(r))
    fl_seconds = time.perf_counter() - start
    if not events:
        raise RuntimeError(f"none of the attacked clients {sorted(attacked)} uploaded in round {attack_round} "
                           "(not sampled); attack another round or sample every client")

    threat = ThreatModel(**config["threat_model"])
    attack_cfg = config["attack"]
    norm = data.normalization
    scores, truths, recons, traces, records = [], [], [], {}, []
    views = []
    for event in events:
        cid = event.update.client_id
        obs = make_observation(template, event.state.params, event.update, event.private, event.training, threat,
                               norm, data.num_classes)
        context: dict[str, Any] = {"seed": component_seed(seed, "inversion", cid)}
        if attack_cfg.get("adaptive"):  # None when the defense has no deterministic part to replay
            context["update_transform"] = attacker_view(defense, event.update.vector)
            views.append(context["update_transform"] is not None)
        attack = build_component(INVERSION_ATTACKS, attack_cfg["name"], attack_cfg["params"], context)
        rec = attack.reconstruct(obs)
        score = score_privacy(rec.images.detach(), event.private.inputs, norm, rec.labels, event.private.labels)
        scores.append(score)
        truths.append(to_unit(event.private.inputs, norm))
        recons.append(to_unit(rec.images.detach(), norm)[score.order])
        traces[f"client {cid}"] = rec.loss_trace
        records.append({"client": cid, **rec.record()})
    metrics = summarize_privacy(scores)
    metrics.update({
        "attack_seconds": sum(r["wall_time"] for r in records),
        "fl_seconds": fl_seconds,
        "attacked_clients": [e.update.client_id for e in events],
        "images_per_client": [len(s.psnr) for s in scores],
        "threat_model": threat.flags(),
        "adaptive": bool(attack_cfg.get("adaptive")),
        "adaptive_view": bool(views) and all(views),
        "epsilon": defense_epsilon(defense, aggregator),
        "reconstructions": records,
    })
    files = {RECONSTRUCTION: workdir / RECONSTRUCTION}
    torch.save({"truth": _uint8(torch.cat(truths)), "reconstruction": _uint8(torch.cat(recons)),
                "psnr": torch.tensor([p for s in scores for p in s.psnr])}, files[RECONSTRUCTION])
    if any(traces.values()):
        files[LOSS_CURVES] = loss_curves({k: v for k, v in traces.items() if v}, workdir / LOSS_CURVES,
                                         title=f"{attack_cfg['name']}: matching loss", ylabel="attack objective")
    return metrics, files


def _uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] → uint8: the artefact is for figures, and 4× smaller."""
    return images.mul(255).round().clamp(0, 255).to(torch.uint8)


def _snapshot(sim: Simulation) -> torch.nn.Module:
    return copy.deepcopy(sim.model)
