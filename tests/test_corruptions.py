"""Corruptions for unreliable clients: exact fraction, [0, 1] range, the promised degradation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fedarena.fl_core.corruptions import (
    CORRUPTIONS,
    additive_noise,
    corrupt,
    corrupted_indices,
    gaussian_blur,
    low_resolution,
)
from fedarena.fl_core.data import ImageDataset, Normalization

KINDS = [("gaussian_blur", {"sigma": 1.0}), ("low_resolution", {"factor": 4}),
         ("additive_noise", {"std": 0.1})]


def random_dataset(n: int = 40, channels: int = 3, size: int = 16, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, channels, size, size, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return ImageDataset("rand", images, labels, 10, Normalization((0.5,) * channels,
                                                                  (0.25,) * channels))


def changed(a: ImageDataset, b: ImageDataset) -> torch.Tensor:
    return (a.images != b.images).flatten(1).any(dim=1)


def test_registered_names() -> None:
    assert CORRUPTIONS.names() == ["additive_noise", "gaussian_blur", "low_resolution"]


@pytest.mark.parametrize("kind, params", KINDS)
@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_exact_fraction_changed_range_kept_input_untouched(kind: str, params: dict,
                                                           fraction: float) -> None:
    ds = random_dataset()
    before = ds.images.clone()
    out = corrupt(ds, kind, fraction, seed=1, **params)
    assert torch.equal(ds.images, before)  # input not modified
    hit = changed(ds, out)
    assert int(hit.sum()) == round(fraction * len(ds))
    assert torch.equal(hit.nonzero().flatten(), corrupted_indices(len(ds), fraction, seed=1))
    assert torch.equal(out.images[~hit], ds.images[~hit])
    assert float(out.images.min()) >= 0.0 and float(out.images.max()) <= 1.0
    assert torch.equal(out.labels, ds.labels) and out.normalization == ds.normalization
    assert out.images.dtype == ds.images.dtype and out.images.shape == ds.images.shape


@pytest.mark.parametrize("kind, params", KINDS)
def test_seeded(kind: str, params: dict) -> None:
    ds = random_dataset()
    a = corrupt(ds, kind, 0.5, seed=3, **params)
    b = corrupt(ds, kind, 0.5, seed=3, **params)
    c = corrupt(ds, kind, 0.5, seed=4, **params)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(changed(ds, a), changed(ds, c))


def test_gaussian_blur_equals_full_2d_convolution() -> None:
    x = random_dataset(n=4, size=20).images
    sigma = 1.3
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-t**2 / (2 * sigma**2))
    k2 = torch.outer(g, g) / torch.outer(g, g).sum()
    padded = F.pad(x, (radius,) * 4, mode="reflect")
    reference = F.conv2d(padded, k2.expand(3, 1, -1, -1), groups=3)
    out = gaussian_blur(x, sigma=sigma)
    assert out.shape == x.shape
    assert torch.allclose(out, reference, atol=1e-6)
    assert out.std() < 0.7 * x.std()  # blur removes pixel-level variance
    flat = torch.full((1, 1, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(flat, sigma=2.0), flat)


def test_gaussian_blur_kernel_size_and_errors() -> None:
    x = random_dataset(n=2, size=8).images
    big = gaussian_blur(x, sigma=10.0)  # radius capped to fit reflect padding on 8×8
    assert big.shape == x.shape and torch.isfinite(big).all()
    assert not torch.allclose(gaussian_blur(x, sigma=1.0, kernel_size=3),
                              gaussian_blur(x, sigma=1.0))
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(x, sigma=1.0, kernel_size=4)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, sigma=0.0)


def test_low_resolution_nearest_is_blockwise_area_mean() -> None:
    x = random_dataset(n=3, size=16).images
    out = low_resolution(x, factor=4, mode="nearest")
    means = F.avg_pool2d(x, 4)
    assert torch.allclose(out, means.repeat_interleave(4, -2).repeat_interleave(4, -1), atol=1e-6)
    bilinear = low_resolution(x, factor=4)
    assert bilinear.shape == x.shape
    assert torch.allclose(F.avg_pool2d(bilinear, 4), means, atol=0.08)  # same coarse content
    assert (bilinear - x).abs().mean() > 0.1  # but the fine detail is gone
    with pytest.raises(ValueError, match="factor must be > 1"):
        low_resolution(x, factor=1)


def test_additive_noise_statistics() -> None:
    x = torch.full((64, 1, 32, 32), 0.5)
    gen = torch.Generator().manual_seed(0)
    noise = additive_noise(x, gen, std=0.05) - x
    assert float(noise.mean()) == pytest.approx(0.0, abs=2e-3)
    assert float(noise.std()) == pytest.approx(0.05, rel=0.03)
    uniform = additive_noise(x, gen, std=0.09, uniform_std=True) - x  # MUD-HoG's variant
    assert float(uniform.var()) == pytest.approx(0.09**2 / 3, rel=0.05)
    clipped = additive_noise(torch.ones(4, 1, 8, 8), gen, std=1.0)
    assert float(clipped.max()) <= 1.0 and float(clipped.min()) >= 0.0


def test_bad_arguments() -> None:
    ds = random_dataset(n=5)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        corrupt(ds, "gaussian_blur", 1.5, seed=0)
    with pytest.raises(KeyError, match="known: additive_noise"):
        corrupt(ds, "jpeg", 0.5, seed=0)
    with pytest.raises(TypeError, match="accepts: sigma, kernel_size"):
        corrupt(ds, "gaussian_blur", 0.5, seed=0, std=1.0)
