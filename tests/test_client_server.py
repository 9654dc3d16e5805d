import math

import pytest
import torch
import torch.nn.functional as F

from fedarena.fl_core import (
    Client,
    ClientUpdate,
    FederationConfig,
    GlobalState,
    LocalTraining,
    Server,
    Simulation,
    model_to_vector,
    train_client,
)
from fedarena.fl_core.aggregation import FedAvg
from fedarena.fl_core.client import batch_schedule, make_optimizer
from fedarena.fl_core.vectors import buffers_to_vector

from .helpers import synthetic_images, tiny_cnn_bn, tiny_mlp


def _state(model):
    return GlobalState(model_to_vector(model), buffers_to_vector(model))


def test_fedsgd_update_equals_autograd_gradient(tiny_data):
    model = tiny_mlp()
    training = LocalTraining(algorithm="fedsgd", batch_size=8)
    update, private = train_client(model, _state(model), 3, tiny_data, training, torch.Generator().manual_seed(0))
    assert update.kind == "gradient" and update.client_id == 3 and update.num_samples == 8
    reference = tiny_mlp()
    loss = F.cross_entropy(reference(private.inputs), private.labels)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    assert torch.allclose(update.vector, torch.cat([g.reshape(-1) for g in grads]), atol=1e-6)
    # the private batch is the normalised version of real client samples
    denorm = tiny_data.normalization.denormalize(private.inputs)
    assert any(torch.allclose(denorm[0], img, atol=1e-6) for img in tiny_data.images)


def test_fedavg_one_sgd_step_equals_minus_lr_times_gradient(tiny_data):
    model = tiny_mlp()
    lr = 0.05
    training = LocalTraining(algorithm="fedavg", lr=lr, steps=1, batch_size=len(tiny_data))
    update, private = train_client(model, _state(model), 0, tiny_data, training, torch.Generator().manual_seed(0))
    assert update.kind == "delta" and update.metadata["steps"] == 1
    reference = tiny_mlp()
    loss = F.cross_entropy(reference(private.inputs), private.labels)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(reference.parameters()))])
    assert torch.allclose(update.vector, -lr * grad, atol=1e-6)


def test_fedavg_steps_and_epochs_schedule(tiny_data):
    model = tiny_mlp()
    gen = torch.Generator().manual_seed(0)
    u, p = train_client(model, _state(model), 0, tiny_data, LocalTraining(epochs=2, batch_size=10), gen)
    assert u.metadata["steps"] == 2 * math.ceil(len(tiny_data) / 10)
    assert p.inputs.shape[0] == len(tiny_data)  # every sample used, each once in the private record
    u, p = train_client(model, _state(model), 0, tiny_data, LocalTraining(steps=3, batch_size=5), gen)
    assert u.metadata["steps"] == 3 and p.inputs.shape[0] == 15


def test_server_rejects_nan_and_wrong_shape_and_keeps_model_finite():
    model = tiny_mlp()
    server = Server(model)
    d = server.layout.dim
    good = ClientUpdate(0, torch.full((d,), 0.1), "delta", 10)
    nan = ClientUpdate(1, torch.full((d,), float("nan")), "delta", 10)
    inf = ClientUpdate(2, torch.zeros(d).index_fill_(0, torch.tensor([5]), float("inf")), "delta", 10)
    short = ClientUpdate(3, torch.zeros(d - 1), "delta", 10)
    before = server.state.params.clone()
    record = server.step([good, nan, inf, short])
    assert set(record.rejected) == {1, 2, 3}
    assert "non-finite" in record.rejected[1] and "shape" in record.rejected[3]
    assert record.weights == {0: 1.0}
    assert torch.allclose(server.state.params, before + 0.1)
    assert torch.isfinite(model_to_vector(model)).all()
    # a round with only bad updates leaves the model unchanged
    record = server.step([nan])
    assert not record.applied and torch.allclose(server.state.params, before + 0.1)


def test_fedavg_is_sample_weighted():
    updates = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    result = FedAvg()(updates, torch.tensor([3.0, 1.0]))
    assert torch.allclose(result.aggregate, torch.tensor([0.75, 0.25]))
    assert torch.allclose(result.weights, torch.tensor([0.75, 0.25]))


def test_fedsgd_server_step_uses_client_lr():
    model = tiny_mlp()
    server = Server(model, server_lr=2.0)
    d = server.layout.dim
    before = server.state.params.clone()
    server.step([ClientUpdate(0, torch.ones(d), "gradient", 4)], client_lr=0.1)
    assert torch.allclose(server.state.params, before - 0.2)


def _federation(seed: int, model_fn=tiny_mlp, rounds: int = 3, adversaries=()):
    data = synthetic_images(n=120, seed=1)
    clients = [Client(i, data.subset(torch.arange(i, 120, 4))) for i in range(4)]
    test = synthetic_images(n=40, seed=2)
    cfg = FederationConfig(rounds=rounds, clients_per_round=3, seed=seed,
                           local=LocalTraining(lr=0.1, epochs=1, batch_size=8))
    return Simulation(model_fn(), clients, cfg, test, adversaries=adversaries, progress=False)


def test_same_seed_gives_identical_history_and_model():
    a, b = _federation(7), _federation(7)
    ha, hb = a.run(), b.run()
    strip = [dict(r, seconds=0) for r in ha.to_dict()["rounds"]]
    assert strip == [dict(r, seconds=0) for r in hb.to_dict()["rounds"]]
    assert torch.equal(model_to_vector(a.model), model_to_vector(b.model))
    c = _federation(8)
    c.run()
    assert not torch.equal(model_to_vector(a.model), model_to_vector(c.model))


def test_federation_learns_and_batchnorm_statistics_are_averaged():
    sim = _federation(0, model_fn=tiny_cnn_bn, rounds=8)
    start_buffers = sim.server.state.buffers.clone()
    history = sim.run()
    assert history.final_accuracy > 0.5  # 4 classes: chance is 0.25
    assert not torch.equal(sim.server.state.buffers, start_buffers)


def test_nan_update_from_a_client_is_rejected_in_a_simulation():
    class NaNAttack:
        def craft(self, ctx):
            return torch.full_like(ctx.own, float("nan"))

    from fedarena.fl_core import Adversary
    sim = _federation(0, adversaries=[Adversary([1], update_attack=NaNAttack(), name="nan")])
    history = sim.run()
    rejected = [r.rejected for r in history.rounds if 1 in r.clients]
    assert rejected and all(1 in rj for rj in rejected)
    assert torch.isfinite(model_to_vector(sim.model)).all()
    assert history.final_accuracy is not None and math.isfinite(history.final_accuracy)


def test_bad_local_training_is_a_clear_error():
    with pytest.raises(ValueError, match="lr must be > 0"):
        LocalTraining(lr=-1)
    with pytest.raises(ValueError, match="algorithm"):
        LocalTraining(algorithm="fedprox")


@pytest.mark.parametrize("training", [
    LocalTraining(lr=0.05, steps=6, batch_size=8),
    LocalTraining(lr=0.05, steps=6, batch_size=8, momentum=0.9, weight_decay=1e-3),
    LocalTraining(lr=1e-2, steps=6, batch_size=8, optimizer="adam", weight_decay=1e-3),
], ids=["sgd", "sgd_momentum_wd", "adam_wd"])
def test_fedavg_functional_steps_equal_torch_optim_bit_for_bit(tiny_data, training):
    """The honest client trains with fedarena.fl_core.local_step.optimizer_step on the flat vector;
    it must give exactly the parameters torch.optim's foreach SGD/Adam give per tensor."""
    model = tiny_cnn_bn()
    state = _state(model)
    update, _ = train_client(model, state, 0, tiny_data, training, torch.Generator().manual_seed(4))
    reference = tiny_cnn_bn()
    optimizer = make_optimizer(reference, training)
    inputs = tiny_data.normalized()
    for idx in batch_schedule(len(tiny_data), training, torch.Generator().manual_seed(4)):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(reference(inputs[idx]), tiny_data.labels[idx]).backward()
        optimizer.step()
    assert torch.equal(update.vector, model_to_vector(reference) - state.params)
    assert torch.equal(update.buffers, buffers_to_vector(reference))


def test_dataset_to_its_own_device_is_itself(tiny_data):
    assert tiny_data.to("cpu") is tiny_data
