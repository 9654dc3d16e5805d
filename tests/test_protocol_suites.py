"""Suites that name a protocol (``federation.protocol``): validation, run ids, and the
shipped HyperFL suite run end to end through the harness (shrunk to a tiny block)."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedarena.attacks.poisoning.data_poisoning import LabelFlip
from fedarena.benchmarks.harness.runner import run_suite
from fedarena.benchmarks.harness.suite import SuiteError, load_suite, parse_suite
from fedarena.benchmarks.harness.tasks.common import build_protocol
from fedarena.benchmarks.harness.tasks.federation import AttackGroup, build_federation, summarize
from fedarena.benchmarks.harness.tasks.privacy import attacked_uploads
from fedarena.benchmarks.metrics.robustness import label_flip_asr
from fedarena.defenses.privacy.accounting import epsilon_from_history
from fedarena.defenses.protocols import HyperFL
from fedarena.defenses.registry import ClientDefense
from fedarena.fl_core import FederationConfig, LocalTraining, Simulation, load_dataset
from fedarena.fl_core.data_root import data_root
from fedarena.fl_core.models import build_model
from fedarena.fl_core.protocol import FedAvgProtocol, FedPer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "benchmarks" / "suites" / "hyperfl.yaml"
HAS_MNIST = all((data_root() / "datasets" / "mnist" / f).exists()
                for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"))

BLOCK = """
runs:
  - task: %s
    dataset: {name: digits, indices: [0, 1, 2, 3, 4, 5]}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 3, %s local: {batch_size: 2}}
    attacks: [%s]
"""


def _suite(protocol: str, task: str = "robustness") -> Any:
    attack = "dlg" if task == "privacy" else "none"
    return parse_suite(BLOCK % (task, f"protocol: {protocol}," if protocol else "", attack), "s.yaml")


def test_default_protocol_keeps_run_ids_and_builds_fedavg() -> None:
    plain, named = _suite(""), _suite("fedavg")
    assert plain.runs[0].run_id == named.runs[0].run_id  # suites from before protocols keep their ids
    assert "protocol" not in plain.runs[0].config["federation"]
    assert isinstance(build_protocol(plain.runs[0].config["federation"]), FedAvgProtocol)
    hyper = _suite("{name: hyperfl, params: {head: fc2, clip_norm: 10}}")
    fed = hyper.runs[0].config["federation"]
    assert fed["protocol"] == {"name": "hyperfl", "params": {"head": "fc2", "clip_norm": 10.0}}
    assert hyper.runs[0].run_id != plain.runs[0].run_id
    built = build_protocol(fed)
    assert isinstance(built, HyperFL) and built.head_name == "fc2" and built.clip_norm == 10.0


def test_unknown_protocol_lists_the_known_ones() -> None:
    with pytest.raises(SuiteError) as err:
        _suite("hyper_fl")
    (path, message), = err.value.problems
    assert path == "runs[0].federation.protocol"
    assert "unknown protocol 'hyper_fl'" in message
    assert all(name in message for name in ("fedavg", "fedper", "client_momentum", "hyperfl"))


@pytest.mark.parametrize(("params", "field", "says"), [
    ("{hidden: 3}", "hidden", "unknown parameter of protocol 'hyperfl'; allowed: head_epochs"),
    ("{clip_norm: -1}", "clip_norm", "clip_norm must be > 0"),
    ("{head_epochs: -2}", "head_epochs", "head_epochs must be >= 0"),
])
def test_bad_protocol_params_are_named_by_field_path(params: str, field: str, says: str) -> None:
    with pytest.raises(SuiteError) as err:
        _suite(f"{{name: hyperfl, params: {params}}}")
    (path, message), = err.value.problems
    assert path == f"runs[0].federation.protocol.params.{field}"
    assert says in message


@pytest.mark.parametrize("protocol", ["fedper", "client_momentum"])
def test_privacy_task_refuses_a_protocol_whose_upload_is_not_the_model_update(protocol: str) -> None:
    with pytest.raises(SuiteError) as err:
        _suite(protocol, task="privacy")
    (path, message), = err.value.problems
    assert path == "runs[0].federation.protocol"
    assert f"protocol {protocol!r} does not upload the whole-model update" in message
    assert len(_suite("fedavg", task="privacy").runs) == 1
    assert len(_suite("hyperfl", task="privacy").runs) == 1  # the attacks optimise its embedding and head


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST not under FEDARENA_DATA (validation reads its files)")
def test_shipped_hyperfl_suite_validates() -> None:
    suite = load_suite(SHIPPED)
    protocols = {json.dumps(r.config["federation"].get("protocol")) for r in suite.runs}
    assert len(suite.runs) == 22 and len(protocols) == 2
    hyper = [r for r in suite.runs if r.config["federation"].get("protocol")]
    assert {r.meta["defense_label"] for r in hyper} == {"fedavg", "krum(f=1)", "median",
                                                        "dp_sgd(max_grad_norm=1, noise_multiplier=1)"}
    assert {r.config["attack"]["groups"][0]["name"] for r in hyper if r.config["attack"]["groups"]} == {
        "sign_flip", "label_flip"}
    private = [r for r in hyper if r.config["defense"]["name"] == "dp_sgd"]
    assert len(private) == 2 and all(r.config["defense"]["kind"] == "privacy" for r in private)


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST not under FEDARENA_DATA")
def test_shipped_hyperfl_block_runs_end_to_end(tmp_path: Path) -> None:
    """The shipped block, HyperFL only, shrunk (1 round, 1 epoch, 150 images, sign flip and
    label flip against Krum), through ``run_suite``: the attacks act on hypernetwork updates
    and Krum excludes the sign flipper."""
    doc, block = _shrunk_hyperfl_block(0)
    block["attacks"] = block["attacks"][1:]
    block["defenses"] = [{"name": "krum", "params": {"f": 1}}]
    suite = parse_suite(yaml.safe_dump(doc), "hyperfl-tiny.yaml")
    summary = run_suite(suite, tmp_path, progress=False)
    assert summary.failed == 0 and summary.ok == 2, summary
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        rows = {json.loads(c)["attack"]["groups"][0]["name"]: json.loads(m)
                for c, m in db.execute("select config, metrics from runs")}
    assert set(rows) == {"sign_flip", "label_flip"}
    for m in rows.values():
        assert m["rejected_updates"] == 0  # every upload matched the hypernetwork's layout
        assert 0.0 <= m["final_accuracy"] <= 1.0
    assert rows["sign_flip"]["malicious_recall"] == 1.0  # Krum left out the negated hypernetwork update
    assert rows["sign_flip"]["attack_success_rate"] is None  # untargeted
    assert 0.0 <= rows["label_flip"]["attack_success_rate"] <= 1.0  # on the honest clients' own models

def _shrunk_hyperfl_block(index: int) -> tuple[dict, dict]:
    """The shipped suite with only its block ``index``, HyperFL only, shrunk to 1 round of
    1 epoch on 150 images (a copy: the blocks share their settings through a YAML anchor)."""
    doc = yaml.safe_load(SHIPPED.read_text())
    block = copy.deepcopy(doc["runs"][index])
    doc["runs"] = [block]
    block["federation"].update(rounds=1, protocol=block["federation"]["protocol"]["grid"][1])
    block["federation"]["local"]["epochs"] = 1
    block["dataset"]["size"], block["test_dataset"]["size"] = 150, 60
    return doc, block


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST not under FEDARENA_DATA")
def test_shipped_hyperfl_dp_sgd_block_runs_end_to_end(tmp_path: Path) -> None:
    """The DP-SGD block, HyperFL only, shrunk: the run trains through the private HyperFL
    round and reports the ε of its accountant (1 round: 3 head epochs + 1 hypernetwork epoch
    of ⌊1/q⌋ = 2 Poisson steps at q = 1/2 per client, σ = 1)."""
    doc, block = _shrunk_hyperfl_block(1)
    block["attacks"] = ["none"]
    suite = parse_suite(yaml.safe_dump(doc), "hyperfl-dp-tiny.yaml")
    summary = run_suite(suite, tmp_path, progress=False)
    assert summary.failed == 0 and summary.ok == 1, summary
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        (metrics,) = [json.loads(m) for (m,) in db.execute("select metrics from runs")]
    want = epsilon_from_history([(1.0, 1 / 2, (3 + 1) * 2)], 1e-5)
    assert metrics["epsilon"] == pytest.approx(want) and metrics["epsilon_by_adjacency"] == {"add_remove": want}
    assert metrics["rejected_updates"] == 0 and 0.0 <= metrics["final_accuracy"] <= 1.0


def test_targeted_attack_success_is_scored_on_the_honest_clients_own_models() -> None:
    """Under a personalised protocol the server's model is not what any client uses: a label
    flip's ASR is the mean over the honest clients' personalised models (FedPer here)."""
    data = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    fed = build_federation(data, 4, 0, [AttackGroup("label_flip", 2, {"pairs": {1: 7}})])
    model = build_model("mlp", data.num_classes, data.input_shape, seed=0, hidden=[16])
    config = FederationConfig(rounds=1, local=LocalTraining(lr=0.5, epochs=2, batch_size=32), seed=0)
    sim = Simulation(model, fed.clients, config, test, adversaries=fed.adversaries, protocol=FedPer(_head(model)),
                     progress=False)
    sim.history.rounds.append(sim.run_round(0))
    attack = fed.attacks["label_flip"]
    assert isinstance(attack, LabelFlip)
    own = {c.client_id: (c.role, label_flip_asr(sim.protocol.client_model(sim.model, sim.client_states[c.client_id]),
                                                test, attack.targets)) for c in fed.clients}
    honest = [asr for role, asr in own.values() if role == "honest"]
    got = summarize(sim, sim.history, test, fed.attacks)["asr_label_flip"]
    assert len(honest) == 2 and got == pytest.approx(sum(honest) / len(honest))  # type: ignore[arg-type]
    assert got != label_flip_asr(sim.model, test, attack.targets)  # not the server's (untrained-head) model
    assert max(asr for role, asr in own.values() if role != "honest") > got  # nor the attackers' own models


def _head(model: object) -> tuple[str, ...]:
    names = [n for n, _ in model.named_parameters()]  # type: ignore[attr-defined]
    return (names[-1].rsplit(".", 1)[0],)


def test_privacy_building_block_refuses_a_personalised_protocol() -> None:
    data = load_dataset("digits", "train").subset(range(4))
    model = build_model("mlp", data.num_classes, data.input_shape, seed=0, hidden=[8])
    with pytest.raises(ValueError, match="protocol 'fedper' does not upload the whole-model update"):
        attacked_uploads(model, [], FederationConfig(rounds=1), ClientDefense(), None, 0, {0},
                         protocol=FedPer(_head(model)))
