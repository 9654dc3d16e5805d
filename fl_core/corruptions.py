"""Low-quality data for *unreliable* clients: blur, low resolution, additive noise.

MUD-HoG (Gupta et al., ESORICS 2022) separates malicious clients from unreliable ones:
benign clients holding "a portion of low-quality training data (e.g., blur or
low-resolution images)". ``corrupt`` degrades a seeded random ``fraction`` of a dataset's
images with one of the registered corruptions; the others stay bit-identical. Every
corruption works on the whole ``[B, C, H, W]`` batch at once and returns pixels in [0, 1].

Defaults follow the MUD-HoG code (LabSAINT/MUD-HoG_Federated_Learning, ``Unreliable_client``):
Gaussian smoothing with sigma 0.5 and a 5×5 kernel, reflect padding; its additive-noise
variant draws a per-pixel std uniformly in [0, max_std] (``uniform_std=True`` here).
Their client corrupts each batch with probability 0.5 (``fraction_noise``); choose
``fraction`` accordingly.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.registry import Registry
from fedarena.fl_core.seeding import numpy_rng, torch_generator

Corruption = Callable[..., Tensor]  # (images [B, C, H, W], generator, **params) -> images
CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def corrupt(dataset: ImageDataset, kind: str, fraction: float, seed: int,
            **params: Any) -> ImageDataset:
    """A copy of ``dataset`` whose ``corrupted_indices(...)`` images are degraded by ``kind``.

    The input dataset is not modified. Which samples are hit depends only on
    ``(seed, len(dataset), fraction)``; the noise of ``additive_noise`` on ``(seed, kind)``.
    """
    fn = CORRUPTIONS.get(kind)
    try:
        inspect.signature(fn).bind(dataset.images[:0], None, **params)
    except TypeError as exc:
        accepted = list(inspect.signature(fn).parameters)[2:]
        raise TypeError(f"corruption {kind!r}: {exc}; it accepts: {', '.join(accepted)}") from None
    idx = corrupted_indices(len(dataset), fraction, seed)
    images = dataset.images.clone()
    if len(idx):
        gen = torch_generator(seed, "corruption", kind)
        images[idx] = fn(dataset.images[idx], gen, **params).clamp_(0.0, 1.0).to(images.dtype)
    return ImageDataset(dataset.name, images, dataset.labels.clone(), dataset.num_classes,
                        dataset.normalization, dataset.classes)


def corrupted_indices(num_samples: int, fraction: float, seed: int) -> Tensor:
    """Sorted indices of the ``round(fraction · num_samples)`` samples ``corrupt`` degrades."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    count = int(round(fraction * num_samples))
    chosen = numpy_rng(seed, "corruption", "select").choice(num_samples, size=count, replace=False)
    return torch.from_numpy(np.sort(chosen).astype(np.int64))


@CORRUPTIONS.register("gaussian_blur")
def gaussian_blur(images: Tensor, generator: torch.Generator | None = None, sigma: float = 0.5,
                  kernel_size: int | None = None) -> Tensor:
    """Depthwise Gaussian blur, reflect padding.

    ``kernel_size`` defaults to 2·ceil(3·sigma)+1 (±3 sigma; 5 at sigma 0.5, MUD-HoG's
    values) and is capped so the padding stays below the image size. The 2-D Gaussian is
    separable, so it runs as a 1×k then a k×1 depthwise ``conv2d`` (same result, fewer
    operations).
    """
    del generator  # deterministic
    if not sigma > 0:
        raise ValueError(f"gaussian_blur: sigma must be > 0, got {sigma}")
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"gaussian_blur: kernel_size must be a positive odd integer, "
                         f"got {kernel_size}")
    h, w = images.shape[-2:]
    radius = min(kernel_size // 2, h - 1, w - 1)
    if radius == 0:
        return images.clone()
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@CORRUPTIONS.register("low_resolution")
def low_resolution(images: Tensor, generator: torch.Generator | None = None, factor: float = 2.0,
                   mode: str = "bilinear") -> Tensor:
    """Downsample by ``factor`` with area averaging, then upsample back (bilinear or nearest).

    Area averaging is the alias-free way to lose resolution (what a low-res sensor does);
    upsampling restores the model's input size without adding detail.
    """
    del generator  # deterministic
    if not factor > 1:
        raise ValueError(f"low_resolution: factor must be > 1, got {factor}")
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"low_resolution: mode must be 'bilinear', 'nearest' or 'bicubic', "
                         f"got {mode!r}")
    h, w = images.shape[-2:]
    small = F.interpolate(images, size=(max(1, int(h / factor)), max(1, int(w / factor))),
                          mode="area")
    if mode == "nearest":
        return F.interpolate(small, size=(h, w), mode="nearest")
    return F.interpolate(small, size=(h, w), mode=mode, align_corners=False).clamp_(0.0, 1.0)


@CORRUPTIONS.register("additive_noise")
def additive_noise(images: Tensor, generator: torch.Generator | None = None, std: float = 0.1,
                   uniform_std: bool = False) -> Tensor:
    """Add N(0, std²) pixel noise, clamped to [0, 1].

    ``uniform_std=True``: each pixel's std is drawn from U(0, std), as MUD-HoG's
    ``add_noise`` unreliable client does (there std = 0.5 on normalised inputs).
    """
    if not std >= 0:
        raise ValueError(f"additive_noise: std must be >= 0, got {std}")
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype,
                        device=images.device)
    scale: Tensor | float = std
    if uniform_std:
        scale = torch.rand(images.shape, generator=generator, dtype=images.dtype,
                           device=images.device) * std
    return (images + noise * scale).clamp_(0.0, 1.0)
