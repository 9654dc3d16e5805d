"""Fully-connected networks on flattened inputs: FedAvg's 2NN and the DIA reference's GELU MLP."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from fedarena.fl_core.models.base import check_common
from fedarena.fl_core.models.dropout import DropoutSite

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


class MLP(nn.Sequential):
    """Flatten → Linear + activation + dropout per hidden size → Linear to the classes.

    The default ``hidden=(200, 200)`` is the "2NN" of FedAvg (McMahan et al. 2017):
    199,210 parameters on 1×28×28 with 10 classes. ``hidden=()`` gives multinomial
    logistic regression. ``activation`` is ``"relu"`` (modules ``relu{i}``) or
    ``"gelu"`` (exact GELU, modules ``gelu{i}``); ``bias=False`` drops every layer's
    bias. PyTorch's default initialisation.

    Dropout (Scheliga et al. 2023 placement, as in their MLP): a ``DropoutSite``
    (``dropout{i}``) on every hidden activation, i.e. before each fully-connected
    layer except the first (the input pixels and the logits are never dropped).
    """

    label = "mlp"  # the registry name errors are reported under

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.0,
        hidden: Sequence[int] = (200, 200),
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        label = self.label
        num_classes, shape, p = check_common(label, num_classes, input_shape, dropout)
        sizes = tuple(hidden)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"{label}: hidden must be a sequence of positive ints, got {hidden!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"{label}: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(bias, bool):
            raise ValueError(f"{label}: bias must be a bool, got {bias!r}")
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        fan_in = math.prod(shape)
        for i, size in enumerate(sizes, start=1):
            layers += [
                (f"fc{i}", nn.Linear(fan_in, size, bias=bias)),
                (f"{activation}{i}", ACTIVATIONS[activation]()),
                (f"dropout{i}", DropoutSite(p)),
            ]
            fan_in = size
        layers.append((f"fc{len(sizes) + 1}", nn.Linear(fan_in, num_classes, bias=bias)))
        super().__init__(OrderedDict(layers))
        self.num_classes, self.input_shape, self.hidden = num_classes, shape, sizes


class DIAMLP(MLP):
    """The MLP of the Dropout Inversion Attack's code (Scheliga et al. 2023).

    Defaults from dAI-SY-Group/DropoutInversionAttack at 37a3d4f: ``example_configs/
    models/MLP.yaml`` (lines 2–5: depth 3, width 512, ``bias: False`` for every layer,
    dropout 0.25), built by ``build_MLP`` in ``src/models/mlp.py`` (lines 10–14: three
    hidden layers of 512 and four bias-free linear layers). Each hidden block there is
    Linear → GELU → dropout (line 28 passes ``nn.GELU()`` and the dropout into
    ``MLPBlock``'s ``regularization_layer`` and ``activation_function`` slots, which
    its forward, lines 44–50, applies in that order); the output layer has neither
    (line 29). 930,816 parameters on 1×28×28 with 10 classes. The issue's summary
    ("depth 3, width 512, GELU") does not mention the biases; the reference config has
    none, which is followed here.
    """

    label = "mlp_dia"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.25,
        hidden: Sequence[int] = (512, 512, 512),
        activation: str = "gelu",
        bias: bool = False,
    ) -> None:
        super().__init__(num_classes, input_shape, dropout, hidden, activation, bias)
