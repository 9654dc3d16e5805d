"""LeNet variants: the sigmoid LeNet of DLG and the ReLU LeNet-5 of MUD-HoG."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fedarena.fl_core.models.base import check_common, conv_out, require_min_size
from fedarena.fl_core.models.dropout import DropoutSite


class LeNet(nn.Module):
    """Sigmoid LeNet of DLG (Zhu et al. 2019), the classic gradient-inversion target.

    Matches ``LeNet`` in mit-han-lab/dlg ``models/vision.py`` (also ``LeNetZhu`` in
    JonasGeiping/invertinggradients): three 5×5 convolutions with 12 channels,
    padding 2, strides 2, 2, 1, each followed by a sigmoid, then one linear layer on
    ``12·⌈H/4⌉·⌈W/4⌉`` features (768 for 32×32). State-dict keys equal the
    reference's (``body.0/2/4``, ``fc.0``).

    ``init="dlg"`` (default) draws every weight and bias from U(−0.5, 0.5) as the DLG
    code does; the smooth sigmoid and these large weights are what make DLG work.
    ``init="default"`` keeps PyTorch's initialisation.

    Dropout (Scheliga et al. 2023 placement): one ``nn.Dropout`` (``self.dropout``)
    on the flattened features, right before the classifier ``fc``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.0,
        init: str = "dlg",
    ) -> None:
        super().__init__()
        self.num_classes, self.input_shape, p = check_common("lenet", num_classes, input_shape, dropout)
        if init not in ("dlg", "default"):
            raise ValueError(f"lenet: init must be 'dlg' or 'default', got {init!r}")
        c, h, w = self.input_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        features = 12 * math.ceil(h / 4) * math.ceil(w / 4)
        self.dropout = DropoutSite(p)
        self.fc = nn.Sequential(nn.Linear(features, self.num_classes))
        if init == "dlg":
            with torch.no_grad():
                for param in self.parameters():
                    param.uniform_(-0.5, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x).flatten(1)
        return self.fc(self.dropout(out))


class LeNet5(nn.Module):
    """ReLU LeNet-5 of the MUD-HoG code (Gupta et al., ESORICS 2022) for MNIST-type data.

    Source: LabSAINT/MUD-HoG_Federated_Learning ``tasks/mnist.py`` class ``Net`` (the
    PyTorch-tutorial LeNet): conv1 C→6 3×3, ReLU, max-pool 2, conv2 6→16 3×3, ReLU,
    max-pool 2, fc1 →120, ReLU, fc2 →84, ReLU, fc3 →classes. MUD-HoG resizes MNIST to
    32×32, giving fc1 in-features 16·6·6 = 576 (400 for 28×28). Needs at least 10×10
    inputs. Keys match the reference (``conv1``, ``conv2``, ``fc1..fc3``); PyTorch's
    default initialisation, as there.

    Dropout (Scheliga et al. 2023 placement): an ``nn.Dropout`` before each
    fully-connected layer — ``drop1`` on the flattened conv features, ``drop2`` and
    ``drop3`` on the fc1 and fc2 activations. The reference has no dropout; rate 0
    (default) reproduces it exactly.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.input_shape, p = check_common("lenet5", num_classes, input_shape, dropout)
        require_min_size("lenet5", self.input_shape, 10, "two 3x3 convolutions and two 2x2 pools")
        c, h, w = self.input_shape

        def side(n: int) -> int:
            return conv_out(conv_out(conv_out(conv_out(n, 3), 2, 2), 3), 2, 2)

        self.conv1 = nn.Conv2d(c, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.drop1 = DropoutSite(p)
        self.fc1 = nn.Linear(16 * side(h) * side(w), 120)
        self.drop2 = DropoutSite(p)
        self.fc2 = nn.Linear(120, 84)
        self.drop3 = DropoutSite(p)
        self.fc3 = nn.Linear(84, self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = self.act(self.fc1(self.drop1(x.flatten(1))))
        x = self.act(self.fc2(self.drop2(x)))
        return self.fc3(self.drop3(x))
