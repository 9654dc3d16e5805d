"""HyperFL on the protocol seam: generation, what leaves a client, the server's average,
per-client isolation, the reference's local round, the noniid_s partition, composition."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fedarena.attacks.poisoning.model_poisoning import SignFlip
from fedarena.defenses.aggregation.krum import Krum
from fedarena.defenses.protocols import (
    REFERENCE_TRAINING,
    HyperFL,
    ReferenceCNN,
    build_hyperfl_net,
    hyperfl_sizes,
    target_parameters,
)
from fedarena.fl_core import Adversary, Client, FederationConfig, LocalTraining, Simulation
from fedarena.fl_core.client import GlobalState, batch_schedule, load_state
from fedarena.fl_core.models import build_model
from fedarena.fl_core.partition import NONIID_S_GROUPS, PARTITIONERS, label_distribution, partition
from fedarena.fl_core.protocol import PROTOCOLS, ClientState
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.vectors import ParameterLayout, model_to_vector

from .helpers import synthetic_images

LOCAL = LocalTraining(lr=0.02, epochs=2, batch_size=10, momentum=0.5, weight_decay=5e-4)


def _net(seed=0):
    return build_hyperfl_net(build_model("mlp", 4, (1, 8, 8), hidden=(16,), seed=0), head="fc2", seed=seed)


def _clients(sizes=(30, 20, 40), seed=1):
    data = synthetic_images(n=sum(sizes), seed=seed)
    bounds = np.cumsum((0, *sizes))
    return [Client(i, data.subset(torch.arange(bounds[i], bounds[i + 1]))) for i in range(len(sizes))]


def _split(model, vector):
    """(hypernetwork part, private part: embedding then head) of a full HyperFLNet vector."""
    full = ParameterLayout.of(model)
    shared = [n for n in full.names if n.startswith("hypernetwork.")]
    private = [n for n in full.names if not n.startswith("hypernetwork.")]
    return (vector[ParameterLayout.of(model, shared).index_in(full)],
            vector[ParameterLayout.of(model, private).index_in(full)])


def _sim(clients=None, rounds=1, net=None, **kwargs):
    cfg = FederationConfig(rounds=rounds, seed=3, local=LOCAL)
    return Simulation(net if net is not None else _net(), clients or _clients(), cfg, protocol=HyperFL(),
                      progress=False, **kwargs)


def test_reference_sizes_and_upload_ratio():
    """Counted by hand from the reference's layer sizes (models.py)."""
    cifar = hyperfl_sizes(build_hyperfl_net(ReferenceCNN(10, (3, 32, 32)), seed=0))
    # conv1 16·3·25+16, conv2 32·16·25+32, conv3 64·32·9+64, fc1 128·576+128; head 10·128+10
    assert cifar.generated == 1216 + 12832 + 18496 + 73856 == 106400
    assert cifar.head == 1290 and cifar.target == 107690
    assert cifar.hypernetwork == (64 * 128 + 128) + 129 * 106400 == 13733920
    assert 127 < cifar.upload_ratio < 128
    fmnist = hyperfl_sizes(build_hyperfl_net(ReferenceCNN(10, (1, 28, 28)), seed=0))
    assert fmnist.generated == 416 + 12832 + 800 * 128 + 128 == 115776
    assert fmnist.hypernetwork == 8320 + 129 * 115776


def test_generated_weights_are_the_hypernetwork_output_for_the_embedding():
    net = _net()
    hn = net.hypernetwork
    e = net.embedding.detach()
    features = F.relu(e @ hn.mlp[0].weight.T + hn.mlp[0].bias)
    expected = (features @ hn.heads[0].weight.T + hn.heads[0].bias).view(16, 64)
    generated = net.generate()
    assert list(generated) == ["fc1.weight", "fc1.bias"]
    torch.testing.assert_close(generated["fc1.weight"], expected, rtol=0, atol=1e-6)
    # the network computes with the generated extractor, not the frozen placeholder
    x = synthetic_images(n=5).normalized()
    h = F.relu(x.flatten(1) @ generated["fc1.weight"].T + generated["fc1.bias"])
    torch.testing.assert_close(net(x), h @ net.target.fc2.weight.T + net.target.fc2.bias, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(net.target.fc1.weight, generated["fc1.weight"])


def test_target_parameters_is_the_client_network_and_differentiable():
    net = _net()
    hn = model_to_vector(net.hypernetwork)
    head = torch.cat([p.detach().reshape(-1) for p in net.head_parameters()])
    emb = net.embedding.detach().clone().requires_grad_(True)
    vec = target_parameters(net, hn, emb, head)
    assert vec.numel() == hyperfl_sizes(net).target
    x = synthetic_images(n=6).normalized()
    out = torch.func.functional_call(net.target, net.target_layout.unflatten(vec), (x,))
    torch.testing.assert_close(out, net(x))
    (g,) = torch.autograd.grad(out.square().sum(), emb)
    assert g.abs().sum() > 0


def test_only_the_hypernetwork_leaves_a_client():
    uploads = []
    sim = _sim(observers=[uploads.append])
    hn_dim = sum(p.numel() for p in sim.model.hypernetwork.parameters())
    assert sim.server.layout.dim == hn_dim
    assert all(n.startswith("hypernetwork.") for n in sim.server.layout.names)
    start = model_to_vector(sim.model)
    sim.run()
    assert len(uploads) == 3
    for event in uploads:
        kept = sim.client_states[event.update.client_id].values["private"]  # embedding, then head
        assert event.update.vector.numel() == hn_dim
        assert kept.numel() == 64 + 4 * 16 + 4
        assert not torch.isin(kept, event.update.vector).any()
        assert not torch.equal(kept, _split(sim.model, start)[1])  # the client did train its private part
    # the upload is exactly the hypernetwork part of the client's local delta
    first = uploads[0]
    client = sim.clients[0]
    update, _ = sim.protocol.trainer(copy.deepcopy(sim.model), GlobalState(start), 0, client.data, LOCAL,
                                     torch_generator(3, "client", 0, "round", 0))
    assert torch.equal(first.update.vector, _split(sim.model, update.vector)[0])


def test_server_averages_hypernetworks_only_weighted_by_samples():
    uploads = []
    sim = _sim(observers=[uploads.append])
    before = model_to_vector(sim.model)
    hn_dim = sim.server.layout.dim
    sim.run()
    after = model_to_vector(sim.model)
    n = torch.tensor([float(e.update.num_samples) for e in uploads])
    assert n.tolist() == [30.0, 20.0, 40.0]
    mean = (n / n.sum()) @ torch.stack([e.update.vector for e in uploads])
    (hn_before, private_before), (hn_after, private_after) = _split(sim.model, before), _split(sim.model, after)
    assert hn_before.numel() == hn_dim
    torch.testing.assert_close(hn_after, hn_before + mean, rtol=0, atol=1e-6)
    assert torch.equal(private_after, private_before)  # the server's embedding and head never move


def test_one_clients_private_state_is_its_own():
    base = _sim()
    base.run()
    clients = _clients()
    clients[1] = Client(1, synthetic_images(n=20, seed=9))
    other = _sim(clients=clients)
    other.run()
    own = [base.client_states[i].values["private"] for i in range(3)]
    changed = [other.client_states[i].values["private"] for i in range(3)]
    assert torch.equal(own[0], changed[0]) and torch.equal(own[2], changed[2])
    assert not torch.equal(own[1], changed[1])
    ptrs = {v.data_ptr() for v in own}
    assert len(ptrs) == 3  # no aliasing between clients
    # round 2: client 0 starts from the shared hypernetwork and *its* embedding and head
    start = base.protocol.client_start(base.server.state, base.client_states[0])
    assert torch.equal(_split(base.model, start.params)[1], own[0])


def _reference_round(net, data, training, gen, clip=50.0):
    """The reference's local round, written the reference's way: nn parameters,
    torch.optim.SGD, generated weights copied into the target, the chain by two
    autograd.grad calls, clip_grad_norm_ per group."""
    net = copy.deepcopy(net)
    target = net.target
    fe = [p for n, p in target.named_parameters() if n in net.generated_names]
    for p in fe:
        p.requires_grad_(True)
    x, y = data.normalized(), data.labels
    head = net.head_parameters()
    opt = torch.optim.SGD(head, lr=0.1, momentum=0.5, weight_decay=5e-4)
    with torch.no_grad():
        target.load_state_dict(net.generate(), strict=False)
    for idx in batch_schedule(len(data), LocalTraining(epochs=1, batch_size=training.batch_size), gen):
        opt.zero_grad()
        F.cross_entropy(target(x[idx]), y[idx]).backward()
        opt.step()
    hn = list(net.hypernetwork.parameters())
    opt = torch.optim.SGD([{"params": hn}, {"params": [net.embedding]}], lr=training.lr,
                          momentum=training.momentum, weight_decay=training.weight_decay)
    for idx in batch_schedule(len(data), training, gen):
        opt.zero_grad()
        weights = net.generate()
        with torch.no_grad():
            target.load_state_dict(weights, strict=False)
        loss = F.cross_entropy(target(x[idx]), y[idx])
        grads = torch.autograd.grad(loss, fe)
        g_hn = torch.autograd.grad(list(weights.values()), hn, grad_outputs=grads, retain_graph=True)
        (g_e,) = torch.autograd.grad(list(weights.values()), [net.embedding], grad_outputs=grads)
        for p, g in zip(hn, g_hn, strict=True):
            p.grad = g
        net.embedding.grad = g_e
        torch.nn.utils.clip_grad_norm_(hn, clip)
        torch.nn.utils.clip_grad_norm_([net.embedding], clip)
        opt.step()
    return net


@pytest.mark.parametrize("clip", [50.0, 1e-3])
def test_local_round_matches_the_reference_way(clip):
    net = _net()
    data = synthetic_images(n=30, seed=4)
    protocol = HyperFL(clip_norm=clip)
    protocol.shared_layout(net)
    worker = copy.deepcopy(net)
    state = GlobalState(model_to_vector(net))
    update, private = protocol.trainer(worker, state, 0, data, LOCAL, torch_generator(0, "t"))
    ref = _reference_round(net, data, LOCAL, torch_generator(0, "t"), clip)
    trained = dict(ref.named_parameters())
    ref_vector = torch.cat([trained[n].detach().reshape(-1) for n in ParameterLayout.of(net).names])
    torch.testing.assert_close(state.params + update.vector, ref_vector, rtol=1e-4, atol=1e-6)
    assert not torch.equal(update.vector, torch.zeros_like(update.vector))
    assert update.kind == "delta" and update.num_samples == 30
    assert update.metadata["steps"] == 3 + 6
    assert private.inputs.shape[0] == 30


def _plain_round(protocol, net, state, data, training, gen):
    """The trainer as it was before its speed-up (the head phase unchanged; the hypernetwork
    phase by autograd through the whole hypernetwork and torch's SGD with weight decay):
    the fast trainer must give these numbers bit for bit."""
    net = copy.deepcopy(net)
    load_state(net, state)
    x, y = data.normalized(), data.labels
    head = net.head_parameters()
    with torch.no_grad():
        generated = net.generate()
    opt = torch.optim.SGD(head, lr=0.1, momentum=0.5, weight_decay=5e-4, foreach=True)
    for idx in batch_schedule(len(data), LocalTraining(epochs=1, batch_size=training.batch_size), gen):
        loss = F.cross_entropy(functional_call(net.target, generated, (x[idx],)), y[idx])
        for p, g in zip(head, torch.autograd.grad(loss, head), strict=True):
            p.grad = g
        opt.step()
    hyper = list(net.hypernetwork.parameters())
    shared = [*hyper, net.embedding]
    opt = torch.optim.SGD([{"params": hyper}, {"params": [net.embedding]}], lr=training.lr,
                          momentum=training.momentum, weight_decay=training.weight_decay, foreach=True)
    for idx in batch_schedule(len(data), training, gen):
        loss = F.cross_entropy(net(x[idx]), y[idx])
        for p, g in zip(shared, torch.autograd.grad(loss, shared), strict=True):
            p.grad = g
        torch.nn.utils.clip_grad_norm_(hyper, protocol.clip_norm, foreach=True)
        torch.nn.utils.clip_grad_norm_([net.embedding], protocol.clip_norm)
        opt.step()
    return model_to_vector(net) - state.params


@pytest.mark.parametrize("reference_cnn", [False, True])
@pytest.mark.parametrize("clip", [50.0, 1e-3])
def test_fast_local_round_is_the_plain_one_bit_for_bit(reference_cnn, clip):
    """The heads' gradients formed as outer products in reused buffers and the weight decay
    added in place change no bit of the update (the protocol's speed-up is a refactor)."""
    if reference_cnn:
        net = build_hyperfl_net(ReferenceCNN(10, (1, 28, 28)), hidden_dim=8, seed=0)
        data = synthetic_images(n=24, size=28, classes=10, seed=4)
    else:
        net, data = _net(), synthetic_images(n=30, seed=4)
    protocol = HyperFL(clip_norm=clip)
    protocol.shared_layout(net)
    state = GlobalState(model_to_vector(net) + 0.01)  # not the initialisation: a later round's start
    update, _ = protocol.trainer(copy.deepcopy(net), state, 0, data, LOCAL, torch_generator(0, "t"))
    plain = _plain_round(protocol, net, state, data, LOCAL, torch_generator(0, "t"))
    assert torch.equal(update.vector, plain)
    assert update.vector.abs().max() > 0


def test_hyperfl_slices_are_fedpers_gathers():
    """HyperFL moves the shared block by slices; FedPer's index gathers give the same values."""
    from fedarena.fl_core.protocol import FedPer
    from fedarena.fl_core.updates import ClientUpdate
    net = _net()
    protocol = HyperFL()
    protocol.shared_layout(net)
    kept = ClientState(0, GlobalState(model_to_vector(net) * 1.5))
    state = GlobalState(model_to_vector(net.hypernetwork) - 0.25)
    start = protocol.client_start(state, kept)
    assert torch.equal(start.params, FedPer.client_start(protocol, state, kept).params)
    vector = torch.randn(start.params.numel(), generator=torch.Generator().manual_seed(0))
    for kind in ("delta", "gradient"):
        ours, theirs = ClientState(0, kept.initial), ClientState(0, kept.initial)
        up = protocol.client_upload(ClientUpdate(0, vector, kind, 5), start, ours, LOCAL)
        ref = FedPer.client_upload(protocol, ClientUpdate(0, vector, kind, 5), start, theirs, LOCAL)
        assert torch.equal(up.vector, ref.vector) and torch.equal(ours.values["private"], theirs.values["private"])
    assert torch.equal(protocol.read_shared(net), FedPer.read_shared(protocol, net))
    other = copy.deepcopy(net)
    protocol.write_shared(state.params, other)
    assert torch.equal(model_to_vector(other), FedPer.client_start(protocol, state, ClientState(
        0, GlobalState(model_to_vector(net)))).params)
    worker = protocol.client_model(other, ours, copy.deepcopy(net))
    assert torch.equal(model_to_vector(worker), model_to_vector(FedPer.client_model(protocol, other, ours)))
    assert not torch.equal(model_to_vector(worker), model_to_vector(other))  # the client's own private part


def test_clipping_bounds_every_hypernetwork_step():
    net = _net()
    data = synthetic_images(n=10, seed=4)
    training = LocalTraining(lr=1.0, epochs=1, batch_size=10)  # one step, no momentum or decay
    protocol = HyperFL(head_epochs=0, clip_norm=1e-3)
    protocol.shared_layout(net)
    state = GlobalState(model_to_vector(net))
    update, _ = protocol.trainer(copy.deepcopy(net), state, 0, data, training, torch_generator(0, "t"))
    hn, private = _split(net, update.vector)
    assert float(hn.norm()) == pytest.approx(1e-3, rel=1e-3)
    assert float(private[:64].norm()) == pytest.approx(1e-3, rel=1e-3)
    assert torch.equal(private[64:], torch.zeros(68))  # no head phase


def test_personalised_evaluation_on_local_splits():
    tests = {i: synthetic_images(n=12, seed=20 + i) for i in range(3)}
    sim = _sim(test_set=tests, rounds=2)
    history = sim.run()
    per = history.rounds[-1].info["client_accuracy"]
    assert set(per) == {0, 1, 2}
    assert history.rounds[-1].accuracy == pytest.approx(sum(per.values()) / 3)
    # client 1's number is its own network on its own split
    protocol = sim.protocol
    worker = copy.deepcopy(sim.model)
    start = protocol.client_start(sim.server.state, sim.client_states[1])
    from fedarena.fl_core.evaluation import evaluate
    from fedarena.fl_core.vectors import vector_to_model
    vector_to_model(start.params, worker)
    assert per[1] == evaluate(worker, tests[1])[0]


def test_fedavg_protocol_on_local_splits_is_the_mean_over_clients():
    from fedarena.fl_core.evaluation import evaluate
    tests = {i: synthetic_images(n=12, seed=30 + i) for i in range(2)}
    model = build_model("mlp", 4, (1, 8, 8), hidden=(16,), seed=0)
    sim = Simulation(model, _clients((20, 20)), FederationConfig(rounds=1, seed=0, local=LOCAL), test_set=tests,
                     progress=False)
    record = sim.run().rounds[-1]
    accs = [evaluate(sim.model, tests[i])[0] for i in range(2)]
    assert record.accuracy == pytest.approx(sum(accs) / 2)
    assert record.info["client_accuracy"] == {0: accs[0], 1: accs[1]}


def test_registry_and_refusals():
    assert isinstance(PROTOCOLS.build("hyperfl"), HyperFL)
    with pytest.raises(TypeError, match="HyperFLNet"):
        HyperFL().shared_layout(build_model("mlp", 4, (1, 8, 8), hidden=(16,), seed=0))
    with pytest.raises(ValueError, match="owns the local round"):
        _sim(trainer=lambda *a: None)
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        cfg = FederationConfig(rounds=1, local=LocalTraining(optimizer="adam"))
        Simulation(_net(), _clients(), cfg, protocol=HyperFL(), progress=False).run()
    with pytest.raises(ValueError, match="no parameters under"):
        build_hyperfl_net(build_model("mlp", 4, (1, 8, 8), hidden=(16,), seed=0), head="cls")
    assert REFERENCE_TRAINING.lr == 0.02 and REFERENCE_TRAINING.epochs == 5


def test_sign_flip_and_krum_act_on_hypernetwork_updates():
    uploads = []
    clients = _clients((20, 20, 20, 20, 20))
    adversary = Adversary([4], update_attack=SignFlip(), name="sign_flip")
    sim = _sim(clients=clients, adversaries=[adversary], aggregator=Krum(f=1), observers=[uploads.append])
    record = sim.run().rounds[0]
    assert record.applied and not record.rejected
    assert record.weights[4] == 0.0 and sum(record.weights.values()) == 1.0
    honest = torch.stack([e.update.vector for e in uploads if e.update.client_id != 4]).mean(0)
    bad = next(e.update.vector for e in uploads if e.update.client_id == 4)
    torch.testing.assert_close(bad, -honest)


# -- the noniid_s partition -------------------------------------------------------------

def _labels(per_class=2000, classes=10, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes), per_class))


def test_noniid_s_sizes_and_label_counts_are_the_references():
    y = _labels()
    parts = partition("noniid_s", y, 20, seed=0, local_size=600)
    assert [len(p) for p in parts] == [600] * 20
    counts = label_distribution(y, parts, 10)
    for i in range(20):
        expected = np.full(10, 12)  # int(600·0.2) = 120 spread over 10 classes
        for c in NONIID_S_GROUPS[i % 5]:
            expected[c] += 160  # 480 over the triplet
        assert counts[i].tolist() == expected.tolist()
    everything = torch.cat(parts)
    assert everything.unique().numel() == everything.numel()  # no sample serves two clients
    # the local test split: the same scheme with 300 per client
    test = partition("noniid_s", _labels(800, seed=1), 20, seed=0, local_size=300)
    test_counts = label_distribution(_labels(800, seed=1), test, 10)
    assert (test_counts[:, 1] == np.where(np.arange(20) % 5 == 0, 6 + 80, 6)).all()


def test_noniid_s_remainders_seed_and_errors():
    y = _labels()
    parts = partition("noniid_s", y, 5, seed=0, local_size=101, iid_fraction=0.25)
    counts = label_distribution(y, parts, 10)
    # 25 IID: 2 per class, the last class 2 + 5; 76 dominant: 25, 25, 26 on the group's last
    assert counts[0].tolist() == [27, 27, 2 + 26, 2, 2, 2, 2, 2, 2, 7]
    same = partition("noniid_s", y, 5, seed=0, local_size=101, iid_fraction=0.25)
    other = partition("noniid_s", y, 5, seed=1, local_size=101, iid_fraction=0.25)
    assert all(torch.equal(a, b) for a, b in zip(parts, same, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(parts, other, strict=True))
    with pytest.raises(ValueError, match="class 0 has 2000 samples"):
        partition("noniid_s", y, 20, seed=0, local_size=6000)
    with pytest.raises(ValueError, match="group labels"):
        partition("noniid_s", y, 5, seed=0, groups=((0, 11),))
    assert "noniid_s" in PARTITIONERS.names()


def test_client_state_initial_private_part_is_the_common_initialisation():
    net = _net()
    protocol = HyperFL()
    layout = protocol.shared_layout(net)
    full = model_to_vector(net)
    kept = ClientState(0, GlobalState(full))
    assert torch.equal(protocol.head(kept), _split(net, full)[1])
    assert layout.names == tuple(n for n in ParameterLayout.of(net).names if n.startswith("hypernetwork."))


def test_client_level_dp_acts_on_the_hypernetwork_upload_only():
    from fedarena.defenses.privacy.dp_fedavg import LocalDPNoise
    from fedarena.defenses.privacy.perturbations import Clipping
    plain, noisy, clipped = [], [], []
    base = _sim(observers=[plain.append])
    base.run()
    dp = _sim(observers=[noisy.append], transforms=[LocalDPNoise(clip_norm=0.05, noise_multiplier=1.0)])
    dp.run()
    clip = _sim(observers=[clipped.append], transforms=[Clipping(0.01)])
    clip.run()
    for a, b, c in zip(plain, noisy, clipped, strict=True):
        assert b.update.vector.shape == a.update.vector.shape
        assert not torch.allclose(a.update.vector, b.update.vector)
        assert float(c.update.vector.norm()) == pytest.approx(0.01, rel=1e-4)
        # what the client keeps comes from its own training, not from the transformed upload
        cid = a.update.client_id
        assert torch.equal(base.client_states[cid].values["private"], dp.client_states[cid].values["private"])
