"""The ConvNet of Inverting Gradients (Geiping et al. 2020)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from fedarena.fl_core.models.base import check_common, conv_out, require_min_size
from fedarena.fl_core.models.dropout import DropoutSite


class ConvNet(nn.Sequential):
    """Eight 3×3 conv+BatchNorm+ReLU layers with two 3×3 max-pools, then one linear layer.

    Matches ``ConvNet`` in JonasGeiping/invertinggradients ``inversefed/nn/models.py``
    (``ConvNet64`` there for ``width=64``): channels C→w→2w→2w→4w→4w→4w, ``pool0``,
    4w→4w→4w, ``pool1``, flatten, ``linear`` on ``4w·⌊⌊H/3⌋/3⌋·⌊⌊W/3⌋/3⌋`` features
    (36·w for 32×32 and 28×28). In the reference ``pool0`` sits after conv5: its
    OrderedDict lists ``conv6/bn6/relu6`` twice, so the second entry replaces the
    first in place and only eight convolutions remain. Module names equal the
    reference's (keys lack its ``model.`` prefix). PyTorch's default initialisation,
    as there. Needs at least 9×9 inputs.

    Dropout: one ``DropoutSite`` (``dropout``) on the flattened features, right before
    ``linear`` (inversefed's ConvNet has none). The Dropout Inversion Attack's code
    (Scheliga et al. 2023) ships only an MLP and a ViT (``src/models/``), so this
    placement is not checked against reference code; it is the one DIA's MLP and ViT
    share, dropout on the features a linear layer reads, never on the input pixels.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.0,
        width: int = 64,
    ) -> None:
        num_classes, shape, p = check_common("convnet", num_classes, input_shape, dropout)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"convnet: width must be a positive int, got {width!r}")
        require_min_size("convnet", shape, 9, "two 3x3 max-pools with stride 3")
        c, h, w = shape
        channels = [c, width, 2 * width, 2 * width, 4 * width, 4 * width, 4 * width]
        layers: list[tuple[str, nn.Module]] = []
        for i in range(6):
            layers += _conv_bn_relu(i, channels[i], channels[i + 1])
        layers.append(("pool0", nn.MaxPool2d(3)))
        for i in (6, 7):
            layers += _conv_bn_relu(i, 4 * width, 4 * width)
        layers.append(("pool1", nn.MaxPool2d(3)))
        side_h = conv_out(conv_out(h, 3, 3), 3, 3)
        side_w = conv_out(conv_out(w, 3, 3), 3, 3)
        layers += [
            ("flatten", nn.Flatten()),
            ("dropout", DropoutSite(p)),
            ("linear", nn.Linear(4 * width * side_h * side_w, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        self.num_classes, self.input_shape, self.width = num_classes, shape, width


def _conv_bn_relu(i: int, cin: int, cout: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"conv{i}", nn.Conv2d(cin, cout, kernel_size=3, padding=1)),
        (f"bn{i}", nn.BatchNorm2d(cout)),
        (f"relu{i}", nn.ReLU()),
    ]
