"""The protocol seam: FedAvg default, a shared sub-model (FedPer), client momentum (MoNNA)."""

import copy

import pytest
import torch

from fedarena.fl_core import Client, ClientUpdate, FederationConfig, LocalTraining, Server, Simulation, model_to_vector
from fedarena.fl_core.client import GlobalState, train_client
from fedarena.fl_core.models import build_model
from fedarena.fl_core.protocol import PROTOCOLS, ClientMomentum, ClientState, FedAvgProtocol, FedPer
from fedarena.fl_core.registry import UnknownNameError
from fedarena.fl_core.vectors import ParameterLayout, buffers_to_vector

from .helpers import synthetic_images, tiny_cnn_bn


def _mlp():
    return build_model("mlp", 4, (1, 8, 8), hidden=(16,), seed=0)


def _federation(protocol=None, local=None, model=None, rounds=3, clients_per_round=3, **kwargs):
    data = synthetic_images(n=120, seed=1)
    clients = [Client(i, data.subset(torch.arange(i, 120, 4))) for i in range(4)]
    cfg = FederationConfig(rounds=rounds, clients_per_round=clients_per_round, seed=5,
                           local=local or LocalTraining(lr=0.1, epochs=1, batch_size=8))
    model = model if model is not None else _mlp()
    return Simulation(model, clients, cfg, synthetic_images(n=40, seed=2), protocol=protocol, progress=False,
                      **kwargs)


def _run(sim):
    history = sim.run().to_dict()
    for r in history["rounds"]:
        r["seconds"] = 0
    return history, model_to_vector(sim.model)


def test_fedavg_protocol_explicit_or_via_a_ready_server_is_the_default_bit_for_bit():
    default = _run(_federation())
    explicit = _run(_federation(FedAvgProtocol()))
    model = _mlp()
    ready = _run(_federation(model=model, server=Server(model, protocol=FedAvgProtocol())))
    for other in (explicit, ready):
        assert other[0] == default[0] and torch.equal(other[1], default[1])


def test_simulation_rejects_a_server_for_another_model_or_with_a_second_aggregator():
    model = _mlp()
    with pytest.raises(ValueError, match="server.model"):
        _federation(model=_mlp(), server=Server(model))
    with pytest.raises(ValueError, match="not both"):
        _federation(model=model, server=Server(model), protocol=FedAvgProtocol())


# -- (a) a shared sub-model: FedPer, the head stays on each client ------------------------

def test_fedper_uploads_the_body_and_keeps_each_clients_head():
    protocol = FedPer(private=("fc2",))
    uploads = []
    sim = _federation(protocol, observers=[uploads.append], rounds=1, clients_per_round=None)
    full = ParameterLayout.of(sim.model)
    body = ParameterLayout.of(sim.model, ["fc1.weight", "fc1.bias"])
    head_idx = ParameterLayout.of(sim.model, ["fc2.weight", "fc2.bias"]).index_in(full)
    assert sim.server.layout == body and sim.server.state.params.numel() == body.dim < full.dim
    initial = model_to_vector(sim.model).clone()
    heads: dict[int, torch.Tensor] = {}
    for r in range(3):
        before = {cid: st.values["private"].clone() for cid, st in sim.client_states.items()}
        global_body = sim.server.state.params.clone()
        sampled = sim.sample_clients(r)
        # what each sampled client should end the round with: train the full model from (body, own head)
        expected = {}
        for client in sampled:
            start_head = heads.get(client.client_id, initial[head_idx])
            start = initial.clone()
            start[head_idx] = start_head
            start[body.index_in(full)] = global_body
            update, _ = train_client(copy.deepcopy(sim.model), GlobalState(start), client.client_id, client.data,
                                     sim.config.local, _client_gen(sim, client.client_id, r))
            expected[client.client_id] = (start_head + update.vector[head_idx], update.vector[body.index_in(full)])
        uploads.clear()
        sim.history.rounds.append(sim.run_round(r))
        for event in uploads:
            cid = event.update.client_id
            assert event.update.vector.numel() == body.dim  # only the body leaves the client
            assert torch.equal(event.update.vector, expected[cid][1])
            assert torch.equal(sim.client_states[cid].values["private"], expected[cid][0])
            heads[cid] = expected[cid][0]
        for cid, head in before.items():  # a client that did not train keeps its head untouched
            if cid not in expected:
                assert torch.equal(sim.client_states[cid].values["private"], head)
    # the server's model: body trained, head never touched by the aggregate
    final = model_to_vector(sim.model)
    assert torch.equal(final[head_idx], initial[head_idx])
    assert not torch.equal(final[body.index_in(full)], initial[body.index_in(full)])
    # every client ended with its own head
    assert len({tuple(h.tolist()[:5]) for h in heads.values()}) == len(heads) == 4
    # personalised evaluation: one accuracy per client, the mean reported
    record = sim.history.rounds[-1]
    per_client = record.info["client_accuracy"]
    assert sorted(per_client) == [0, 1, 2, 3]
    assert record.accuracy == pytest.approx(sum(per_client.values()) / 4)


def _client_gen(sim, cid, r):
    from fedarena.fl_core.seeding import torch_generator
    return torch_generator(sim.config.seed, "client", cid, "round", r)


def test_fedper_server_rejects_a_whole_model_upload_and_names_the_protocol():
    model = _mlp()
    server = Server(model, protocol=FedPer(private=("fc2",)))
    full = ClientUpdate(0, torch.zeros(ParameterLayout.of(model).dim), "delta", 10)
    record = server.step([full])
    assert not record.applied and "fedper" in record.rejected[0]
    good = ClientUpdate(1, torch.full((server.layout.dim,), 0.5), "delta", 10)
    head = model_to_vector(model)[-ParameterLayout.of(model, ["fc2.weight", "fc2.bias"]).dim:].clone()
    assert server.step([good]).applied
    after = model_to_vector(model)
    assert torch.equal(after[-head.numel():], head)
    assert torch.equal(after[: server.layout.dim], server.state.params)


def test_fedper_fedsgd_steps_the_private_head_on_the_client():
    local = LocalTraining(algorithm="fedsgd", lr=0.2, batch_size=8)
    sim = _federation(FedPer(private=("fc2",)), local=local, rounds=1, clients_per_round=None)
    initial = model_to_vector(sim.model).clone()
    sim.run()
    head = ParameterLayout.of(sim.model, ["fc2.weight", "fc2.bias"]).index_in(ParameterLayout.of(sim.model))
    for client in sim.clients:
        grad, _ = train_client(copy.deepcopy(sim.model), GlobalState(initial), client.client_id, client.data,
                               local, _client_gen(sim, client.client_id, 0))
        expected = torch.add(initial[head], grad.vector[head], alpha=-local.lr)
        assert torch.equal(sim.client_states[client.client_id].values["private"], expected)


def test_fedper_bad_private_names_are_clear_errors():
    with pytest.raises(ValueError, match="no trainable parameters under"):
        Server(_mlp(), protocol=FedPer(private=("classifier",)))
    with pytest.raises(ValueError, match="nothing would be shared"):
        Server(_mlp(), protocol=FedPer(private=("fc1", "fc2")))
    with pytest.raises(ValueError, match="collection of name prefixes"):
        FedPer(private="fc2")


# -- (b) client momentum kept across rounds (MoNNA) ---------------------------------------

def test_client_momentum_zero_is_fedavg_bit_for_bit():
    for local in (LocalTraining(lr=0.1, epochs=1, batch_size=8, momentum=0.5),
                  LocalTraining(algorithm="fedsgd", lr=0.2, batch_size=8)):
        assert _same(_run(_federation(ClientMomentum(0.0), local=local)), _run(_federation(local=local)))


def _same(a, b):
    return a[0] == b[0] and torch.equal(a[1], b[1])


def test_client_momentum_is_the_damped_average_of_own_updates_and_persists_per_client():
    beta = 0.75
    protocol = ClientMomentum(beta)
    kept = {cid: ClientState(cid, GlobalState(torch.zeros(3))) for cid in (0, 1)}
    start = GlobalState(torch.zeros(3))
    t = LocalTraining()
    u = {0: [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.0, 4.0])], 1: [torch.tensor([8.0, 8.0, 8.0])]}
    m0_1 = protocol.client_upload(ClientUpdate(0, u[0][0], "delta", 5), start, kept[0], t)
    m1_1 = protocol.client_upload(ClientUpdate(1, u[1][0], "delta", 5), start, kept[1], t)
    m0_2 = protocol.client_upload(ClientUpdate(0, u[0][1], "delta", 5), start, kept[0], t)
    assert torch.allclose(m0_1.vector, (1 - beta) * u[0][0])
    assert torch.allclose(m1_1.vector, (1 - beta) * u[1][0])  # client 1's momentum never saw client 0's
    assert torch.allclose(m0_2.vector, beta * (1 - beta) * u[0][0] + (1 - beta) * u[0][1])
    assert m0_2.kind == "delta" and m0_2.num_samples == 5 and m0_2.metadata["client_momentum"] == beta
    # the kept state is a copy: changing the upload in place (a transform) cannot corrupt it
    m0_2.vector.zero_()
    assert torch.allclose(kept[0].values["momentum"], beta * (1 - beta) * u[0][0] + (1 - beta) * u[0][1])


def test_client_momentum_in_a_federation_changes_training_and_is_kept_client_side():
    uploads = []
    sim = _federation(PROTOCOLS.build("client_momentum", beta=0.9), observers=[uploads.append])
    history, params = _run(sim)
    assert not _same((history, params), _run(_federation()))
    last = {}
    for event in uploads:
        last[event.update.client_id] = event.update.vector
    assert set(sim.client_states) == set(last)
    for cid, vec in last.items():
        assert torch.equal(sim.client_states[cid].values["momentum"], vec)
    assert not hasattr(sim.server, "client_states")


def test_protocol_registry_names_and_unknown_names():
    assert {"fedavg", "client_momentum", "fedper"} <= set(PROTOCOLS.names())
    assert isinstance(PROTOCOLS.build("fedavg"), FedAvgProtocol)
    with pytest.raises(UnknownNameError, match="client_momentum"):
        PROTOCOLS.get("no_such_protocol")
    with pytest.raises(ValueError, match="beta"):
        ClientMomentum(1.0)


def test_sub_layout_indices_and_buffers_pass_through_a_protocol_server():
    model = tiny_cnn_bn()
    full = ParameterLayout.of(model)
    sub = ParameterLayout.of(model, ["4.weight", "0.bias"])
    assert sub.names == ("0.bias", "4.weight")  # the model's order, not the caller's
    vec = model_to_vector(model)
    assert torch.equal(vec[sub.index_in(full)], sub.flatten(dict(model.named_parameters())).detach())
    with pytest.raises(KeyError, match="no trainable parameters"):
        ParameterLayout.of(model, ["5.weight"])
    server = Server(model, protocol=FedPer(private=("4",)))
    assert server.state.buffers is not None and torch.equal(server.state.buffers, buffers_to_vector(model))
