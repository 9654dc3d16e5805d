"""Fully-connected ReLU network on flattened inputs."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from fl_core.models.base import check_common
from fl_core.models.dropout import DropoutSite


class MLP(nn.Sequential):
    """Flatten → Linear+ReLU per hidden size → Linear to the classes.

    The default ``hidden=(200, 200)`` is the "2NN" of FedAvg (McMahan et al. 2017):
    199,210 parameters on 1×28×28 with 10 classes. ``hidden=()`` gives multinomial
    logistic regression. PyTorch's default initialisation.

    Dropout (Scheliga et al. 2023 placement, as in their MLP): an ``nn.Dropout``
    (``dropout{i}``) on every hidden activation, i.e. before each fully-connected
    layer except the first (the input pixels are never dropped).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.0,
        hidden: Sequence[int] = (200, 200),
    ) -> None:
        num_classes, shape, p = check_common("mlp", num_classes, input_shape, dropout)
        sizes = tuple(hidden)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"mlp: hidden must be a sequence of positive ints, got {hidden!r}")
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        fan_in = math.prod(shape)
        for i, size in enumerate(sizes, start=1):
            layers += [
                (f"fc{i}", nn.Linear(fan_in, size)),
                (f"relu{i}", nn.ReLU()),
                (f"dropout{i}", DropoutSite(p)),
            ]
            fan_in = size
        layers.append((f"fc{len(sizes) + 1}", nn.Linear(fan_in, num_classes)))
        super().__init__(OrderedDict(layers))
        self.num_classes, self.input_shape, self.hidden = num_classes, shape, sizes
