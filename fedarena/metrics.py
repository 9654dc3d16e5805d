"""FedArena's scores, from one stable place (issue #18): what the harness reports.

Privacy, on images in [0, 1] (``to_unit`` undoes a ``Normalization``): per-image ``psnr``
(dB, ``inf`` for an exact reconstruction), ``ssim``, ``mse``; ``LPIPS`` (AlexNet, v0.1
heads; ``load_lpips()`` reads the weights from the data root, or says what is missing;
much less discriminative below 64×64); the Hungarian matching of a reconstructed batch to
the private one (``match_order``) and ``score_reconstruction``, which matches, then scores
each pair (PSNR/SSIM/MSE/LPIPS, label accuracy); ``label_accuracy`` (order-free);
``summarize_privacy`` over a run. Robustness: ``attack_success_rate`` (``label_flip_asr``,
``backdoor_asr``) and ``detection_scores`` (precision/recall per client role of a
``History``).

The implementations live in ``fedarena.benchmarks.metrics``; these names are the public
surface a research script should import.
"""

from fedarena.benchmarks.metrics.lpips import LPIPS, LPIPSUnavailable, load_lpips
from fedarena.benchmarks.metrics.privacy import (
    PrivacyScores,
    label_accuracy,
    mask_recovery,
    match_order,
    mse,
    normalized_mse,
    psnr,
    score_privacy,
    score_reconstruction,
    ssim,
    summarize_privacy,
    to_unit,
)
from fedarena.benchmarks.metrics.robustness import (
    DetectionScore,
    attack_success_rate,
    backdoor_asr,
    detection_scores,
    label_flip_asr,
)

__all__ = [
    "LPIPS", "LPIPSUnavailable", "load_lpips", "PrivacyScores", "label_accuracy", "mask_recovery", "match_order",
    "mse", "normalized_mse", "psnr", "score_privacy", "score_reconstruction", "ssim", "summarize_privacy",
    "to_unit", "DetectionScore", "attack_success_rate", "backdoor_asr", "detection_scores", "label_flip_asr",
]
