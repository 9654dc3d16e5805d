"""Dropout under control in a federation: per-client seeded masks, recorded, replayable."""

import torch
import torch.nn.functional as F

from fedarena.fl_core import Client, FederationConfig, LocalTraining, Simulation, model_to_vector
from fedarena.fl_core.client import GlobalState, train_client
from fedarena.fl_core.models import build_model
from fedarena.fl_core.models.dropout import dropout_masks
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.vectors import vector_to_model

from .helpers import synthetic_images


def _model(dropout=0.5):
    return build_model("mlp", 4, (1, 8, 8), hidden=(16, 16), dropout=dropout, seed=0)


def _federation(local, dropout=0.5, seed=5, trainer=None, rounds=2):
    data = synthetic_images(n=96, seed=1)
    clients = [Client(i, data.subset(torch.arange(i, 96, 3))) for i in range(3)]
    events = []
    cfg = FederationConfig(rounds=rounds, seed=seed, local=local)
    extra = {} if trainer is None else {"trainer": trainer}
    sim = Simulation(_model(dropout), clients, cfg, observers=[events.append], progress=False, **extra)
    return sim, events


FEDAVG = LocalTraining(lr=0.1, steps=3, batch_size=8)
FEDSGD = LocalTraining(algorithm="fedsgd", lr=0.1, batch_size=8)


def test_masks_are_recorded_one_per_local_step_and_reproducible_from_the_seed():
    sim, events = _federation(FEDAVG)
    sim.run()
    again, events2 = _federation(FEDAVG)
    again.run()
    assert len(events) == len(events2) == 6
    for a, b in zip(events, events2, strict=True):
        masks = a.private.dropout_masks
        assert masks is not None and sorted(masks) == ["dropout1", "dropout2"]
        assert all(len(m) == FEDAVG.steps for m in masks.values())
        assert masks["dropout1"][0].shape == (8, 16)
        assert set(masks["dropout1"][0].unique().tolist()) <= {0.0, 1.0}
        assert all(torch.equal(x, y) for s in masks for x, y in zip(masks[s], b.private.dropout_masks[s], strict=True))
        assert torch.equal(a.update.vector, b.update.vector)
    # another client, another round: other masks
    first = {(e.round, e.update.client_id): e.private.dropout_masks["dropout1"][0] for e in events}
    assert not torch.equal(first[(0, 0)], first[(0, 1)])
    assert not torch.equal(first[(0, 0)], first[(1, 0)])
    # another seed: other masks
    other, events3 = _federation(FEDAVG, seed=6)
    other.run()
    assert not torch.equal(events3[0].private.dropout_masks["dropout1"][0], first[(0, 0)])


def test_masks_come_from_the_clients_own_dropout_generator():
    sim, events = _federation(FEDAVG, rounds=1)
    sim.run()
    event = events[1]
    cid = event.update.client_id
    worker = _model()
    gen = torch_generator(5, "dropout", cid, 0)
    with dropout_masks(worker, generator=gen, record=True) as masks:
        update, _ = train_client(worker, event.state, cid, sim.clients[cid].data, FEDAVG,
                                 torch_generator(5, "client", cid, "round", 0))
    assert torch.equal(update.vector, event.update.vector)
    assert all(torch.equal(x, y) for s in masks for x, y in zip(masks[s], event.private.dropout_masks[s],
                                                                  strict=True))


def test_replaying_the_recorded_masks_reproduces_the_fedsgd_gradient_exactly():
    sim, events = _federation(FEDSGD, rounds=1)
    sim.run()
    for event in events:
        model = _model()
        vector_to_model(event.state.params, model)  # the global model the round started from
        params = [p for p in model.parameters() if p.requires_grad]
        with dropout_masks(model, given=event.private.dropout_masks):
            loss = F.cross_entropy(model(event.private.inputs), event.private.labels)
        grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
        assert torch.equal(grad, event.update.vector)
        # without the masks (plain train-mode dropout) the gradient is another one
        plain = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            F.cross_entropy(model(event.private.inputs), event.private.labels), params)])
        assert not torch.equal(plain, event.update.vector)


def test_no_active_dropout_records_none():
    for dropout, local in ((0.0, FEDAVG), (0.5, LocalTraining(lr=0.1, steps=2, batch_size=8, model_mode="eval"))):
        sim, events = _federation(local, dropout=dropout, rounds=1)
        sim.run()
        assert events and all(e.private.dropout_masks is None for e in events)


def test_a_round_leaves_the_global_rng_untouched():
    sim, _ = _federation(FEDAVG)
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    sim.run_round(0)
    assert torch.equal(torch.get_rng_state(), state)
    # and the global RNG state does not change the round's result
    a, ea = _federation(FEDAVG, rounds=1)
    torch.manual_seed(1)
    a.run()
    b, eb = _federation(FEDAVG, rounds=1)
    torch.manual_seed(2)
    b.run()
    assert torch.equal(model_to_vector(a.model), model_to_vector(b.model))


def test_dp_sgd_trainer_draws_seeded_masks_and_they_are_recorded():
    # DP-SGD trains an Opacus copy of the worker; the copy must draw from the client's generator
    from fedarena.defenses.privacy import DPSGD

    local = LocalTraining(lr=0.1, steps=2, batch_size=8)
    runs = []
    for _ in range(2):
        sim, events = _federation(local, trainer=DPSGD(1.0, 1.0), rounds=1)
        sim.run()
        runs.append(events)
    for a, b in zip(*runs, strict=True):
        masks = a.private.dropout_masks
        assert masks is not None and all(len(m) == local.steps for m in masks.values())
        assert all(torch.equal(x, y) for s in masks for x, y in zip(masks[s], b.private.dropout_masks[s],
                                                                      strict=True))
        assert torch.equal(a.update.vector, b.update.vector)


def test_global_state_passed_to_replay_is_the_rounds_start():
    sim, events = _federation(FEDSGD, rounds=1)
    before = model_to_vector(sim.model).clone()
    sim.run()
    assert all(isinstance(e.state, GlobalState) and torch.equal(e.state.params, before) for e in events)


def test_a_copy_made_inside_the_block_shares_the_source_and_falls_back_after_it():
    import copy

    model, x = _model(), torch.rand(4, 1, 8, 8)
    model.train()
    with dropout_masks(model, generator=torch_generator(0, "t"), record=True) as record:
        twin = copy.deepcopy(model)
        twin(x)
    assert len(record["dropout1"]) == 1  # the copy recorded into the block's record
    twin(x)
    assert len(record["dropout1"]) == 1  # outside the block the copy is plain nn.Dropout again
