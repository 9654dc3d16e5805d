"""The harness's one door to the metrics modules: privacy (``benchmarks.privacy_metrics``)
and robustness (``benchmarks.robustness``); it only aggregates what they compute."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from torch import Tensor

from benchmarks.lpips import LPIPS, LPIPSUnavailable, load_lpips
from benchmarks.privacy_metrics import PrivacyScores, score_reconstruction
from fl_core import Normalization


@cache
def _lpips() -> LPIPS | LPIPSUnavailable:
    """Loaded once per process: every run of a worker shares it."""
    return load_lpips()


def score_privacy(reconstruction: Tensor, truth: Tensor, normalization: Normalization,
                  predicted_labels: Tensor | None, true_labels: Tensor) -> PrivacyScores:
    """Hungarian-matched PSNR/SSIM/MSE/LPIPS and label accuracy of one attacked upload.

    Images too small for LPIPS-AlexNet (e.g. 8×8 digits) get LPIPS reported as
    unavailable with the reason, never a made-up number.
    """
    if predicted_labels is not None and predicted_labels.shape != true_labels.shape:
        predicted_labels = None  # a different batch size: no label multiset to compare
    lpips = _lpips()
    try:
        return score_reconstruction(reconstruction, truth, normalization, predicted_labels, true_labels, lpips)
    except RuntimeError as exc:
        if isinstance(lpips, LPIPSUnavailable):
            raise
        h, w = truth.shape[-2:]
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        why = "too small for AlexNet's pooling layers" if "output size" in message.lower() else message[:160]
        reason = LPIPSUnavailable(f"LPIPS-AlexNet cannot score {h}×{w} images: {why}")
        return score_reconstruction(reconstruction, truth, normalization, predicted_labels, true_labels, reason)


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
    }


def robustness_scores(sim: Any, history: Any, test: Any, attacks: list[Any],
                      groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {}
