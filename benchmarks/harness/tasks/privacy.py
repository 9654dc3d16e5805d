"""The privacy task: a curious server inverts what the attacked clients upload.

Steps: build data, model and the privacy defense by name; run the federation up to the
attack round with the defense installed (its trainer, upload transforms, aggregator);
an observer turns each attacked client's upload in that round into an ``Observation``
(``fedarena.fl_core.threat.make_observation``, so the attack sees only what the threat model
grants); the attack reconstructs; the private batch the client really used is kept
apart and only used for scoring. An *adaptive* attacker receives the defense's
deterministic part (``fedarena.defenses.privacy.attacker_view``) as ``update_transform``.

The two steps are public building blocks, ``attacked_uploads`` and ``invert_upload``, so
a reproduction script with its own client layout (the privacy-utility table) runs the
same code path instead of re-implementing it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedarena.attacks.registry import INVERSION_ATTACKS
from fedarena.benchmarks.figures.plots import loss_curves
from fedarena.benchmarks.metrics.privacy import PrivacyScores, score_privacy, summarize_privacy, to_unit
from fedarena.defenses.privacy import attacker_view, defense_epsilon, defense_epsilons, prepare_model
from fedarena.defenses.registry import ClientDefense
from fedarena.fl_core import (
    Client,
    FederationConfig,
    ImageDataset,
    Simulation,
    ThreatModel,
    UploadEvent,
    make_observation,
    train_client,
)
from fedarena.fl_core.aggregation import Aggregator
from fedarena.fl_core.protocol import FLProtocol, invertible

if TYPE_CHECKING:
    from fedarena.attacks.inversion.base import Reconstruction

from ..params import build_component
from .common import (
    build_defense,
    build_global_model,
    build_protocol,
    client_parallelism,
    component_seed,
    federation_config,
    load_data,
    split_clients,
)

RECONSTRUCTION = "reconstruction.pt"
LOSS_CURVES = "loss.png"


@dataclass
class Uploads:
    """What the curious server saw in the attack round: the model the clients started from
    (before that round's step) and each attacked client's upload event (ground truth apart)."""

    template: nn.Module
    events: list[UploadEvent]
    fl_seconds: float


@dataclass
class Inversion:
    """One attacked upload: the attack's reconstruction and its scores against the private batch.
    ``adaptive_view``: for an adaptive attacker, whether the defense had a deterministic part to
    replay (None for a naive one)."""

    reconstruction: Reconstruction
    scores: PrivacyScores
    adaptive_view: bool | None


def attacked_uploads(model: nn.Module, clients: list[Client], config: FederationConfig, defense: ClientDefense,
                     aggregator: Aggregator | None, attack_round: int, attacked: set[int],
                     progress: bool = False, protocol: FLProtocol | None = None) -> Uploads:
    """Run the federation (the defense installed: its trainer, upload transforms, aggregator)
    through ``attack_round``; an observer keeps the uploads of the ``attacked`` clients in it.
    ``protocol`` (default FedAvg) must be one an inversion attack handles
    (``fedarena.fl_core.protocol.invertible``: the whole-model update, or HyperFL's hypernetwork
    update, whose private embedding and head the attack optimises or is granted).
    Clients train in ``tasks.common.client_workers()`` processes (identical uploads), except
    under a stateful trainer (DP-SGD), see ``client_parallelism``."""
    if protocol is not None and not invertible(protocol):
        raise ValueError(f"privacy task: protocol {protocol.name!r} does not upload the whole-model update an "
                         "inversion attack observes and records no private parameters for it to optimise; "
                         "no attack for it exists yet, use fedavg or hyperfl")
    events: list[UploadEvent] = []

    def observe(event: UploadEvent) -> None:
        if event.round == attack_round and event.update.client_id in attacked:
            events.append(event)

    trainer = defense.trainer or train_client
    sim = Simulation(model, clients, config, None, aggregator, trainer=trainer, transforms=defense.transforms,
                     observers=[observe], progress=progress, protocol=protocol, **client_parallelism(trainer))
    start = time.perf_counter()
    with sim:  # stops the client workers, if any
        for r in range(attack_round + 1):
            if r == attack_round:  # the model the attacked clients start from, before this round's step
                template = _snapshot(sim)
            sim.history.rounds.append(sim.run_round(r))
    seconds = time.perf_counter() - start
    if not events:
        raise RuntimeError(f"none of the attacked clients {sorted(attacked)} uploaded in round {attack_round} "
                           "(not sampled); attack another round or sample every client")
    return Uploads(template, events, seconds)


def invert_upload(event: UploadEvent, template: nn.Module, threat: ThreatModel, data: ImageDataset,
                  attack: dict[str, Any], defense: ClientDefense, seed: int) -> Inversion:
    """The attack (``{name, params, adaptive}``, built by registry name with ``seed``) reconstructs
    from the ``Observation`` the threat model grants; scored against the client's private batch."""
    obs = make_observation(template, event.state.params, event.update, event.private, event.training, threat,
                           data.normalization, data.num_classes)
    context: dict[str, Any] = {"seed": seed}
    view = None
    if attack.get("adaptive"):  # None when the defense has no deterministic part to replay
        context["update_transform"] = attacker_view(defense, event.update.vector)
        view = context["update_transform"] is not None
    rec = build_component(INVERSION_ATTACKS, attack["name"], attack["params"], context).reconstruct(obs)
    score = score_privacy(rec.images.detach(), event.private.inputs, data.normalization, rec.labels,
                          event.private.labels, rec.variables, event.private.dropout_masks)
    return Inversion(rec, score, view)


def run_privacy(config: dict[str, Any], workdir: Path, progress: bool = False,
                device: torch.device | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """Execute one privacy run on ``device`` (default CPU); returns (metrics, artefact files)."""
    seed = config["seed"]
    fed = config["federation"]
    data = load_data(config["dataset"], seed)
    defense, aggregator = build_defense(config["defense"], fed, seed)
    protocol = build_protocol(fed)
    model = protocol.server_model(prepare_model(defense, build_global_model(config["model"], data, seed)), seed)
    clients = split_clients(data, fed, seed)
    uploads = attacked_uploads(model.to(device or "cpu"), clients,
                               federation_config(fed, seed, rounds=config["attack_round"] + 1), defense, aggregator,
                               config["attack_round"], set(config["attacked_clients"]), progress, protocol)

    threat = ThreatModel(**config["threat_model"])
    attack_cfg = config["attack"]
    norm = data.normalization
    scores, truths, recons, traces, records = [], [], [], {}, []
    views = []
    for event in uploads.events:
        cid = event.update.client_id
        inv = invert_upload(event, uploads.template, threat, data, attack_cfg, defense,
                            component_seed(seed, "inversion", cid))
        rec, score = inv.reconstruction, inv.scores
        if inv.adaptive_view is not None:
            views.append(inv.adaptive_view)
        scores.append(score)
        truths.append(to_unit(event.private.inputs.cpu(), norm))
        recons.append(to_unit(rec.images.detach().cpu(), norm)[score.order])
        traces[f"client {cid}"] = rec.loss_trace
        records.append({"client": cid, **rec.record()})
    metrics = summarize_privacy(scores)
    metrics.update({
        "attack_seconds": sum(r["wall_time"] for r in records),
        "fl_seconds": uploads.fl_seconds,
        "attacked_clients": [e.update.client_id for e in uploads.events],
        "images_per_client": [len(s.psnr) for s in scores],
        "threat_model": threat.flags(),
        "adaptive": bool(attack_cfg.get("adaptive")),
        "adaptive_view": bool(views) and all(views),
        "epsilon": defense_epsilon(defense),  # add/remove adjacency
        "epsilon_by_adjacency": defense_epsilons(defense),  # {"add_remove": ε, "replace": ε} ({} without DP)
        "reconstructions": records,
    })
    files = {RECONSTRUCTION: workdir / RECONSTRUCTION}
    torch.save({"truth": _uint8(torch.cat(truths)), "reconstruction": _uint8(torch.cat(recons)),
                "psnr": torch.tensor([p for s in scores for p in s.psnr])}, files[RECONSTRUCTION])
    if any(traces.values()):
        title = f"{attack_cfg['name']} vs {config['defense']['name']}: matching loss"
        files[LOSS_CURVES] = loss_curves({k: v for k, v in traces.items() if v}, workdir / LOSS_CURVES,
                                         title=title, ylabel="attack objective")
    return metrics, files


def _uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] → uint8: the artefact is for figures, and 4× smaller."""
    return images.mul(255).round().clamp(0, 255).to(torch.uint8)


def _snapshot(sim: Simulation) -> torch.nn.Module:
    return copy.deepcopy(sim.model)
