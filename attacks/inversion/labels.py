"""Analytic label recovery from the last layer's gradient.

With cross-entropy ``L = (1/B) Σ_b CE(W h_b + b, y_b)`` the last layer's gradients are
``∇b = (1/B) Σ_b (p_b − e_{y_b})`` and ``∇W = (1/B) Σ_b (p_b − e_{y_b}) h_bᵀ``, so a
label present in the batch pulls its row negative. Methods (all take a *gradient-like*
vector: a FedSGD gradient, or a FedAvg delta turned into one by ``−Δ / (lr · steps)``):

- ``idlg`` (Zhao et al. 2020, batch of 1): the one row whose gradient is negative. We
  take ``argmin ∇b`` when the layer has a bias (its sign rule ``p_y − 1 < 0 < p_j``
  holds for any features) and otherwise, as iDLG/inversefed do, ``argmin Σ_j ∇W_yj``,
  which needs non-negative features (sigmoid / ReLU before the classifier).
- ``yin`` (Yin et al. 2021, GradInversion): the ``B`` rows with the most negative
  minimum entry of ``∇W``; assumes distinct labels, kept as a baseline.
- ``llg`` (Wainakh et al. 2022, LLG "simple"): row sums ``g_i = Σ_j ∇W_ij``; impact of
  one sample ``m = (1 + 1/K) Σ_{g_i<0} g_i / B``; every negative row is a label (then
  ``g_i −= m``), the remaining ``B − k`` labels are taken greedily by ``argmin g`` with
  ``g_i −= m`` after each pick, so labels can repeat. (Breaching's port subtracts the
  impact from a stale index in stage 2; here it goes to the class just picked.)
- ``bias`` (default for batches, repeated labels): counts straight from the bias
  gradient, ``n_c = B (p̄_c − ∇b_c)``, rounded by largest remainder to sum to ``B``.
  ``p̄_c`` (mean softmax over the batch) is unknown; it is estimated by the attacker's
  own forward pass on random inputs (``expected_probs``, the white-box idea of LLG+) or
  taken as uniform ``1/K``. Exact whenever the estimate is within ``1/(2B)`` of the
  truth, which holds for untrained and early-training models; falls back to ``llg``
  when the last layer has no bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from fedarena.fl_core.vectors import ParameterLayout

LabelMethod = Literal["idlg", "yin", "llg", "bias"]
LABEL_METHODS: tuple[str, ...] = ("idlg", "yin", "llg", "bias")


@dataclass(frozen=True)
class LastLayer:
    """Gradient of the classifier layer: ``weight`` ``[K, F]`` and ``bias`` ``[K]`` (or None)."""

    weight: Tensor | None
    bias: Tensor | None


def last_layer(vector: Tensor, layout: ParameterLayout, num_classes: int) -> LastLayer:
    """Find the final linear layer (``num_classes`` outputs) in a flat gradient-like vector."""
    parts = layout.unflatten(vector.detach())
    names = list(layout.names)
    shapes = list(layout.shapes)
    k = num_classes
    for i in range(len(names) - 1, -1, -1):
        shape = tuple(shapes[i])
        if shape == (k,) and i > 0 and len(shapes[i - 1]) == 2 and shapes[i - 1][0] == k:
            return LastLayer(parts[names[i - 1]], parts[names[i]])
        if len(shape) == 2 and shape[0] == k:
            return LastLayer(parts[names[i]], None)
    raise ValueError(f"label recovery needs a final linear layer with {num_classes} outputs; "
                     f"none found among the parameters {names[-4:]}")


def recover_labels(layer: LastLayer, num_images: int, method: LabelMethod = "bias",
                   expected_probs: Tensor | None = None) -> Tensor:
    """Labels ``[num_images]`` (sorted; images are free to take any order) from ``layer``."""
    if method not in LABEL_METHODS:
        raise ValueError(f"unknown label recovery method {method!r}; known: {', '.join(LABEL_METHODS)}")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if method == "idlg":
        if num_images != 1:
            raise ValueError(f"iDLG label recovery works for one image, got a batch of {num_images}; "
                             f"use 'bias' or 'llg' for batches")
        return _idlg(layer)
    if method == "yin":
        return _yin(layer, num_images)
    if method == "bias" and layer.bias is not None:
        return _bias_counts(layer.bias, num_images, expected_probs)
    return _llg(layer, num_images)


def _idlg(layer: LastLayer) -> Tensor:
    if layer.bias is not None:
        return layer.bias.argmin().reshape(1)
    assert layer.weight is not None
    return layer.weight.sum(dim=1).argmin().reshape(1)


def _yin(layer: LastLayer, num_images: int) -> Tensor:
    if layer.weight is None:
        raise ValueError("'yin' label recovery needs the last layer's weight gradient")
    k = layer.weight.shape[0]
    if num_images > k:
        raise ValueError(f"'yin' assumes distinct labels: cannot pick {num_images} of {k} classes")
    return layer.weight.min(dim=1).values.argsort()[:num_images].sort().values


def _llg(layer: LastLayer, num_images: int) -> Tensor:
    if layer.weight is None:
        raise ValueError("'llg' label recovery needs the last layer's weight gradient")
    g = layer.weight.sum(dim=1).clone()
    k = g.numel()
    negative = (g < 0).nonzero().squeeze(1)
    if negative.numel() > num_images:  # more candidates than images: keep the strongest
        negative = negative[g[negative].argsort()[:num_images]]
    impact = g[negative].sum() * (1 + 1 / k) / num_images
    picked = negative.tolist()
    g[negative] -= impact
    while len(picked) < num_images:
        c = int(g.argmin())
        picked.append(c)
        g[c] -= impact
    return torch.tensor(sorted(picked), dtype=torch.long, device=g.device)


def _bias_counts(bias: Tensor, num_images: int, expected_probs: Tensor | None) -> Tensor:
    k = bias.numel()
    if expected_probs is None:
        probs = torch.full((k,), 1.0 / k, dtype=bias.dtype, device=bias.device)
    else:
        probs = expected_probs.to(bias)
    if probs.shape != (k,):
        raise ValueError(f"expected_probs must have shape ({k},), got {tuple(probs.shape)}")
    counts = (num_images * (probs - bias)).clamp(min=0)
    if float(counts.sum()) <= 0:
        return bias.argsort()[:1].repeat(num_images)
    counts = counts * (num_images / counts.sum())  # the counts must sum to B
    whole = counts.floor()
    remaining = num_images - int(whole.sum())
    if remaining > 0:
        whole[(counts - whole).argsort(descending=True)[:remaining]] += 1
    return torch.repeat_interleave(torch.arange(k, device=bias.device), whole.long())
