"""A round's clients in worker processes (``Simulation(client_workers=N)``): the same History and
final model as sequential training, bit for bit, with dropout, client momentum and a data attack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedarena.attacks.poisoning.data_poisoning import LabelFlip
from fedarena.benchmarks.harness.runner import run_suite
from fedarena.benchmarks.harness.store import Store
from fedarena.benchmarks.harness.suite import SuiteError, parse_suite
from fedarena.benchmarks.harness.tasks.common import CLIENT_WORKERS_ENV, client_workers
from fedarena.fl_core import Client, FederationConfig, LocalTraining, Simulation, model_to_vector
from fedarena.fl_core.client import train_client
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model
from fedarena.fl_core.parallel import ClientPool
from fedarena.fl_core.protocol import ClientMomentum
from fedarena.fl_core.simulation import Adversary, History


def _federation(workers: int, protocol: str | None) -> tuple[History, torch.Tensor, Simulation]:
    train = load_dataset("digits")
    test = load_dataset("digits", "test")
    parts = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:600].chunk(6)
    clients = [Client(i, train.subset(p), "label_flip" if i == 4 else "honest") for i, p in enumerate(parts)]
    model = build_model("mlp", 10, train.input_shape, hidden=(32,), dropout=0.3, seed=0)
    cfg = FederationConfig(rounds=3, clients_per_round=5, seed=3,
                           local=LocalTraining(lr=0.1, epochs=1, batch_size=16))
    sim = Simulation(model, clients, cfg, test, protocol=ClientMomentum(0.5) if protocol else None,
                     adversaries=[Adversary([4], data_attack=LabelFlip({1: 7, 3: 8}), name="flip")],
                     progress=False, client_workers=workers)
    history = sim.run()
    return history, model_to_vector(sim.model), sim


def _without_timing(history: History) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(history.to_json())["rounds"]]


@pytest.mark.parametrize("protocol", [None, "client_momentum"])
def test_two_workers_equal_sequential_training(protocol: str | None) -> None:
    seq_history, seq_model, seq = _federation(1, protocol)
    par_history, par_model, par = _federation(2, protocol)
    assert torch.equal(seq_model, par_model)  # bit-identical global model
    assert _without_timing(seq_history) == _without_timing(par_history)
    assert seq_history.accuracies and seq_history.rounds[-1].applied
    assert par._pool is None  # run() stopped the workers
    if protocol:  # client state kept in the driver, the same as sequentially
        assert seq.client_states.keys() == par.client_states.keys()
        for cid, kept in seq.client_states.items():
            assert torch.equal(kept.values["momentum"], par.client_states[cid].values["momentum"])


def test_worker_results_depend_on_the_seed() -> None:
    """Guard against a pool that ignores its inputs: another seed gives another model."""
    train = load_dataset("digits")
    clients = [Client(i, train.subset(list(range(i * 50, i * 50 + 50)))) for i in range(4)]
    model = build_model("mlp", 10, train.input_shape, hidden=(16,), dropout=0.3, seed=0)
    local = LocalTraining(lr=0.1, batch_size=16)
    out = []
    for seed in (0, 1):
        sim = Simulation(build_model("mlp", 10, train.input_shape, hidden=(16,), dropout=0.3, seed=0), clients,
                         FederationConfig(rounds=1, seed=seed, local=local), progress=False, client_workers=2)
        sim.run()
        out.append(model_to_vector(sim.model))
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[0], model_to_vector(model))


def _failing_trainer(model, state, client_id, data, training, generator):  # noqa: ANN001, ANN202
    if client_id == 1:
        raise ArithmeticError("client one cannot train")
    return train_client(model, state, client_id, data, training, generator)


def test_a_failing_client_names_itself_and_the_pool_is_stopped() -> None:
    train = load_dataset("digits")
    clients = [Client(i, train.subset(list(range(i * 30, i * 30 + 30)))) for i in range(4)]
    sim = Simulation(build_model("mlp", 10, train.input_shape, hidden=(8,), seed=0), clients,
                     FederationConfig(rounds=1), trainer=_failing_trainer, progress=False, client_workers=2)
    with pytest.raises(RuntimeError, match=r"(?s)client 1, round 0.*ArithmeticError: client one cannot train"):
        sim.run_round(0)
    assert sim._pool is not None and sim._pool.closed  # stopped, not left out of step
    pool = sim.start_workers()  # a later round starts fresh workers
    assert pool is not sim._pool or not pool.closed
    assert not sim._pool.closed
    sim.close()


def test_unpicklable_trainer_is_a_clear_error() -> None:
    train = load_dataset("digits")
    clients = [Client(i, train.subset(list(range(i * 20, i * 20 + 20)))) for i in range(2)]
    model = build_model("mlp", 10, train.input_shape, hidden=(8,), seed=0)
    with pytest.raises(ValueError, match="must be picklable"):
        ClientPool(2, model, clients, lambda *a: None, LocalTraining(), 0)
    with pytest.raises(ValueError, match="client_workers must be >= 1"):
        Simulation(model, clients, FederationConfig(rounds=1), client_workers=0)

    class Counting:  # a trainer object keeping state: its workers' copies would drift from the driver's
        def __call__(self, *args: object) -> None: ...

    with pytest.raises(ValueError, match="needs a trainer function; Counting is an object"):
        Simulation(model, clients, FederationConfig(rounds=1), trainer=Counting(), client_workers=2)


SUITE = """
suite: tiny_clients
runs:
  - task: robustness
    dataset: {name: digits, size: 300}
    test_dataset: {name: digits, split: test, size: 100}
    model: {name: mlp, params: {hidden: [8], dropout: 0.2}}
    federation: {clients: 4, rounds: 2, local: {lr: 0.2, batch_size: 16}}
    attacks: [none]
    defenses: [none]
    seeds: 1
"""


def test_client_workers_setting_keeps_run_ids_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = parse_suite(SUITE, "tiny_clients.yaml")
    run_suite(suite, tmp_path / "one", progress=False)
    monkeypatch.setenv(CLIENT_WORKERS_ENV, "2")
    assert client_workers() == 2
    pools: list[int] = []
    original = ClientPool.__init__

    def spy(self: ClientPool, workers: int, *args: object, **kwargs: object) -> None:
        pools.append(workers)
        original(self, workers, *args, **kwargs)

    monkeypatch.setattr(ClientPool, "__init__", spy)
    run_suite(suite, tmp_path / "two", progress=False)
    assert pools == [2]  # the run's federation did train in 2 worker processes
    timing = {"fl_seconds", "seconds_per_round", "attack_seconds"}
    stored = []
    for out in ("one", "two"):
        with Store.in_folder(tmp_path / out) as store:
            stored.append({r.run_id: {k: v for k, v in r.metrics.items() if k not in timing} for r in store.runs()})
    assert stored[0] == stored[1] and len(stored[0]) == 1
    monkeypatch.setenv(CLIENT_WORKERS_ENV, "0")
    with pytest.raises(ValueError, match="FEDARENA_CLIENT_WORKERS must be a whole number >= 1"):
        client_workers()


# A suite's engine.client_workers: every task that trains a federation, the same stored metrics.
ENGINE_SUITE = """
suite: engine_clients
runs:
  - task: robustness
    dataset: {name: digits, size: 300}
    test_dataset: {name: digits, split: test, size: 100}
    model: {name: mlp, params: {hidden: [8], dropout: 0.2}}
    federation: {clients: 4, rounds: 2, local: {lr: 0.2, batch_size: 16}}
    attacks: [none]
    defenses: [none, {name: dp_sgd, params: {noise_multiplier: 1.0, max_grad_norm: 1.0}}]
  - task: privacy
    dataset: {name: digits, size: 40}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 4, rounds: 2, local: {algorithm: fedavg, lr: 0.1, batch_size: 5, epochs: 1}}
    attack_round: 1
    attacked_clients: [2]
    attacks: [{name: inverting_gradients, params: {iterations: 3}}]
"""


def _stored(out: Path) -> dict[str, dict]:
    timing = {"fl_seconds", "seconds_per_round", "attack_seconds"}
    with Store.in_folder(out) as store:
        rows = {r.run_id: r for r in store.runs()}
    assert all(r.status == "ok" for r in rows.values()), {k: r.error for k, r in rows.items()}
    return {k: {m: v for m, v in r.metrics.items() if m not in timing} for k, r in rows.items()}


def _strip_wall_time(metrics: dict) -> dict:
    return {k: [{f: v for f, v in rec.items() if f != "wall_time"} for rec in v] if k == "reconstructions" else v
            for k, v in metrics.items()}


def test_suite_engine_field_gives_the_same_store_as_sequential_clients(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with_field = parse_suite("engine: {client_workers: 2}\n" + ENGINE_SUITE, "engine_clients.yaml")
    without = parse_suite(ENGINE_SUITE, "engine_clients.yaml")
    assert (with_field.client_workers, without.client_workers) == (2, None)
    assert [r.run_id for r in with_field.runs] == [r.run_id for r in without.runs]  # not part of the run id
    pools: list[int] = []
    original = ClientPool.__init__

    def spy(self: ClientPool, workers: int, *args: object, **kwargs: object) -> None:
        pools.append(workers)
        original(self, workers, *args, **kwargs)

    monkeypatch.setattr(ClientPool, "__init__", spy)
    run_suite(without, tmp_path / "one", progress=False)
    assert pools == []
    run_suite(with_field, tmp_path / "two", progress=False)
    assert pools == [2, 2]  # robustness without DP and the privacy run trained in 2 workers; DP-SGD in process
    run_suite(with_field, tmp_path / "flag", progress=False, client_workers=1)  # the CLI flag overrides the field
    assert pools == [2, 2]
    one, two = _stored(tmp_path / "one"), _stored(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) == 3
    dp = next(k for k in two if "warnings" in two[k])
    assert any("client_workers=2 not used: DPSGD is an object that may keep state" in w for w in two[dp]["warnings"])
    assert two[dp]["epsilon"] == one[dp]["epsilon"] and two[dp]["epsilon"] is not None  # the accountant counted
    two[dp]["warnings"] = [w for w in two[dp]["warnings"] if "client_workers" not in w]
    if not two[dp]["warnings"]:
        del two[dp]["warnings"]
    assert {k: _strip_wall_time(v) for k, v in one.items()} == {k: _strip_wall_time(v) for k, v in two.items()}
    privacy = next(v for v in one.values() if "reconstructions" in v)
    assert privacy["attacked_clients"] == [2] and privacy["psnr"] is not None


@pytest.mark.parametrize(("engine", "message"), [
    ("{client_workers: 0}", "engine.client_workers: must be an int >= 1; got 0"),
    ("{client_workers: 1.5}", "engine.client_workers: must be an int >= 1; got 1.5"),
    ("{workers: 2}", "engine.workers"),
    ("2", "engine: must be a mapping with keys client_workers; got"),
])
def test_suite_engine_field_is_validated_up_front(engine: str, message: str) -> None:
    with pytest.raises(SuiteError) as info:
        parse_suite(f"engine: {engine}\n" + SUITE, "bad.yaml")
    assert message in str(info.value)
