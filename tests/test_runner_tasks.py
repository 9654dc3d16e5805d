"""How the tasks wire components: the attacker's view, seeds, roles, artefacts."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import torch

import fedarena.benchmarks.harness.tasks.privacy as privacy_task
from fedarena.attacks.inversion import Reconstruction
from fedarena.benchmarks.harness.execute import execute_run
from fedarena.benchmarks.harness.suite import parse_suite
from fedarena.fl_core.registry import Registry
from fedarena.fl_core.threat import Observation


class SpyAttack:
    """Test-only inversion attack: records what it was given, answers with the observed
    model's input shape filled with 0.5 (so scoring has something to score)."""

    calls: list[dict[str, Any]] = []

    def __init__(self, seed: int = 0, update_transform: Any = None, scale: float = 1.0) -> None:
        self.seed, self.update_transform = seed, update_transform

    def reconstruct(self, obs: Observation) -> Reconstruction:
        SpyAttack.calls.append({"seed": self.seed, "transform": self.update_transform, "obs": obs})
        n = obs.num_images
        images = obs.normalization.normalize(torch.full((n, *obs.input_shape), 0.5))
        return Reconstruction("spy", images, torch.zeros(n, dtype=torch.long), [1.0, 0.5], 0.01,
                              obs.threat_model.flags(), 1, 0, [0.5], "none", {})


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[SpyAttack]:
    registry: Registry = Registry("inversion attack")
    registry.add("spy", SpyAttack, "records its inputs")
    monkeypatch.setattr(privacy_task, "INVERSION_ATTACKS", registry)
    SpyAttack.calls = []
    return SpyAttack


SUITE = """
runs:
  - task: privacy
    dataset: {name: digits, indices: [0, 1, 2, 3, 4, 5]}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 3, rounds: 2, local: {algorithm: fedsgd, batch_size: 2}}
    attacked_clients: [0, 2]
    threat_model: {labels_known: true}
    attacks: [dlg]
    defenses: [{name: pruning, params: {fraction: 0.25}}]
"""


def test_privacy_run_gives_the_attack_only_the_observation(spy: type[SpyAttack]) -> None:
    spec = parse_suite(SUITE, "s.yaml").runs[0]
    config = json.loads(json.dumps(spec.config))
    config["attack"] = {"name": "spy", "params": {}, "adaptive": True}
    spec = type(spec)(spec.run_id, spec.suite, config, spec.meta)
    result = execute_run(spec)
    assert result.status == "ok", result.error
    assert [c["obs"].update.client_id for c in spy.calls] == [0, 2]  # attacked clients, in round 1 only
    seeds = {c["seed"] for c in spy.calls}
    assert len(seeds) == 2 and all(0 <= s < 2**32 for s in seeds)  # derived per client, 32-bit
    for call in spy.calls:
        obs, view = call["obs"], call["transform"]
        kept = int((obs.update.vector != 0).sum())
        assert kept == round(0.25 * obs.update.vector.numel())  # the server sees the pruned upload
        assert callable(view)  # adaptive: the defense's deterministic part
        assert obs.labels is not None and obs.num_images == 2  # granted by the threat model
        assert not any(isinstance(v, torch.Tensor) and v.shape[:1] == (2,) and v.dim() == 4
                       for v in vars(obs).values())  # no private images in the observation
    m = result.metrics
    assert m["adaptive"] and m["adaptive_view"] and m["attacked_clients"] == [0, 2]
    assert m["images"] == 4 and len(m["psnr_per_image"]) == 4 and m["label_accuracy"] is not None
    blob = torch.load(io.BytesIO(result.artefacts["reconstruction.pt"]), weights_only=True)
    assert blob["truth"].shape == blob["reconstruction"].shape == (4, 1, 8, 8)
    assert int(blob["reconstruction"].float().mean().round()) in (127, 128)  # the spy's 0.5 images
    assert result.artefacts["loss.png"].startswith(b"\x89PNG")


def test_robustness_run_roles_and_metrics() -> None:
    text = """
runs:
  - task: robustness
    dataset: {name: digits, size: 300}
    test_dataset: {name: digits, split: test, size: 100}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 6, rounds: 2}
    unreliable: {clients: 1, corruption: gaussian_blur}
    attacks: [{mix: [{name: sign_flip, clients: 1}, {name: label_flip, params: {pairs: {1: 7}}, clients: 2}]}]
    defenses: [median]
"""
    spec = parse_suite(text, "r.yaml").runs[0]
    assert spec.meta["attack_label"] == "sign_flip×1 + label_flip(pairs={1: 7})×2"
    result = execute_run(spec)
    assert result.status == "ok", result.error
    m = result.metrics
    assert m["roles"] == {"honest": 2, "label_flip": 2, "sign_flip": 1, "unreliable": 1}
    assert m["attack_success_rate"] == m["asr_label_flip"] and 0.0 <= m["attack_success_rate"] <= 1.0
    assert {"sign_flip", "label_flip", "unreliable", "honest", "malicious"} <= set(m["detection"])
    assert [r for r, _ in m["accuracy_curve"]] == [1, 2]
    history = json.loads(result.artefacts["history.json"])
    assert sorted(history["roles"].values()) == ["honest", "honest", "label_flip", "label_flip", "sign_flip",
                                                  "unreliable"]
