"""Gradient-matching losses, shared by every optimisation-based inversion attack.

All losses compare two *flat* update vectors in ``ParameterLayout`` order, so one
fused elementwise pass replaces a Python loop over parameters, and everything about
the fixed target (its norm, per-layer norms, layer ids) is computed once in the
constructor, never per iteration. Each loss is a pure tensor function of the
candidate, so it runs unchanged under ``torch.func.vmap`` (batched restarts).

- ``l2``: ``Σ (c − t)²`` over all parameters — DLG (Zhu et al. 2019), as in
  mit-han-lab/dlg ``main.py`` (sum over layers of squared differences).
- ``cosine``: ``1 − ⟨c, t⟩ / (‖c‖ ‖t‖)`` with inner product and norms accumulated over
  all layers — Inverting Gradients (Geiping et al. 2020, Eq. 4); the reference
  ``inversefed`` ``reconstruction_costs(cost_fn='sim', indices='def')`` and breaching's
  ``CosineSimilarity`` compute exactly this.
- ``layer_cosine``: ``Σ_l (1 − cos(c_l, t_l))``, one cosine per parameter tensor
  (inversefed's ``simlocal``), which weighs small layers as much as large ones.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from fedarena.fl_core.vectors import ParameterLayout, check_vector

MatchingLoss = Literal["l2", "cosine", "layer_cosine"]
MATCHING_LOSSES: tuple[str, ...] = ("l2", "cosine", "layer_cosine")


class GradientMatcher:
    """``matcher(candidate) -> scalar``: distance of a candidate update to the observed one."""

    def __init__(self, target: Tensor, layout: ParameterLayout, loss: MatchingLoss = "cosine",
                 eps: float = 1e-12) -> None:
        if loss not in MATCHING_LOSSES:
            raise ValueError(f"unknown matching loss {loss!r}; known: {', '.join(MATCHING_LOSSES)}")
        check_vector(target, layout.dim)
        self.loss = loss
        self.layout = layout
        self.target = target.detach()
        self.eps = eps
        self.target_norm = self.target.norm()
        if loss == "cosine" and float(self.target_norm) == 0.0:
            raise ValueError("the observed update is all zeros: cosine matching is undefined")
        if loss == "layer_cosine":
            numels = torch.tensor(layout.numels)
            self.layer_ids = torch.repeat_interleave(torch.arange(len(numels)), numels).to(target.device)
            self.target_layer_norms = self._layer_sums(self.target * self.target).sqrt()
            # Layers whose observed update is exactly zero carry no signal (frozen by the
            # client, or dead units); they are left out instead of dividing by zero.
            self.active = (self.target_layer_norms > 0).to(target.dtype)

    def __call__(self, candidate: Tensor) -> Tensor:
        if self.loss == "l2":
            return (candidate - self.target).pow(2).sum()
        if self.loss == "cosine":
            dot = torch.dot(candidate, self.target)
            # torch.linalg.vector_norm is what Tensor.norm() calls, without its Python dispatch
            # (as costly as the op itself on vectors this size, once per iteration)
            return 1 - dot / (torch.linalg.vector_norm(candidate) * self.target_norm + self.eps)
        dots = self._layer_sums(candidate * self.target)
        norms = self._layer_sums(candidate * candidate).sqrt()
        cos = dots / (norms * self.target_layer_norms + self.eps)
        return ((1 - cos) * self.active).sum()

    def _layer_sums(self, values: Tensor) -> Tensor:
        out = values.new_zeros(len(self.layout.numels))
        return out.index_add(0, self.layer_ids, values)
