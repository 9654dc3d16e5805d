"""How much a reconstruction reveals: PSNR, SSIM, MSE, LPIPS and label accuracy.

Every image score is computed on pixels in [0, 1] after undoing the dataset's
normalisation (reconstructions are clamped to the box, the ground truth already is),
and a reconstructed batch is first matched to the private batch with the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment`` on the pairwise MSE), because a
gradient does not reveal the order of the images in its batch.

- PSNR: ``10 log10(1 / MSE)`` per image (peak 1), then the mean over images; an exact
  image has infinite PSNR, so tables summarise many images with ``summarize_psnr`` (mean over
  the finite ones with the exact ones counted, median and IQR over all).
- SSIM: Wang et al. (2004) with an 11×11 Gaussian window, σ = 1.5, K1 = 0.01,
  K2 = 0.03, data range 1, population covariances, computed per channel over the
  'valid' window positions and averaged — the same numbers as scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)``. Images smaller than 11 pixels use the largest odd window that fits
  (scikit-image refuses them).
- LPIPS: ``fedarena.benchmarks.metrics.lpips`` (AlexNet, v0.1 heads); ``None`` with a reason when the
  weights are missing, never a made-up number.
- Normalised MSE (``normalized_mse``): the MSE in the model's normalised input space,
  unclamped — the Dropout Inversion reference's metric (dAI-SY-Group/DropoutInversionAttack
  ``src/metrics.py`` ``MSE``, on the normalised victim inputs), so numbers compare with
  its demo; per image, after the same Hungarian matching.
- Mask recovery (``mask_recovery``): the fraction of dropout-mask entries whose rounding
  equals the client's recorded mask (``PrivateData.dropout_masks``, ground-truth side).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from fedarena.attacks.inversion.variables import MASK_PREFIX
from fedarena.fl_core.data import Normalization

from .lpips import LPIPS, LPIPSUnavailable, load_lpips

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


@dataclass
class PrivacyScores:
    """Per-image and mean scores of one reconstruction against the private batch.

    ``order[i]`` is the reconstruction matched to ground-truth image ``i``.
    ``lpips`` is None when unavailable; ``lpips_note`` then says why.
    """

    psnr: list[float]
    ssim: list[float]
    mse: list[float]
    lpips: list[float] | None
    order: list[int]
    label_accuracy: float | None = None
    lpips_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def means(self) -> dict[str, float | None]:
        return {
            "psnr": _mean(self.psnr), "ssim": _mean(self.ssim), "mse": _mean(self.mse),
            "lpips": None if self.lpips is None else _mean(self.lpips), "label_accuracy": self.label_accuracy,
        }


def to_unit(images: Tensor, normalization: Normalization | None) -> Tensor:
    """Normalised model inputs → pixels in [0, 1] (clamped: the box every image lives in)."""
    _check_images(images, "images")
    x = images.detach().float()
    if normalization is not None:
        x = normalization.denormalize(x)
    return x.clamp(0, 1)


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean squared error ``[B]`` of images in [0, 1]."""
    _check_pair(x, y)
    return (x - y).pow(2).flatten(1).mean(dim=1)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB ``[B]`` (peak 1); ``inf`` for identical images."""
    return 10 * torch.log10(1.0 / mse(x, y))


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM ``[B]`` (Gaussian window, Wang et al. 2004; see the module docstring)."""
    _check_pair(x, y)
    x, y = x.double(), y.double()
    size = min(SSIM_WINDOW, _largest_odd(min(x.shape[-2:])))
    window = _gaussian_window(size, SSIM_SIGMA, x.shape[1]).to(x)
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=x.shape[1])

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1).float()


def match_order(reconstruction: Tensor, truth: Tensor) -> list[int]:
    """Hungarian matching on pairwise MSE: ``order[i]`` = reconstruction for truth image ``i``."""
    _check_pair(reconstruction, truth)
    diff = reconstruction.flatten(1)[None, :, :] - truth.flatten(1)[:, None, :]
    cost = diff.pow(2).mean(dim=2).double().numpy()  # [truth, reconstruction]
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = cols
    return order.tolist()


def normalized_mse(reconstruction: Tensor, truth: Tensor, order: list[int] | None = None) -> Tensor:
    """Per-image MSE ``[B]`` in the model's normalised input space (no clamping), the
    reconstruction taken in ``order`` (``match_order``'s, from the [0, 1] images)."""
    _check_pair(reconstruction, truth)
    x = reconstruction.detach().cpu().float()
    x = x if order is None else x[order]
    return (x - truth.detach().cpu().float()).pow(2).flatten(1).mean(dim=1)


def mask_recovery(recovered: Mapping[str, Tensor], truth: Mapping[str, Sequence[Tensor]],
                  order: list[int] | None = None) -> float:
    """Fraction of mask entries with ``round(m̂) == m`` over every site and local step.

    ``recovered``: ``{site: [steps, B, ...]}`` (a reconstruction's ``mask.<site>``
    variables, prefix removed); ``truth``: ``{site: [mask per forward]}`` as recorded on
    the client. ``order`` permutes the recovered masks' image axis like the images, when
    every step sees the whole batch (FedSGD, full-batch steps).
    """
    if not recovered:
        raise ValueError("no recovered masks to score")
    missing = sorted(set(recovered) - set(truth))
    if missing:
        raise ValueError(f"recovered masks for sites {missing} the client did not record; it recorded {sorted(truth)}")
    hits = total = 0
    for site, masks in recovered.items():
        true = torch.stack([m.detach().cpu() for m in truth[site]])
        guess = masks.detach().cpu()
        if guess.shape != true.shape:
            raise ValueError(f"site {site!r}: recovered masks {tuple(guess.shape)} vs recorded {tuple(true.shape)}")
        if order is not None and guess.dim() > 1 and guess.shape[1] == len(order):
            guess = guess[:, order]
        hits += int((guess.round() == true.round()).sum())
        total += true.numel()
    return hits / total


def label_accuracy(predicted: Tensor, true: Tensor) -> float:
    """Fraction of the batch's labels recovered, as multisets (order-free): ``Σ_c min(n̂_c, n_c) / B``."""
    if predicted.shape != true.shape or predicted.dim() != 1:
        raise ValueError(f"labels must be two [B] tensors of equal shape, got {tuple(predicted.shape)} "
                         f"and {tuple(true.shape)}")
    k = int(max(predicted.max(), true.max())) + 1
    hits = torch.minimum(torch.bincount(predicted, minlength=k), torch.bincount(true, minlength=k))
    return float(hits.sum()) / true.numel()


def score_reconstruction(
    reconstruction: Tensor,
    truth: Tensor,
    normalization: Normalization | None,
    predicted_labels: Tensor | None = None,
    true_labels: Tensor | None = None,
    lpips: LPIPS | LPIPSUnavailable | None = None,
) -> PrivacyScores:
    """Match a reconstructed batch to the private one, then score each pair.

    Both batches are in normalised model space (``normalization`` undoes it; pass None
    for pixels already in [0, 1]). ``lpips``: a loaded model, an ``LPIPSUnavailable``
    (reported as such), or None to try ``load_lpips()`` from the data root. Scored on the
    CPU whatever device the attack ran on: cheap, and the same images give the same numbers
    on every machine.
    """
    x, y = to_unit(reconstruction.detach().cpu(), normalization), to_unit(truth.detach().cpu(), normalization)
    order = match_order(x, y)
    x = x[order]
    if lpips is None:
        lpips = load_lpips()
    if isinstance(lpips, LPIPSUnavailable):
        lp, note = None, lpips.reason
    else:
        lp, note = lpips.distance(x, y).tolist(), ""
    acc = None
    if predicted_labels is not None and true_labels is not None:
        acc = label_accuracy(predicted_labels.detach().cpu().long(), true_labels.detach().cpu().long())
    return PrivacyScores(psnr(x, y).tolist(), ssim(x, y).tolist(), mse(x, y).tolist(), lp, order, acc, note)


def _gaussian_window(size: int, sigma: float, channels: int) -> Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, size, size).contiguous()


def _largest_odd(n: int) -> int:
    return n if n % 2 else n - 1


def _check_images(t: Tensor, what: str) -> None:
    if not isinstance(t, Tensor) or t.dim() != 4:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{what} must be a [B, C, H, W] tensor, got {shape}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contain NaN or infinite values")


def _check_pair(x: Tensor, y: Tensor) -> None:
    _check_images(x, "reconstructed images")
    _check_images(y, "ground-truth images")
    if x.shape != y.shape:
        raise ValueError(f"image batches differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


# -- scoring one attacked upload, summarising a run (the privacy task's and the scripts' one door)

@cache
def _lpips() -> LPIPS | LPIPSUnavailable:
    """Loaded once per process: every run of a worker shares it."""
    return load_lpips()


def score_privacy(reconstruction: Tensor, truth: Tensor, normalization: Normalization,
                  predicted_labels: Tensor | None, true_labels: Tensor,
                  masks: Mapping[str, Tensor] | None = None,
                  true_masks: Mapping[str, Sequence[Tensor]] | None = None) -> PrivacyScores:
    """Hungarian-matched PSNR/SSIM/MSE/LPIPS and label accuracy of one attacked upload.

    Images smaller than LPIPS-AlexNet takes (e.g. 28×28 digits) are scored upsampled
    (``fedarena.benchmarks.metrics.lpips.scoring_size``; tables say so with ``resize_note``).
    ``extra["mse_normalized"]``: the
    per-image normalised-space MSE (the DIA reference's metric). ``masks``: the
    reconstruction's variables; when its ``mask.<site>`` entries (recovered dropout masks)
    exist and ``true_masks`` (the client's record) is given, ``extra["mask_recovery"]``.
    """
    scores = _score_images(reconstruction, truth, normalization, predicted_labels, true_labels)
    scores.extra["mse_normalized"] = normalized_mse(reconstruction, truth, scores.order).tolist()
    recovered = {k[len(MASK_PREFIX):]: v for k, v in (masks or {}).items() if k.startswith(MASK_PREFIX)}
    if recovered and true_masks:
        scores.extra["mask_recovery"] = mask_recovery(recovered, true_masks, scores.order)
    return scores


def _score_images(reconstruction: Tensor, truth: Tensor, normalization: Normalization,
                  predicted_labels: Tensor | None, true_labels: Tensor) -> PrivacyScores:
    """``score_reconstruction`` with LPIPS loaded once per process."""
    if predicted_labels is not None and predicted_labels.shape != true_labels.shape:
        predicted_labels = None  # a different batch size: no label multiset to compare
    return score_reconstruction(reconstruction, truth, normalization, predicted_labels, true_labels, _lpips())


def summarize_privacy(scores: list[PrivacyScores]) -> dict[str, Any]:
    """Means over every attacked image of the run (pooled over clients), plus per-image lists."""
    def pooled(name: str) -> float | None:
        values = [v for s in scores for v in (getattr(s, name) or [])]
        finite = [v for v in values if math.isfinite(v)]
        if name == "psnr" and len(finite) < len(values):  # a perfect image has infinite PSNR
            return math.inf
        return sum(finite) / len(finite) if finite else None

    labels = [(s.label_accuracy, len(s.psnr)) for s in scores if s.label_accuracy is not None]
    notes = sorted({s.lpips_note for s in scores if s.lpips_note})
    return {
        "psnr": pooled("psnr"), "ssim": pooled("ssim"), "mse": pooled("mse"),
        "lpips": None if any(s.lpips is None for s in scores) else pooled("lpips"),
        "label_accuracy": sum(a * n for a, n in labels) / sum(n for _, n in labels) if labels else None,
        "lpips_note": "; ".join(notes),
        "psnr_per_image": [v for s in scores for v in s.psnr],
        "ssim_per_image": [v for s in scores for v in s.ssim],
        "images": sum(len(s.psnr) for s in scores),
        **_dropout_summary(scores),
    }


@dataclass(frozen=True)
class PSNRSummary:
    """PSNR over many images, honest about exact reconstructions.

    An exact reconstruction has zero error and infinite PSNR, and near-exact ones reach
    100+ dB in float32, so a plain mean is infinite or dominated by a few perfect images
    (DLG on digits: 20.7, 25.8, 108.8, 120.2 dB average to 68.9). ``mean`` is over the
    finite images only (``exact`` counts the infinite ones it leaves out); ``median``,
    ``q1`` and ``q3`` are over every image, ∞ ranking above every finite value.
    """

    images: int
    exact: int
    mean: float | None
    median: float | None
    q1: float | None
    q3: float | None


def summarize_psnr(values: Sequence[float | None]) -> PSNRSummary:
    """``PSNRSummary`` of per-image PSNRs in dB; ``None`` counts as ∞ (the result store keeps
    non-finite numbers as null, and a per-image PSNR is non-finite only for a zero error)."""
    vals = [math.inf if v is None else float(v) for v in values]
    if any(math.isnan(v) or v == -math.inf for v in vals):
        raise ValueError(f"PSNR values must be finite or +inf, got {[v for v in vals if not v < math.inf]}")
    finite = [v for v in vals if math.isfinite(v)]
    ordered = sorted(vals)
    return PSNRSummary(len(vals), len(vals) - len(finite), sum(finite) / len(finite) if finite else None,
                       _quantile(ordered, 0.5), _quantile(ordered, 0.25), _quantile(ordered, 0.75))


def _quantile(ordered: list[float], q: float) -> float | None:
    """Linear-interpolation quantile of sorted values (numpy's default, type 7), ∞ allowed:
    a quantile that falls on or next to ∞ is ∞."""
    if not ordered:
        return None
    h = (len(ordered) - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    a, b = ordered[lo], ordered[hi]
    if lo == hi or a == b:
        return a
    if math.isinf(b):
        return math.inf
    return a + (h - lo) * (b - a)


def _dropout_summary(scores: list[PrivacyScores]) -> dict[str, float]:
    """The pooled normalised-space MSE; the mask recovery (uploads weighted by their images)
    only when every upload had recovered masks scored."""
    out: dict[str, float] = {}
    values = [v for s in scores for v in s.extra.get("mse_normalized", [])]
    if values:
        out["mse_normalized"] = sum(values) / len(values)
    if scores and all("mask_recovery" in s.extra for s in scores):
        n = [len(s.psnr) for s in scores]
        out["mask_recovery"] = sum(s.extra["mask_recovery"] * k for s, k in zip(scores, n, strict=True)) / sum(n)
    return out
