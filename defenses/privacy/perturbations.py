"""Perturbations of the uploaded update: noise, clipping, pruning, quantization.

Each class is an ``fedarena.fl_core.simulation.UpdateTransform``: ``transform(update, generator)``
returns a new ``ClientUpdate`` whose vector is what leaves the client, so the server,
the aggregator and every ``Observation`` see the perturbed vector. All work on the
flat ``[d]`` vector in one vectorised pass; randomness comes only from the generator
the simulation passes (seeded per client, round and transform), so a seed fixes it.
Every transform works on the device of the update it gets: noise is drawn on the
generator's device (the simulation's CPU generator: the same numbers on every device)
and moved to the update's (``random_like``); nothing is created on the default device.

The deterministic transforms (``Clipping``, ``Pruning``, ``Quantization``) also offer
``attacker_view(observed)``: a differentiable function on flat gradient vectors that an
*adaptive* inversion attack applies to its own dummy gradient before matching, as GIFD
(Fang et al., ICCV 2023) does in its experiments against defended gradients. ``attackers_view``
composes them for a list of transforms. attacks/ never imports defenses/, so the
harness hands the returned plain callable to the attack.

Sources of the defenses and of the values used in the benchmark: additive Gaussian /
Laplacian noise and gradient pruning ("compression", prune the smallest magnitudes) as
evaluated against DLG by Zhu et al. (NeurIPS 2019, Sec. 5); quantization with
unbiased stochastic rounding as in QSGD (Alistarh et al., NeurIPS 2017) and Gupta et
al. (ICML 2015); norm clipping as in DP-FedAvg (McMahan et al., ICLR 2018).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from fedarena.fl_core.updates import ClientUpdate

GradientView = Callable[[Tensor], Tensor]


@runtime_checkable
class AdaptiveTransform(Protocol):
    """A transform whose effect an attacker can replay on its own dummy gradients."""

    def attacker_view(self, observed: Tensor) -> GradientView: ...


def attackers_view(transforms: Sequence[object], observed: Tensor) -> GradientView | None:
    """The composition of the ``attacker_view`` of every deterministic transform, in order.

    Noise transforms have no view (an attacker cannot replay fresh noise) and are
    skipped; ``None`` when no transform has a view, i.e. the attacker stays naive.
    ``observed`` is the update vector the attacker saw (some views read it, e.g. the
    pruning mask).
    """
    views = [t.attacker_view(observed) for t in transforms if isinstance(t, AdaptiveTransform)]
    if not views:
        return None

    def composed(gradient: Tensor) -> Tensor:
        for view in views:
            gradient = view(gradient)
        return gradient

    return composed


@dataclass(frozen=True)
class GaussianNoise:
    """Adds i.i.d. N(0, σ²) to every coordinate of the upload (Zhu et al. 2019, Fig. 7)."""

    sigma: float

    def __post_init__(self) -> None:
        _check_nonnegative("gaussian_noise", "sigma", self.sigma)

    def __call__(self, update: ClientUpdate, generator: torch.Generator) -> ClientUpdate:
        v = update.vector
        noise = random_like(torch.randn, v, generator)
        return _replace(update, v + self.sigma * noise, gaussian_noise_sigma=self.sigma)


@dataclass(frozen=True)
class LaplaceNoise:
    """Adds i.i.d. Laplace(0, b) noise, ``b`` = ``scale`` (standard deviation √2·b).

    Sampled as b·(E₁ − E₂) with E = −log(1 − U), U ~ U[0, 1): the difference of two
    exponentials is Laplace, and 1 − U ∈ (0, 1] keeps every draw finite.
    """

    scale: float

    def __post_init__(self) -> None:
        _check_nonnegative("laplace_noise", "scale", self.scale)

    def __call__(self, update: ClientUpdate, generator: torch.Generator) -> ClientUpdate:
        v = update.vector
        u = random_like(torch.rand, v, generator, (2, *v.shape))
        exp = -torch.log1p(-u)
        return _replace(update, v + self.scale * (exp[0] - exp[1]), laplace_noise_scale=self.scale)


@dataclass(frozen=True)
class Clipping:
    """Scales the upload to L2 norm ≤ ``max_norm`` (w · min(1, C/‖w‖); DP-FedAvg's ClipFn)."""

    max_norm: float

    def __post_init__(self) -> None:
        _check_positive("clipping", "max_norm", self.max_norm)

    def __call__(self, update: ClientUpdate, generator: torch.Generator) -> ClientUpdate:
        return _replace(update, clip_to_norm(update.vector, self.max_norm), clip_norm=self.max_norm)

    def attacker_view(self, observed: Tensor) -> GradientView:
        """The same clipping, differentiable: only the norm changes, the direction is kept."""
        max_norm = self.max_norm
        return lambda gradient: clip_to_norm(gradient, max_norm)


@dataclass(frozen=True)
class Pruning:
    """Keeps the ``fraction`` of coordinates largest in magnitude and zeroes the rest.

    ``fraction`` is the share KEPT (``fraction=0.1`` zeroes 90 % of the coordinates); the
    prune ratio of Zhu et al. (2019), the share zeroed, is ``1 − fraction``.
    Exactly k = round(fraction · d) coordinates are kept (Python's ``round``: halves
    to even). Ties in magnitude are broken towards the lower index (a stable sort),
    so the mask is a deterministic function of the vector. Zhu et al. (2019) call this
    gradient compression / pruning and report that DLG fails beyond ~20 % pruned.
    """

    fraction: float

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float) \
                or not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"pruning: fraction (of coordinates kept) must be in (0, 1], got {self.fraction!r}")

    def kept(self, dim: int) -> int:
        return round(self.fraction * dim)

    def __call__(self, update: ClientUpdate, generator: torch.Generator) -> ClientUpdate:
        v = update.vector
        k = self.kept(v.numel())
        mask = top_k_mask(v, k)
        return _replace(update, v * mask, pruning_fraction=self.fraction, pruning_kept=k)

    def attacker_view(self, observed: Tensor) -> GradientView:
        """Zero the dummy gradient wherever the observed upload is zero (the attacker sees the mask)."""
        mask = (observed != 0).to(observed.dtype).detach()
        return lambda gradient: gradient * mask.to(device=gradient.device, dtype=gradient.dtype)


@dataclass(frozen=True)
class Quantization:
    """Symmetric uniform ``bits``-bit quantization with one per-vector scale.

    Scheme: s = max|w| (one float32 sent alongside), L = 2^(bits−1) − 1 levels on each
    side of zero (2L + 1 ≤ 2^bits codes: 8 bits → 255 values, 4 bits → 15), t = w / s · L
    ∈ [−L, L]. ``stochastic=True`` rounds t up with probability t − ⌊t⌋ (unbiased:
    E[q] = w; QSGD / Gupta et al. 2015), otherwise to the nearest level. The client
    uploads q · s / L (dequantised, so every later stage sees ordinary floats).
    """

    bits: int
    stochastic: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 16:
            raise ValueError(f"quantization: bits must be an int in [2, 16], got {self.bits!r}")

    @property
    def levels(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def __call__(self, update: ClientUpdate, generator: torch.Generator) -> ClientUpdate:
        v = update.vector
        scale = v.abs().max()
        if float(scale) == 0.0:
            return _replace(update, v.clone(), quantization_bits=self.bits)
        t = v / scale * self.levels
        if self.stochastic:
            low = t.floor()
            up = random_like(torch.rand, t, generator) < (t - low)
            q = low + up.to(t.dtype)
        else:
            q = t.round()
        return _replace(update, q.clamp(-self.levels, self.levels) * (scale / self.levels),
                        quantization_bits=self.bits, quantization_stochastic=self.stochastic)

    def attacker_view(self, observed: Tensor) -> GradientView:
        """What the attacker can replay of the quantizer, given the scale s read off the
        observation (its largest magnitude is s exactly: the maximal coordinate lands on ±L).

        Nearest rounding (``stochastic=False``): round the dummy gradient to the observed
        grid, straight-through (identity backward); exact. Stochastic rounding: the
        rounding itself is random and unbiased, so the deterministic part is its
        expectation, E[q(g)] = clamp(g, −s, s), and that is what the view applies.
        Replaying nearest rounding instead (straight-through) was measured to *hurt* the
        attacker: DLG on 8-bit stochastic uploads fell from 28.6 dB (naive) to 14.3 dB,
        because the rounded loss is piecewise constant and the line search stalls.
        """
        scale = observed.abs().max().detach()
        levels = self.levels
        if float(scale) == 0.0:
            return lambda gradient: gradient * 0

        def expected(gradient: Tensor) -> Tensor:
            s = scale.to(device=gradient.device, dtype=gradient.dtype)
            return gradient.clamp(-s, s)

        def rounded(gradient: Tensor) -> Tensor:
            s = scale.to(device=gradient.device, dtype=gradient.dtype)
            grid = (gradient / s * levels).round().clamp(-levels, levels) * (s / levels)
            return gradient + (grid - gradient).detach()

        return expected if self.stochastic else rounded


def clip_to_norm(vector: Tensor, max_norm: float) -> Tensor:
    """``vector · min(1, max_norm / ‖vector‖)``; differentiable; a zero vector stays zero.

    The norm is accumulated in float64: a finite float32 vector can have a norm that
    overflows float32 (entries ~1e20 and up), which would otherwise clip it to zero.
    """
    norm = torch.linalg.vector_norm(vector, dtype=torch.float64)
    factor = torch.where(norm > max_norm, max_norm / norm.clamp_min(1e-300), 1.0)
    return vector * factor.to(vector.dtype)


def random_like(draw: Callable[..., Tensor], like: Tensor, generator: torch.Generator,
                shape: Sequence[int] | None = None) -> Tensor:
    """``draw`` (``torch.randn``, ``torch.rand``) of ``shape`` (``like``'s by default) in
    ``like``'s dtype, drawn on ``generator``'s device and moved to ``like``'s.

    A CPU generator thus gives the same numbers whatever device the update is on (and
    bit-identical ones to drawing on the CPU directly); a generator on the update's
    device draws there, without a copy.
    """
    out = draw(tuple(like.shape if shape is None else shape), generator=generator, dtype=like.dtype,
               device=generator.device)
    return out.to(like.device)


def top_k_mask(vector: Tensor, k: int) -> Tensor:
    """0/1 mask of the ``k`` largest-magnitude entries; ties go to the lower index."""
    if not 0 <= k <= vector.numel():
        raise ValueError(f"cannot keep {k} of {vector.numel()} coordinates")
    order = torch.argsort(vector.abs(), descending=True, stable=True)
    mask = torch.zeros_like(vector)
    mask[order[:k]] = 1
    return mask


def _replace(update: ClientUpdate, vector: Tensor, **meta: object) -> ClientUpdate:
    """A new update with ``vector``; the transform's parameters are recorded in metadata."""
    return dataclasses.replace(update, vector=vector, metadata={**update.metadata, **meta})


def _check_nonnegative(defense: str, name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{defense}: {name} must be a finite number >= 0, got {value!r}")


def _check_positive(defense: str, name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{defense}: {name} must be a finite number > 0, got {value!r}")
