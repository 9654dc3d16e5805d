"""Malformed uploads are rejected and recorded, and the round goes on (issue 14, items 7 and 13).

Each case here crashed a round, silently skipped it, or let one client's claim take the
average over before the server checked sample counts, kinds, duplicate ids and the
dtype cast; and a BatchNorm model in train mode crashed on a last local batch of one.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from fedarena.attacks.inversion import InvertingGradients
from fedarena.attacks.inversion.simulate import unrolled_batches
from fedarena.defenses.registry import AGGREGATORS
from fedarena.fl_core import ClientUpdate, LocalTraining, Server, ThreatModel, make_observation, train_client
from fedarena.fl_core.client import GlobalState, batch_schedule, min_batch_size, pass_bounds
from fedarena.fl_core.vectors import buffers_to_vector, model_to_vector

from .helpers import synthetic_images, tiny_cnn_bn, tiny_mlp

BAD_COUNTS = [math.inf, math.nan, "12", 1e30, True, 2.5, -3]


def _honest(d: int, n: int = 5, seed: int = 0) -> list[ClientUpdate]:
    gen = torch.Generator().manual_seed(seed)
    return [ClientUpdate(i, 0.01 * torch.randn(d, generator=gen), "delta", 10) for i in range(n)]


@pytest.mark.parametrize("aggregator", ["fedavg", "geometric_median", "norm_clipping", "mud_hog"])
@pytest.mark.parametrize("count", BAD_COUNTS, ids=repr)
def test_a_bad_sample_count_is_rejected_and_the_round_applies_the_rest(aggregator, count):
    model = tiny_mlp()
    server = Server(model, AGGREGATORS.build(aggregator) if aggregator != "fedavg" else None)
    d = server.layout.dim
    honest = _honest(d)
    attacker = ClientUpdate(99, torch.full((d,), 5.0), "delta", count)  # type: ignore[arg-type]
    before = server.state.params.clone()
    record = server.step([*honest, attacker], kind="delta")
    assert 99 in record.rejected and "sample count" in record.rejected[99]
    assert record.applied, record.info
    assert set(record.weights) == {u.client_id for u in honest}
    moved = (server.state.params - before).abs().max()
    assert 0 < moved < 1.0  # the attacker's 5.0 never entered


def test_an_update_of_the_wrong_kind_is_rejected_not_the_whole_round():
    server = Server(tiny_mlp())
    d = server.layout.dim
    honest = _honest(d)
    odd = ClientUpdate(7, torch.zeros(d), "gradient", 10)
    record = server.step([*honest, odd], kind="delta")
    assert record.applied and "kind 'gradient'" in record.rejected[7]
    # without the expected kind, the round's kind is the one most uploads have
    record = Server(tiny_mlp()).step([*honest, odd])
    assert record.applied and 7 in record.rejected and len(record.weights) == len(honest)


def test_duplicate_client_ids_are_rejected_with_every_copy():
    server = Server(tiny_mlp())
    d = server.layout.dim
    honest = _honest(d)
    twice = [ClientUpdate(3, torch.ones(d), "delta", 10), ClientUpdate(3, -torch.ones(d), "delta", 10)]
    record = server.step([u for u in honest if u.client_id != 3] + twice, kind="delta")
    assert "uploaded 2 updates" in record.rejected[3]
    assert 3 not in record.weights and record.applied


def test_a_float64_update_that_overflows_float32_is_rejected_by_name():
    server = Server(tiny_mlp())
    d = server.layout.dim
    huge = ClientUpdate(5, torch.full((d,), 1e300, dtype=torch.float64), "delta", 10)
    assert torch.isfinite(huge.vector).all()
    record = server.step([*_honest(d, 3), huge], kind="delta")
    assert "overflow" in record.rejected[5] and record.applied
    assert torch.isfinite(server.state.params).all()


def test_an_attack_on_a_model_without_trainable_parameters_is_a_clear_error():
    data = synthetic_images(4)
    model = tiny_mlp()
    update, private = train_client(model, GlobalState(model_to_vector(model), buffers_to_vector(model)), 0, data,
                                   LocalTraining(algorithm="fedsgd", batch_size=2), torch.Generator().manual_seed(0))
    frozen = tiny_mlp()
    for p in frozen.parameters():
        p.requires_grad_(False)
    obs = make_observation(frozen, torch.empty(0), ClientUpdate(0, torch.empty(0), "gradient", 2), private,
                           LocalTraining(algorithm="fedsgd", batch_size=2), ThreatModel(), data.normalization, 4)
    with pytest.raises(ValueError, match="no trainable parameters"):
        InvertingGradients(iterations=2).reconstruct(obs)


def _bn1d_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 4))


def test_batchnorm_in_train_mode_merges_a_last_batch_of_one():
    data = synthetic_images(5)
    model = _bn1d_mlp()
    training = LocalTraining(algorithm="fedavg", lr=0.1, epochs=2, batch_size=2)
    state = GlobalState(model_to_vector(model), buffers_to_vector(model))
    update, _ = train_client(model, state, 0, data, training, torch.Generator().manual_seed(0))
    assert update.metadata["steps"] == 4 and torch.isfinite(update.vector).all()  # 2+3 per pass, 2 passes
    assert pass_bounds(5, 2, min_batch=2) == [(0, 2), (2, 5)]
    assert [len(b) for b in batch_schedule(5, training, torch.Generator().manual_seed(0), 2)] == [2, 3, 2, 3]
    # the attacker's unrolled simulation cuts the same batches
    assert [(s.start, s.stop) for s in unrolled_batches(5, training, 2)] == [(0, 2), (2, 5)] * 2
    # other models keep the last batch of one, as before: BatchNorm over several spatial
    # positions trains on one sample, and so do models without BatchNorm or in eval mode
    assert pass_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    example = data.normalized()
    assert min_batch_size(tiny_cnn_bn(), training, example) == 1
    assert min_batch_size(tiny_mlp(), training, example) == 1
    assert min_batch_size(model, replace(training, model_mode="eval"), example) == 1
    assert min_batch_size(model, training, example) == 2


def test_batchnorm_in_train_mode_with_a_fedsgd_batch_of_one_is_a_clear_error():
    data = synthetic_images(3)
    model = _bn1d_mlp()
    state = GlobalState(model_to_vector(model), buffers_to_vector(model))
    with pytest.raises(ValueError, match="BatchNorm model in train mode"):
        train_client(model, state, 0, data, LocalTraining(algorithm="fedsgd", batch_size=1),
                     torch.Generator().manual_seed(0))
