"""Model zoo: the architectures the attacks and defenses are measured on, by name.

``build_model("convnet", num_classes=10, input_shape=(3, 32, 32), seed=0)`` is the one
entry point suites use. Every model is pure PyTorch, sizes itself from
``input_shape``, avoids in-place operations (so ``torch.func.functional_call``,
``grad``, ``vmap`` and double-backward all work), exposes ``input_shape`` and
``num_classes``, and takes a ``dropout`` rate whose placement follows the Dropout
Inversion Attack (Scheliga et al. 2023); each class docstring says where.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from fedarena.fl_core.models.base import dropout_layers, mode_dependent
from fedarena.fl_core.models.convnet import ConvNet
from fedarena.fl_core.models.lenet import LeNet, LeNet5
from fedarena.fl_core.models.mlp import DIAMLP, MLP
from fedarena.fl_core.models.resnet import ResNet18
from fedarena.fl_core.models.vit import DIAViT, ViT
from fedarena.fl_core.registry import Registry
from fedarena.fl_core.seeding import derive_seed

__all__ = [
    "MODELS",
    "build_model",
    "dropout_layers",
    "mode_dependent",
    "ConvNet",
    "LeNet",
    "LeNet5",
    "MLP",
    "DIAMLP",
    "ResNet18",
    "ViT",
    "DIAViT",
]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.add("lenet", LeNet, "DLG's sigmoid LeNet (Zhu et al. 2019), U(-0.5, 0.5) init")
MODELS.add("lenet5", LeNet5, "ReLU LeNet-5 for MNIST-type data, as in MUD-HoG (Gupta et al. 2022)")
MODELS.add("convnet", ConvNet, "Inverting Gradients' 8-layer ConvNet+BN, width 64 (Geiping et al. 2020)")
MODELS.add("resnet18", ResNet18, "CIFAR ResNet-18 (3x3 stem, no max-pool), batch or group norm")
MODELS.add("mlp", MLP, "Fully-connected ReLU net, hidden (200, 200) = FedAvg's 2NN")
MODELS.add("vit_tiny", ViT, "ViT-Tiny/DeiT-Tiny (dim 192, depth 12, 3 heads), patch 4 on 32x32")
MODELS.add("mlp_dia", DIAMLP, "Dropout Inversion Attack's MLP: 3x512 GELU, no biases, dropout 0.25 "
           "(Scheliga et al. 2023)")
MODELS.add("vit_dia", DIAViT, "Dropout Inversion Attack's ViT: patch 4, dim 256, depth 4, 16 heads, MLP 256, "
           "dropout 0.25 (Scheliga et al. 2023)")


def build_model(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    dropout: float | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the model registered as ``name`` for ``input_shape = (C, H, W)`` images.

    With ``seed``, initialisation draws from a private stream derived from
    ``(seed, "model", name)``, so the same seed gives the same weights and the global
    RNG state is left untouched. ``dropout`` is the rate of every dropout site; None
    means the model's own default (0 for all but the DIA reference models ``vit_dia``
    and ``mlp_dia``, whose configs use 0.25). Extra ``kwargs`` are the model's own
    options (``width``, ``norm``, ``hidden``, ``depth``…); an unknown option is an error
    that lists the accepted ones.
    """
    factory = MODELS.get(name)
    _check_options(name, factory, kwargs)
    args = dict(num_classes=num_classes, input_shape=input_shape, **kwargs)
    if dropout is not None:
        args["dropout"] = dropout
    if seed is None:
        return factory(**args)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"model {name!r}: seed must be an int or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model", name))
        return factory(**args)


def _check_options(name: str, factory: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    common = {"num_classes", "input_shape", "dropout"}
    options = [p for p in inspect.signature(factory).parameters if p not in common]
    unknown = sorted(kwargs.keys() - set(options))
    if unknown:
        raise TypeError(f"model {name!r} got unknown options {unknown}; its options are {options or 'none'}")
