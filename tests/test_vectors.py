import pytest
import torch
from torch.func import functional_call

from fedarena.fl_core.vectors import ParameterLayout, model_to_vector, vector_to_model

from .helpers import tiny_cnn_bn, tiny_mlp


def test_round_trip_model_vector_model():
    model = tiny_mlp()
    vec = model_to_vector(model)
    assert vec.shape == (sum(p.numel() for p in model.parameters()),)
    other = tiny_mlp(seed=1)
    assert not torch.equal(model_to_vector(other), vec)
    vector_to_model(vec, other)
    assert torch.equal(model_to_vector(other), vec)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)


def test_layout_flatten_unflatten_round_trip_and_views():
    model = tiny_cnn_bn()
    layout = ParameterLayout.of(model)
    vec = model_to_vector(model)
    named = layout.unflatten(vec)
    assert list(named) == [n for n, _ in model.named_parameters()]
    assert torch.equal(layout.flatten(named), vec)
    assert torch.equal(layout.flatten(dict(model.named_parameters())), vec)
    # unflatten gives views: autograd flows from a functional call back to the flat vector
    flat = vec.clone().requires_grad_(True)
    out = functional_call(model, layout.unflatten(flat), (torch.randn(2, 1, 8, 8),))
    out.sum().backward()
    assert flat.grad is not None and flat.grad.abs().sum() > 0


def test_wrong_vector_shape_is_a_clear_error():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="expected a flat vector of shape"):
        vector_to_model(torch.zeros(3), model)
    with pytest.raises(KeyError, match="lacks parameters"):
        ParameterLayout.of(model).flatten({})
