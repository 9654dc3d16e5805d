"""LPIPS (Zhang et al., CVPR 2018), AlexNet with the v0.1 linear heads, in plain PyTorch.

Same computation as the reference ``lpips.LPIPS(net='alex', version='0.1')``: images
in [0, 1] → [−1, 1] → ``(x − shift) / scale`` with the reference's ImageNet constants →
the five ReLU outputs of AlexNet's ``features`` → each feature vector normalised to unit
length over channels → squared difference → 1×1 linear head (non-negative weights, no
bias) → spatial mean → sum over the five layers.

Weights come from the data root (never from the network, never via the ``lpips``
package, which imports torchvision):
``weights/alexnet-imagenet-features/alexnet_features_torchvision_keys.pth`` (conv1–5 in
torchvision's key layout) and ``weights/lpips/v0.1/alex.pth`` (keys
``lin{0..4}.model.1.weight``). When either is missing, ``load_lpips`` returns an
``LPIPSUnavailable`` holding the reason, and callers report LPIPS as unavailable; so
does a file that is not a tensors-only weights file (a pickled payload that
``weights_only`` refuses, a truncated archive): "LPIPS unavailable: <file> is not a
valid weights file", and the runs go on without LPIPS.

Images smaller than AlexNet can take (``MIN_SIDE``: its stride-4 conv1 and two 3/2
max-pools leave nothing of a 28×28 digit) are upsampled bilinearly, both of the pair alike,
so that their shorter side is ``PATCH`` = 64 px, the size of the BAPPS patches the v0.1
linear heads were fitted on, before scoring (``scoring_size`` says to what). The
reference package raises on such images instead; FedArena's tables say when the resize
applied (``resize_note``). An upsampled digit is smooth, so compare its LPIPS only with
LPIPS of images of the same size.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedarena.fl_core.data_root import weights_path

ALEXNET_FILE = ("alexnet-imagenet-features", "alexnet_features_torchvision_keys.pth")
HEADS_FILE = ("lpips", "v0.1", "alex.pth")
# lpips.pretrained_networks ScalingLayer constants (inputs in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
CHANNELS = (64, 192, 384, 256, 256)
MIN_SIDE = 32  # the smallest side AlexNet's features accept (conv1 stride 4, then two 3/2 max-pools)
PATCH = 64  # BAPPS patch size (Zhang et al. 2018), the scale the linear heads were calibrated at


def scoring_size(height: int, width: int) -> tuple[int, int]:
    """The size LPIPS scores an ``height × width`` image at: itself, or upsampled (aspect kept)
    so its shorter side is ``PATCH`` when a side is below ``MIN_SIDE``."""
    if min(height, width) >= MIN_SIDE:
        return height, width
    factor = PATCH / min(height, width)
    return round(height * factor), round(width * factor)


def resize_note(height: int, width: int) -> str:
    """One line for a table when LPIPS upsampled ``height × width`` images; "" when it did not."""
    size = scoring_size(height, width)
    if size == (height, width):
        return ""
    return (f"LPIPS scored on the {height}×{width} images upsampled bilinearly to {size[0]}×{size[1]} "
            f"(LPIPS-AlexNet needs at least {MIN_SIDE} px per side; {PATCH} px is its heads' patch size)")


@dataclass(frozen=True)
class LPIPSUnavailable:
    """LPIPS could not be loaded; ``reason`` says which file is missing where."""

    reason: str


class LPIPS(nn.Module):
    """``LPIPS()(x, y)`` / ``.distance(x, y)``: per-image LPIPS ``[B]`` of images in [0, 1]."""

    def __init__(self, features: dict[str, Tensor], heads: dict[str, Tensor]) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1),
        ])
        for conv, idx in zip(self.convs, (0, 3, 6, 8, 10), strict=True):
            conv.weight.data.copy_(_take(features, f"features.{idx}.weight", conv.weight.shape))
            conv.bias.data.copy_(_take(features, f"features.{idx}.bias", conv.bias.shape))
        self.heads = nn.ParameterList([
            nn.Parameter(_take(heads, f"lin{i}.model.1.weight", (1, c, 1, 1)).clone(), requires_grad=False)
            for i, c in enumerate(CHANNELS)
        ])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def taps(self, x: Tensor) -> list[Tensor]:
        """The five ReLU outputs of AlexNet ``features`` for images in [0, 1]."""
        h = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                h = F.max_pool2d(h, kernel_size=3, stride=2)
            h = F.relu(conv(h))
            out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS compares two [B, 3, H, W] batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        total = x.new_zeros(x.shape[0])
        for fx, fy, w in zip(self.taps(x), self.taps(y), self.heads, strict=True):
            d = (_unit(fx) - _unit(fy)).pow(2)
            total = total + F.conv2d(d, w).mean(dim=(1, 2, 3))
        return total

    @torch.no_grad()
    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image LPIPS; grey images (1 channel) are repeated to RGB, as LPIPS users do, and
        images below ``MIN_SIDE`` are upsampled to ``scoring_size`` (module docstring)."""
        if x.shape != y.shape or x.dim() != 4:
            raise ValueError(f"LPIPS compares two [B, C, H, W] batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        x, y = x.float(), y.float()
        size = scoring_size(*x.shape[-2:])
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        return self(x, y)


def load_lpips(root: str | Path | None = None) -> LPIPS | LPIPSUnavailable:
    """LPIPS-Alex v0.1 from the data root, or the reason it is unavailable."""
    feats, heads = weights_path(*ALEXNET_FILE, root=root), weights_path(*HEADS_FILE, root=root)
    missing = [str(p) for p in (feats, heads) if not p.is_file()]
    if missing:
        return LPIPSUnavailable(f"LPIPS weights missing: {', '.join(missing)} (see the data root's "
                                f"weights/ layout; set FEDARENA_DATA)")
    states = []
    for path in (feats, heads):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError):
            # not torch's message: it suggests weights_only=False, i.e. running the file's code
            return LPIPSUnavailable(f"LPIPS unavailable: {path} is not a valid weights file")
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            return LPIPSUnavailable(f"LPIPS unavailable: {path} is not a valid weights file (not a state dict)")
        states.append(state)
    try:
        return LPIPS(*states)
    except (RuntimeError, KeyError, ValueError) as exc:
        return LPIPSUnavailable(f"LPIPS weights unusable ({feats}, {heads}): {exc}")


def _take(state: dict[str, Tensor], key: str, shape: tuple[int, ...] | torch.Size) -> Tensor:
    if key not in state:
        raise KeyError(f"weights lack {key!r} (have {sorted(state)[:6]}...)")
    t = state[key].float()
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"weights {key!r} have shape {tuple(t.shape)}, expected {tuple(shape)}")
    return t


def _unit(f: Tensor, eps: float = 1e-10) -> Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
