"""Flower adapters: strategy = Server.step, mods = FedArena transforms/attacks, and the
acceptance check that a Flower simulation reproduces a FedArena Simulation round by round."""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import (  # noqa: E402
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)

import fedarena.attacks.poisoning  # noqa: E402, F401
import fedarena.defenses.aggregation  # noqa: E402, F401
import fedarena.defenses.privacy  # noqa: E402, F401
from fedarena.attacks.flower import DataPoisoningMod, ModelPoisoningMod, OmniscientAttack, poisoning_mod  # noqa: E402
from fedarena.attacks.poisoning import ALIE, LabelFlip, SignFlip  # noqa: E402
from fedarena.defenses.aggregation import FoolsGold, Krum  # noqa: E402
from fedarena.defenses.flower import FedArenaStrategy, TrainerMod, TransformMod, privacy_mods  # noqa: E402
from fedarena.defenses.privacy import GaussianNoise  # noqa: E402
from fedarena.fl_core.aggregation import FedAvg  # noqa: E402
from fedarena.fl_core.client import GlobalState, train_client  # noqa: E402
from fedarena.fl_core.flower import ArrayCodec, train_reply, update_record  # noqa: E402
from fedarena.fl_core.seeding import torch_generator  # noqa: E402
from fedarena.fl_core.server import Server  # noqa: E402
from fedarena.fl_core.simulation import RoundContext  # noqa: E402
from fedarena.fl_core.updates import ClientUpdate, LocalTraining  # noqa: E402
from fedarena.fl_core.vectors import model_to_vector  # noqa: E402
from tests.helpers import synthetic_images, tiny_cnn_bn, tiny_mlp  # noqa: E402

APP_DIR = Path(__file__).resolve().parents[1] / "examples" / "flower_app"


def _train_message(model: torch.nn.Module, node_id: int, server_round: int = 1) -> Message:
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                          "config": ConfigRecord({"server-round": server_round})})
    # What a SuperLink delivers (outside a run, Message() cannot fill in the sender's identity).
    metadata = Metadata(run_id=1, message_id=f"m{node_id}", src_node_id=1, dst_node_id=node_id, reply_to_message_id="",
                        group_id=str(server_round), created_at=time.time(), ttl=3600.0, message_type=MessageType.TRAIN)
    return Message(content=content, metadata=metadata)


def _reply(instruction: Message, arrays: ArrayRecord, num_examples: int = 10, **metrics: int) -> Message:
    record = MetricRecord({"num-examples": num_examples, **metrics})
    return Message(RecordDict({"arrays": arrays, "metrics": record}), reply_to=instruction)


def _context(node_id: int, partition_id: int) -> Context:
    return Context(run_id=1, node_id=node_id, node_config={"partition-id": partition_id, "num-partitions": 10},
                   state=RecordDict(), run_config={})


def _replies(model: torch.nn.Module, vectors: list[torch.Tensor], node_ids: list[int],
             server_round: int = 1) -> list[Message]:
    codec = ArrayCodec.of(model)
    state = GlobalState(model_to_vector(model))
    like = ArrayRecord(model.state_dict())
    out = []
    for nid, v in zip(node_ids, vectors, strict=True):
        arrays = update_record(codec, state, ClientUpdate(nid, v, "delta", 10), like)
        out.append(_reply(_train_message(model, nid, server_round), arrays))
    return out


def test_codec_uses_layout_order_not_state_dict_order() -> None:
    model = tiny_cnn_bn()
    record = ArrayRecord(model.state_dict())
    assert list(record.keys()) != list(ArrayCodec.of(model).layout.names)  # BN buffers interleave
    state = ArrayCodec.of(model).to_state(record)
    assert torch.equal(state.params, model_to_vector(model))
    assert torch.equal(state.buffers, torch.cat([b.reshape(-1) for b in model.buffers() if b.is_floating_point()]))


def test_codec_reads_mixed_dtypes_as_torch_cat_would() -> None:
    """The one-copy reader promotes and orders exactly as concatenating the arrays would, and
    hands out a writable vector of its own (the strategy subtracts the global state in place)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    g = torch.Generator().manual_seed(1)
    values = {"0.weight": torch.randn(2, 3, generator=g).half(), "0.bias": torch.randn(2, generator=g),
              "1.weight": torch.randn(1, 2, generator=g).double(), "1.bias": torch.randn(1, generator=g).half()}
    record = ArrayRecord(values)  # a state dict
    codec = ArrayCodec.of(model)
    expected = torch.cat([values[n].reshape(-1) for n in codec.layout.names])
    state = codec.to_state(record)
    assert state.params.dtype == expected.dtype == torch.float64 and torch.equal(state.params, expected)
    assert torch.equal(codec.to_state(record, dtype=torch.float32).params, expected.float())
    state.params.sub_(1.0)  # its own memory: the record is untouched
    assert torch.equal(codec.to_state(record).params, expected)
    bad = ArrayRecord({k: v for k, v in values.items() if k != "1.bias"})
    with pytest.raises(ValueError, match=r"reply lacks arrays \['1.bias'\]"):
        codec.to_state(bad)


def test_strategy_step_equals_server_step_and_rejects_bad_replies() -> None:
    model = tiny_mlp()
    d = ArrayCodec.of(model).layout.dim
    gen = torch.Generator().manual_seed(0)
    vectors = [0.01 * torch.randn(d, generator=gen) for _ in range(7)]
    node_ids = [9001, 17, 523, 4, 88, 61, 302]  # arbitrary Flower node ids, not sorted
    replies = _replies(model, vectors, node_ids)
    bad_nan = vectors[0].clone()
    bad_nan[3] = float("nan")
    replies += _replies(model, [bad_nan], [77])
    wrong = ArrayRecord({k: v for k, v in model.state_dict().items() if k != "3.bias"})
    replies.append(_reply(_train_message(model, 78), wrong))
    replies.append(Message(RecordDict({"arrays": ArrayRecord(model.state_dict())}),
                           reply_to=_train_message(model, 79)))  # no metrics
    strategy = FedArenaStrategy("krum", copy.deepcopy(model), aggregator_args={"f": 2})
    arrays, metrics = strategy.aggregate_train(1, replies)

    reference = Server(copy.deepcopy(model), Krum(f=2))
    order = sorted(range(7), key=lambda i: node_ids[i])
    # The adapter's update is reply − global; build the reference from the same replies.
    codec, state = ArrayCodec.of(model), GlobalState(model_to_vector(model))
    ref_updates = [ClientUpdate(node_ids[i], codec.to_state(replies[i].content["arrays"]).params - state.params,
                                "delta", 10) for i in order]
    record = reference.step(ref_updates)
    assert torch.equal(codec.to_state(arrays).params, reference.state.params)
    assert float((codec.to_state(arrays).params - model_to_vector(model)).abs().max()) > 0
    assert strategy.records[1].weights == record.weights
    assert list(metrics["fedarena-ids"]) == sorted(node_ids)
    assert list(metrics["fedarena-weights"]) == [record.weights[i] for i in sorted(node_ids)]
    assert sum(w > 0 for w in metrics["fedarena-weights"]) == 1  # Krum trusts one client
    rejected = strategy.records[1].rejected
    assert set(rejected) == {77, 78, 79} and list(metrics["fedarena-rejected"]) == [77, 78, 79]
    assert "non-finite" in rejected[77] and "3.bias" in rejected[78] and "num-examples" in rejected[79]


def test_strategy_keeps_stateful_aggregator_across_rounds() -> None:
    model = tiny_mlp()
    d = ArrayCodec.of(model).layout.dim
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(d, generator=gen)
    node_ids = [40, 10, 30, 20]
    strategy = FedArenaStrategy(FoolsGold(), copy.deepcopy(model))
    reference = Server(copy.deepcopy(model), FoolsGold())
    for r in (1, 2):
        codec = ArrayCodec.of(strategy.server.model)
        # round 1: two colluders (10, 20) send one update (FoolsGold's sybils); round 2: all independent, so
        # only the history from round 1 can tell the colluders apart
        vectors = [(0.01 * base if r == 1 and nid in (10, 20) else 0.001 * torch.randn(d, generator=gen))
                   for nid in node_ids]
        global_model = copy.deepcopy(strategy.server.model)
        replies = _replies(global_model, vectors, node_ids, r)
        state = GlobalState(model_to_vector(global_model))
        updates = sorted((ClientUpdate(nid, codec.to_state(m.content["arrays"]).params - state.params, "delta", 10)
                          for nid, m in zip(node_ids, replies, strict=True)), key=lambda u: u.client_id)
        record = reference.step(updates)
        strategy.aggregate_train(r, replies)
        assert strategy.records[r].weights == record.weights
        assert torch.equal(strategy.server.state.params, reference.state.params)
    fresh = FoolsGold()(torch.stack([u.vector for u in updates]), None, [u.client_id for u in updates])
    assert min(fresh.weights.tolist()) > 0  # without history round 2 looks honest
    assert strategy.records[2].weights[10] == strategy.records[2].weights[20] == 0.0  # the strategy remembered


def test_strategy_refuses_unknown_aggregator_by_name() -> None:
    with pytest.raises(KeyError, match="krum"):
        FedArenaStrategy("not_an_aggregator", tiny_mlp())


def test_fedsgd_replies_step_like_the_server() -> None:
    """kind="gradient": replies carry global + gradient; the step is w − server_lr·lr·agg."""
    model = tiny_mlp()
    training = LocalTraining(algorithm="fedsgd", lr=0.3, batch_size=8)
    datas = [synthetic_images(16, classes=4, seed=s) for s in range(4)]
    replies = [train_reply(_train_message(model, 50 + c), worker=copy.deepcopy(model), data=datas[c],
                           training=training, client_id=c, seed=1) for c in range(4)]
    strategy = FedArenaStrategy("median", copy.deepcopy(model), kind="gradient", client_lr=0.3, server_lr=0.5)
    arrays, _ = strategy.aggregate_train(1, replies)
    reference = Server(copy.deepcopy(model), fedarena.defenses.aggregation.CoordinateMedian(), server_lr=0.5)
    state = GlobalState(model_to_vector(model))
    updates = [train_client(copy.deepcopy(model), state, c, datas[c], training,
                            torch_generator(1, "client", c, "round", 0))[0] for c in range(4)]
    for u, c in zip(updates, range(4), strict=True):
        u.client_id = 50 + c  # the strategy keys replies by node id
    reference.step(updates, client_lr=0.3)
    torch.testing.assert_close(ArrayCodec.of(model).to_state(arrays).params, reference.state.params, rtol=0,
                               atol=1e-6)
    assert float((reference.state.params - state.params).abs().max()) > 1e-3


def _client_reply(model: torch.nn.Module, update: torch.Tensor, msg: Message, num: int = 10) -> Message:
    codec, state = ArrayCodec.of(model), GlobalState(model_to_vector(model))
    arrays = update_record(codec, state, ClientUpdate(0, update, "delta", num), msg.content["arrays"])
    return _reply(msg, arrays, num)


def test_transform_mod_applies_the_fedarena_transform_with_the_simulation_stream() -> None:
    model = tiny_mlp()
    d = ArrayCodec.of(model).layout.dim
    update = 0.01 * torch.randn(d, generator=torch.Generator().manual_seed(2))
    msg = _train_message(model, node_id=555, server_round=3)
    mod = TransformMod(GaussianNoise(0.1), seed=7, index=1, model=model)
    out = mod(msg, _context(555, partition_id=4), lambda m, c: _client_reply(model, update, m))
    got = ArrayCodec.of(model).to_state(out.content["arrays"]).params - model_to_vector(model)
    expected = GaussianNoise(0.1)(ClientUpdate(4, update, "delta", 10), torch_generator(7, "transform", 1, 4, 2))
    torch.testing.assert_close(got, expected.vector, rtol=0, atol=1e-6)
    assert float((got - update).abs().max()) > 0.05


def test_model_poisoning_mod_flips_the_clients_own_update() -> None:
    model = tiny_mlp()
    d = ArrayCodec.of(model).layout.dim
    update = 0.01 * torch.randn(d, generator=torch.Generator().manual_seed(3))
    msg = _train_message(model, node_id=5)
    out = poisoning_mod("sign_flip", scale=2.0)(msg, _context(5, 0), lambda m, c: _client_reply(model, update, m))
    assert isinstance(poisoning_mod("sign_flip"), ModelPoisoningMod)
    got = ArrayCodec.from_record(out.content["arrays"]).to_state(out.content["arrays"]).params - model_to_vector(model)
    torch.testing.assert_close(got, -2.0 * update, rtol=0, atol=1e-6)


def test_data_poisoning_and_trainer_mods_change_how_the_client_trains() -> None:
    data = synthetic_images(48, classes=4, seed=5)
    training = LocalTraining(lr=0.1, batch_size=16)
    model = tiny_mlp()
    msg = _train_message(model, node_id=11, server_round=2)

    def app(m: Message, c: Context) -> Message:
        return train_reply(m, worker=copy.deepcopy(model), data=data, training=training, client_id=3, seed=9)

    attack = LabelFlip({1: 2})
    assert isinstance(poisoning_mod("label_flip", pairs={1: 2}), DataPoisoningMod)
    poisoned = DataPoisoningMod(attack, seed=9)(msg, _context(11, 3), app)
    clean = app(msg, _context(11, 3))
    state = GlobalState(model_to_vector(model))
    expected, _ = train_client(copy.deepcopy(model), state, 3, attack.poison(data, torch_generator(9, "poison", 3, 1)),
                               training, torch_generator(9, "client", 3, "round", 1))
    codec = ArrayCodec.of(model)
    got = codec.to_state(poisoned.content["arrays"]).params - state.params
    torch.testing.assert_close(got, expected.vector, rtol=0, atol=1e-6)
    assert float((codec.to_state(clean.content["arrays"]).params - state.params - got).abs().max()) > 1e-4

    def halved(*args: object) -> tuple[ClientUpdate, object]:
        upd, private = train_client(*args)  # type: ignore[arg-type]
        return ClientUpdate(upd.client_id, 0.5 * upd.vector, upd.kind, upd.num_samples, upd.metadata), private

    slow = TrainerMod(halved)(msg, _context(11, 3), app)
    clean_update = codec.to_state(clean.content["arrays"]).params - state.params
    torch.testing.assert_close(codec.to_state(slow.content["arrays"]).params - state.params, 0.5 * clean_update,
                               rtol=0, atol=1e-6)


def test_privacy_mods_from_the_registry() -> None:
    mods = privacy_mods("gaussian_noise", sigma=0.1)
    assert len(mods) == 1 and isinstance(mods[0], TransformMod) and isinstance(mods[0].transform, GaussianNoise)
    assert isinstance(privacy_mods("dp_sgd")[0], TrainerMod)
    with pytest.raises(ValueError, match="server-side aggregator"):
        privacy_mods("dp_fedavg", clients_per_round=5, num_clients=10)


def test_omniscient_wrapper_rewrites_malicious_replies_before_the_inner_strategy() -> None:
    model = tiny_mlp()
    d = ArrayCodec.of(model).layout.dim
    gen = torch.Generator().manual_seed(4)
    vectors = [0.01 * torch.randn(d, generator=gen) for _ in range(6)]
    partition_ids = [5, 0, 3, 1, 4, 2]  # clients report ids; malicious are 0 and 1
    codec, state = ArrayCodec.of(model), GlobalState(model_to_vector(model))
    like = ArrayRecord(model.state_dict())
    replies = [_reply(_train_message(model, 1000 + pid), update_record(codec, state, ClientUpdate(pid, v, "delta", 10),
                                                                       like), **{"client-id": pid})
               for pid, v in zip(partition_ids, vectors, strict=True)]
    inner = FedArenaStrategy("fedavg", copy.deepcopy(model), client_id_key="client-id")
    wrapper = OmniscientAttack(inner, "alie", model, [0, 1], seed=3, client_id_key="client-id")
    wrapper._global = like  # what configure_train records (it needs a Grid to sample)
    arrays, _ = wrapper.aggregate_train(2, replies)

    by_id = {pid: codec.to_state(m.content["arrays"]).params - state.params for pid, m in
             zip(partition_ids, _replies_unmodified(model, vectors, partition_ids), strict=True)}
    ctx = RoundContext(round=1, honest=torch.stack([by_id[i] for i in (2, 3, 4, 5)]),
                       own=torch.stack([by_id[0], by_id[1]]), client_ids=[0, 1], num_samples=torch.tensor([10., 10.]),
                       num_clients=6, global_params=state.params, kind="delta",
                       generator=torch_generator(3, "update_attack", 0, 1))
    crafted = ALIE().craft(ctx)
    reference = Server(copy.deepcopy(model), FedAvg())
    reference.step([ClientUpdate(i, crafted[i] if i < 2 else by_id[i], "delta", 10) for i in range(6)])
    torch.testing.assert_close(codec.to_state(arrays).params, reference.state.params, rtol=0, atol=1e-6)
    assert inner.records[2].weights.keys() == set(range(6))

    twice = replies + [_reply(_train_message(model, 2000), like, **{"client-id": 3})]  # a second reply as client 3
    inner.aggregate_train(3, twice)
    assert "second reply" in inner.records[3].rejected[3] and inner.records[3].weights.keys() == set(range(6))


def _replies_unmodified(model: torch.nn.Module, vectors: list[torch.Tensor], ids: list[int]) -> list[Message]:
    return _replies(model, vectors, ids)


def _importable_app() -> None:
    """The example app's package, importable here and in Ray's worker processes."""
    sys.path.insert(0, str(APP_DIR))
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join([root, str(APP_DIR), os.environ.get("PYTHONPATH", "")])


def on_ray(server_app: object, client_app: object, num_supernodes: int) -> None:
    """Flower's simulation engine (Ray backend) with one worker: the 2-core CI budget."""
    from flwr.simulation import run_simulation

    run_simulation(server_app, client_app, num_supernodes=num_supernodes,  # type: ignore[arg-type]
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}})


def _equivalence(dataset: str) -> None:
    """Simulation vs Flower's simulation engine (Ray, one worker): every round's global model."""
    _importable_app()
    from fedarena_flower.client_app import make_client_app
    from fedarena_flower.server_app import make_server_app
    from fedarena_flower.task import Setup, client_datasets, dataset_name, make_model

    from fedarena.fl_core.client import Client
    from fedarena.fl_core.simulation import Adversary, FederationConfig, Simulation

    setup = Setup(dataset=dataset)
    dataset = dataset_name(setup)
    parts, test = client_datasets(setup)
    model = make_model(setup, test)
    codec = ArrayCodec.of(model)
    sim = Simulation(model, [Client(i, p) for i, p in enumerate(parts)],
                     FederationConfig(rounds=setup.rounds, local=setup.training, seed=setup.seed), aggregator=Krum(),
                     adversaries=[Adversary(setup.malicious_ids, update_attack=SignFlip(source="own"))], progress=False)
    expected, weights = [sim.server.state.params.clone()], []
    for r in range(setup.rounds):
        weights.append(sim.run_round(r).weights)
        expected.append(sim.server.state.params.clone())

    got: dict[int, torch.Tensor] = {}
    strategies: list[FedArenaStrategy] = []
    server_app = make_server_app(setup, "krum", attack="sign_flip", on_strategy=strategies.append,
                                 on_round=lambda r, arrays: got.__setitem__(r, codec.to_state(arrays).params))
    on_ray(server_app, make_client_app(setup, attack="sign_flip"), setup.num_clients)
    assert sorted(got) == list(range(setup.rounds + 1))
    for r in range(setup.rounds + 1):
        step = float((expected[r] - expected[max(r - 1, 0)]).abs().max())
        diff = float((got[r] - expected[r]).abs().max())
        print(f"{dataset} round {r}: max |flower - fedarena| = {diff:.3g} (round step {step:.3g})")
        assert diff <= 1e-6 and (r == 0 or step > 1e-3)
    assert [strategies[0].records[r + 1].weights for r in range(setup.rounds)] == weights
    assert all(max(w, key=w.get) not in setup.malicious_ids for w in weights)  # Krum never picks a sign flipper
    assert not math.isnan(float(got[setup.rounds].sum()))


@pytest.mark.slow
def test_flower_simulation_reproduces_fedarena_simulation() -> None:
    """The acceptance check, on MNIST when the data root has it, else on digits (one Ray
    start costs 20-50 s on 2 shared cores, so one dataset per run: the one a user gets)."""
    from tests.helpers import shared_assets

    root = shared_assets()
    if root is not None:
        os.environ.setdefault("FEDARENA_DATA", str(root))
    _equivalence("auto")


def _readme_snippet() -> str:
    import re

    return re.findall(r"```python\n(.*?)```", (APP_DIR / "README.md").read_text(), flags=re.S)[0]


def test_example_readme_snippet_builds_the_apps() -> None:
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    snippet = _readme_snippet()
    namespace: dict[str, object] = {"Net": tiny_mlp}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102
    assert isinstance(namespace["server_app"], ServerApp) and isinstance(namespace["client_app"], ClientApp)
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 15


@pytest.mark.slow
def test_example_readme_snippet_runs_on_the_simulation_engine(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's ServerApp (node-id keyed Krum) against the example's clients, on Ray."""
    _importable_app()
    from fedarena_flower.client_app import make_client_app
    from fedarena_flower.task import Setup, client_datasets, make_model

    setup = Setup(dataset="digits")
    _, test = client_datasets(setup)
    namespace: dict[str, object] = {"Net": lambda: make_model(setup, test)}
    exec(compile(_readme_snippet(), "README.md", "exec"), namespace)  # noqa: S102
    client_app = make_client_app(setup, attack=None, privacy="gaussian_noise", privacy_args={"sigma": 0.01})
    on_ray(namespace["server_app"], client_app, setup.num_clients)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    weights = eval(out.strip().splitlines()[-1])  # noqa: S307  (the snippet prints {node id: weight})
    assert len(weights) == setup.num_clients and sorted(weights.values()) == [0.0] * 9 + [1.0]
