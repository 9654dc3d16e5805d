"""Privacy metrics: PSNR/MSE/SSIM against hand computations, Hungarian matching, LPIPS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedarena.benchmarks.metrics.lpips import CHANNELS, LPIPS, LPIPSUnavailable, load_lpips, resize_note, scoring_size
from fedarena.benchmarks.metrics.privacy import (
    label_accuracy,
    match_order,
    mse,
    psnr,
    score_reconstruction,
    ssim,
    to_unit,
)
from fedarena.fl_core.data import Normalization
from fedarena.fl_core.data_root import data_root

NORM = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_psnr_and_mse_of_known_images() -> None:
    x = torch.zeros(2, 3, 4, 4)
    y = torch.full((2, 3, 4, 4), 0.1)
    y[1] = 0.5
    assert mse(x, y).tolist() == pytest.approx([0.01, 0.25])
    assert psnr(x, y).tolist() == pytest.approx([20.0, 10 * math.log10(4)], abs=1e-4)
    assert math.isinf(float(psnr(y, y)[0]))


def test_ssim_of_constant_images_is_the_luminance_term() -> None:
    a, b = 0.2, 0.6
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # contrast/structure term is c2/c2 = 1
    assert float(ssim(x, y)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(ssim(x, x)[0]) == pytest.approx(1.0)


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Direct Wang et al. (2004) loops: Gaussian-weighted moments at every valid window."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for ch in range(x.shape[0]):
        for i in range(x.shape[1] - 10):
            for j in range(x.shape[2] - 10):
                px, py = x[ch, i:i + 11, j:j + 11], y[ch, i:i + 11, j:j + 11]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cxy = (w * (px - mx) * (py - my)).sum()
                values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_equals_a_direct_loop_implementation() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 14, 13, generator=gen)
    y = (x + 0.2 * torch.randn(2, 3, 14, 13, generator=gen)).clamp(0, 1)
    ours = ssim(x, y).tolist()
    for b in range(2):
        assert ours[b] == pytest.approx(_ssim_by_hand(x[b].double().numpy(), y[b].double().numpy()), abs=1e-6)
    assert 0.0 < ours[0] < 1.0


def test_hungarian_matching_undoes_a_shuffle() -> None:
    gen = torch.Generator().manual_seed(1)
    truth = torch.rand(6, 3, 5, 5, generator=gen)
    perm = torch.randperm(6, generator=gen)
    noisy = (truth[perm] + 0.05 * torch.randn(6, 3, 5, 5, generator=gen)).clamp(0, 1)
    order = match_order(noisy, truth)
    assert order == torch.argsort(perm).tolist()
    assert match_order(truth, truth) == list(range(6))


def test_score_reconstruction_matches_then_scores_in_pixel_space() -> None:
    gen = torch.Generator().manual_seed(2)
    pixels = torch.rand(3, 3, 8, 8, generator=gen)
    truth = NORM.normalize(pixels)
    shuffled = truth[[2, 0, 1]]
    shuffled[0] = NORM.normalize(torch.full((1, 3, 8, 8), 0.5))[0]  # a bad reconstruction of truth image 2
    scores = score_reconstruction(shuffled, truth, NORM, torch.tensor([4, 4, 1]), torch.tensor([4, 1, 1]),
                                  lpips=LPIPSUnavailable("not needed here"))
    assert scores.order == [1, 2, 0]
    assert math.isinf(scores.psnr[0]) and math.isinf(scores.psnr[1])
    assert scores.mse[2] == pytest.approx(float((pixels[2] - 0.5).pow(2).mean()), rel=1e-5)
    assert scores.lpips is None and scores.lpips_note == "not needed here"
    assert scores.label_accuracy == pytest.approx(2 / 3)
    assert scores.means()["lpips"] is None


def test_label_accuracy_is_order_free_multiset_overlap() -> None:
    assert label_accuracy(torch.tensor([3, 3, 1, 0]), torch.tensor([0, 3, 1, 1])) == 0.75
    assert label_accuracy(torch.tensor([2, 2]), torch.tensor([2, 2])) == 1.0
    with pytest.raises(ValueError, match="labels"):
        label_accuracy(torch.tensor([1]), torch.tensor([1, 2]))


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 5, 4))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        ssim(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        to_unit(torch.full((1, 3, 2, 2), float("nan")), None)


def _random_lpips() -> LPIPS:
    gen = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    feats = {}
    for i, s in shapes.items():
        feats[f"features.{i}.weight"] = 0.05 * torch.randn(s, generator=gen)
        feats[f"features.{i}.bias"] = torch.zeros(s[0])
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate(CHANNELS)}
    return LPIPS(feats, heads)


def test_lpips_of_an_image_with_itself_is_zero() -> None:
    model = _random_lpips()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    y = x.flip(-1)
    assert model.distance(x, x).tolist() == [0.0, 0.0]
    assert (model.distance(x, y) > 0).all()


def test_lpips_scores_images_too_small_for_alexnet_upsampled_to_its_patch_size() -> None:
    """A 28×28 digit pair (AlexNet's pools leave nothing of it) is scored as the bilinear 64×64
    upsampling of the pair; images of 32 px and more are scored as they are."""
    assert scoring_size(28, 28) == (64, 64) and scoring_size(8, 16) == (64, 128) and scoring_size(32, 40) == (32, 40)
    assert resize_note(32, 32) == "" and "28×28" in resize_note(28, 28) and "64×64" in resize_note(28, 28)
    model = _random_lpips()
    gen = torch.Generator().manual_seed(5)
    x, y = torch.rand(2, 1, 28, 28, generator=gen), torch.rand(2, 1, 28, 28, generator=gen)
    with pytest.raises(RuntimeError):  # what the reference would do: AlexNet refuses 28×28 input
        model(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1))
    d = model.distance(x, y)
    up = [torch.nn.functional.interpolate(t.expand(-1, 3, -1, -1), size=(64, 64), mode="bilinear",
                                          align_corners=False) for t in (x, y)]
    assert torch.allclose(d, model(*up), atol=1e-6) and (d > 0).all()
    assert model.distance(x, x).tolist() == [0.0, 0.0]
    scores = score_reconstruction(x, y, None, lpips=model)
    assert scores.lpips is not None and scores.lpips_note == ""


def test_lpips_missing_weights_are_reported_not_invented(tmp_path) -> None:
    result = load_lpips(tmp_path)
    assert isinstance(result, LPIPSUnavailable) and "alex" in result.reason and str(tmp_path) in result.reason


def _assets():
    root = data_root()
    needed = [root / "weights/lpips/v0.1/alex.pth", root / "datasets/lpips-examples/ex_ref.png"]
    if not all(p.is_file() for p in needed):
        pytest.skip(f"LPIPS weights / example images not under the data root {root} (set FEDARENA_DATA)")
    return root


def test_lpips_reproduces_the_reference_example_triplet() -> None:
    from PIL import Image

    root = _assets()
    model = load_lpips(root)
    assert isinstance(model, LPIPS)

    def image(name: str) -> torch.Tensor:
        pixels = np.asarray(Image.open(root / "datasets/lpips-examples" / f"{name}.png").convert("RGB"))
        return torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255

    ref, p0, p1 = image("ex_ref"), image("ex_p0"), image("ex_p1")
    assert float(model.distance(ref, p0)[0]) == pytest.approx(0.722, abs=5e-4)
    assert float(model.distance(ref, p1)[0]) == pytest.approx(0.138, abs=5e-4)
    assert float(model.distance(ref, ref)[0]) == 0.0
