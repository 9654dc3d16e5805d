"""Image priors added to the gradient-matching loss.

- ``total_variation``: anisotropic TV as in Inverting Gradients' reference code
  (``inversefed.metrics.total_variation``): ``mean|x[..., :, 1:] − x[..., :, :-1]| +
  mean|x[..., 1:, :] − x[..., :-1, :]|``, means over the whole batch. Breaching's
  ``TotalVariation`` (default exponents 1, 1) averages ``|dx| + |dy|`` over all
  ``B·C·H·W`` pixels, with the differences taken by a 3×3 convolution with zero padding,
  so it also counts the last row and column against zero. It is *not* half of this
  value (as breaching's IG config comment and our old docstring said). Measured
  (breaching / ours, per image): CIFAR-10 test images 0–63, normalised, 1.02–1.36
  (median 1.07; images 0 and 1: 1.05 and 1.10); the same in [0, 1], 1.01–1.75 (median
  1.19); uniform or Gaussian noise 1.02 / 0.99; on smooth, nearly flat images (several of
  ``load_dataset("sample_images", "train")``) the zero-padded edge dominates, up to
  9.5× normalised; without that edge the two agree to ``(W−1)/W`` (0.969 at 32×32). So
  ``tv_weight = 0.1`` is inversefed's 0.1 exactly (same definition) and about breaching's
  scale 0.09–0.1 on natural normalised images; breaching's IG config (scale 0.2) is about
  twice our default, not equal to it.
- ``BNStatisticsPrior``: the BatchNorm-statistics prior of GradInversion (Yin et al.
  2021, after DeepInversion): ``Σ_l ‖μ_l(x) − μ_l‖₂ + ‖σ²_l(x) − σ²_l‖₂`` over the BN
  layers, against the per-layer (mean, var) of the private batch the threat model
  granted (``Observation.bn_statistics``, measured at each BN layer's input).
  Yin et al. weigh the first layer more (×10 in breaching's port); we keep equal
  weights and expose one overall scale in the attacks (``bn_weight``).
- ``image_l2`` (registered as ``l2``, weight ``l2_weight``, default 0): the image-norm
  prior of DeepInversion (Yin et al. 2020; its reference code's ``l2_scale`` term, also
  in GradInversion): the batch mean of each image's ``‖x_b‖₂``, which keeps pixels from
  drifting off.

``REGULARISERS`` names every term an optimisation attack may add to its matching loss.
Each entry is a ``Regulariser``: the settings field that holds its weight (weight 0 =
the term is absent) and a builder that, given the ``InversionProblem``, returns the
term ``(variables, inputs) -> scalar`` or None when it does not apply (no BN statistics
granted). A term may read any named variable, so a mask prior reads ``mask.*`` and a
latent prior reads ``z``; ``OptimizationAttack`` sums ``weight · term`` after the
matching loss, in the order the attack lists them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fedarena.fl_core.registry import Registry

Term = Callable[[Mapping[str, Tensor], Tensor], Tensor]


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation of images ``[..., H, W]`` (inversefed's definition)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean() if x.shape[-1] > 1 else x.new_zeros(())
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() if x.shape[-2] > 1 else x.new_zeros(())
    return dx + dy


class BNStatisticsPrior:
    """``prior(x)``: distance of the candidate batch's BatchNorm-input statistics to the
    granted ones.

    The statistics are measured exactly as ``fedarena.fl_core.threat.make_observation`` measures
    the private batch's: one eval-mode forward of the whole batch through the global
    model. The prior owns that eval copy, so it is independent of the mode and the
    local steps the attack simulates.
    """

    def __init__(self, model: nn.Module, statistics: Sequence[tuple[Tensor, Tensor]]) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        layers = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if len(layers) != len(statistics):
            raise ValueError(f"bn_statistics has {len(statistics)} entries but the model has "
                             f"{len(layers)} BatchNorm layers")
        self.targets = [(m.detach(), v.detach()) for m, v in statistics]
        for layer, (mean, _) in zip(layers, self.targets, strict=True):
            if mean.numel() != layer.num_features:
                raise ValueError(f"bn_statistics entry of size {mean.numel()} does not fit a BatchNorm "
                                 f"layer with {layer.num_features} features")
        self._seen: list[tuple[Tensor, Tensor]] = []
        for layer in layers:
            layer.register_forward_pre_hook(self._hook)

    def _hook(self, _module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0]
        dims = [0] + list(range(2, x.dim()))
        self._seen.append((x.mean(dims), x.var(dims, unbiased=False)))

    def __call__(self, x: Tensor) -> Tensor:
        self._seen = []
        self.model(x)
        seen, self._seen = self._seen, []
        total = x.new_zeros(())
        for (mu, var), (t_mu, t_var) in zip(seen, self.targets, strict=True):
            total = total + (mu - t_mu).norm() + (var - t_var).norm()
        return total


@dataclass(frozen=True)
class Regulariser:
    """A term of the objective: ``weight`` names the attack setting holding its weight;
    ``build(problem)`` returns the term ``(variables, inputs) -> scalar``, or None when it
    does not apply to this problem."""

    name: str
    weight: str
    build: Callable[[Any], Term | None]


REGULARISERS: Registry[Regulariser] = Registry("inversion regulariser")


def _register(regulariser: Regulariser, description: str) -> None:
    REGULARISERS.add(regulariser.name, regulariser, description)


def image_l2(x: Tensor) -> Tensor:
    """Mean over the batch of each image's L2 norm (DeepInversion's image-norm prior)."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1).mean()  # = .norm(dim=1), without its Python dispatch


_register(Regulariser("tv", "tv_weight", lambda problem: lambda variables, x: total_variation(x)),
          "anisotropic total variation of the client's inputs (inversefed's definition)")
_register(Regulariser("bn", "bn_weight", lambda problem: None if problem.bn_prior is None
                      else (lambda variables, x: problem.bn_prior(x))),
          "BatchNorm-statistics prior against the granted bn_statistics (Yin et al. 2021)")
_register(Regulariser("l2", "l2_weight", lambda problem: lambda variables, x: image_l2(x)),
          "batch mean of each input image's L2 norm (DeepInversion)")
