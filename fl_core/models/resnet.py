"""ResNet-18 in its CIFAR form (He et al. 2016), as used by gradient-inversion papers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from fedarena.fl_core.models.base import check_common
from fedarena.fl_core.models.dropout import DropoutSite


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3×3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2].

    The variant of kuangliu/pytorch-cifar and of Inverting Gradients' ``ResNet18``
    (torchvision ResNet with a 3×3 stem and strides 1, 2, 2, 2): widths w, 2w, 4w, 8w
    (w = ``width`` = 64 gives 64..512 and 11,173,962 parameters for 10 classes),
    1×1 conv + norm shortcut where the shape changes, global average pooling, so any
    input size works. Init as torchvision/Inverting Gradients: Kaiming-normal
    (fan-out) convolutions, norm weights 1 and biases 0.

    ``norm="group"`` swaps every BatchNorm for GroupNorm with ``norm_groups`` groups
    (default 32), e.g. for DP-SGD where per-sample gradients forbid BatchNorm.

    Dropout (Scheliga et al. 2023 placement): one ``nn.Dropout`` (``dropout``) on the
    pooled features, right before the classifier ``fc``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.0,
        norm: str = "batch",
        norm_groups: int = 32,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.num_classes, self.input_shape, p = check_common("resnet18", num_classes, input_shape, dropout)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"resnet18: width must be a positive int, got {width!r}")
        make_norm = _norm_factory(norm, norm_groups, [width * 2**i for i in range(4)])
        c = self.input_shape[0]
        self.conv1 = nn.Conv2d(c, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = make_norm(width)
        self.relu = nn.ReLU()
        blocks: list[nn.Module] = []
        cin = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**stage
            layer = nn.Sequential(BasicBlock(cin, cout, stride, make_norm), BasicBlock(cout, cout, 1, make_norm))
            blocks.append(layer)
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = DropoutSite(p)
        self.fc = nn.Linear(cin, self.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (out-of-place addition)."""

    def __init__(self, cin: int, cout: int, stride: int, make_norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), make_norm(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _norm_factory(norm: str, groups: int, channels: list[int]) -> Callable[[int], nn.Module]:
    if norm == "batch":
        return nn.BatchNorm2d
    if norm != "group":
        raise ValueError(f"resnet18: norm must be 'batch' or 'group', got {norm!r}")
    bad = [c for c in channels if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or c % groups]
    if bad:
        raise ValueError(f"resnet18: norm_groups={groups!r} must be a positive int dividing every width {channels}")
    return lambda c: nn.GroupNorm(groups, c)
