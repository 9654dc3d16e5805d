"""Euclidean projection onto the l1 ball, batched over the leading dimension.

GIFD (Fang et al., ICCV 2023) keeps each optimised intermediate feature within an l1 ball
around its initialisation: after every step the deviation ``f - f0`` is replaced by its
projection onto ``{d : ||d||_1 <= r}`` (per image; the reference's radius grows per stage,
r_k = r_1 + (k - 1) Δr). The projection is Duchi, Shalev-Shwartz, Singer & Chandra,
"Efficient Projections onto the l1-Ball for Learning in High Dimensions" (ICML 2008), Fig. 1
with the sign trick of their section 4: sort |v| in decreasing order (u), take
rho = max{j : u_j - (sum_{i<=j} u_i - r) / j > 0}, theta = (sum_{i<=rho} u_i - r) / rho, and
return sign(v) * max(|v| - theta, 0). Points inside the ball are returned unchanged and r = 0
gives zeros (the commonly copied batched version divides by zero there). Not differentiable
by design: it is applied to the variable's data between optimiser steps.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor


def project_l1_ball(x: Tensor, radius: float | Tensor) -> Tensor:
    """The closest point (in l2) to each ``x[i]`` with l1 norm at most ``radius`` (or ``radius[i]``).

    ``x`` is ``[B, ...]``; each ``x[i]`` is projected as one flat vector. ``radius`` is a
    non-negative number or a ``[B]`` tensor. Runs on ``x``'s device; a numeric radius
    costs no host sync (a tensor radius one, to validate it).
    """
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"project_l1_ball takes a [B, ...] batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"project_l1_ball needs a floating-point tensor, got {x.dtype}")
    flat = x.reshape(x.shape[0], -1)
    if isinstance(radius, Tensor):
        r = radius.to(dtype=flat.dtype, device=flat.device)
        if r.dim() == 0:
            r = r.expand(flat.shape[0])
        if r.shape != (flat.shape[0],):
            raise ValueError(f"radius must be a number or a [{flat.shape[0]}] tensor, got shape {tuple(r.shape)}")
        if bool((r < 0).any()) or not bool(torch.isfinite(r).all()):  # the one host sync, tensor radii only
            raise ValueError(f"l1-ball radius must be finite and >= 0, got {radius}")
        r = r[:, None]
    else:
        if not math.isfinite(radius) or radius < 0:
            raise ValueError(f"l1-ball radius must be finite and >= 0, got {radius}")
        r = float(radius)  # a scalar operand: no per-call radius tensor
    a = flat.abs()
    u = torch.sort(a, dim=1, descending=True).values
    css = torch.cumsum(u, dim=1)
    excess = css - r  # css_j - r, also theta's numerator (gathered below)
    j, k = _positions(flat.shape[1], flat.dtype, flat.device)
    active = u * j > excess  # u_j - (css_j - r) / j > 0, multiplied by j > 0
    # (with r = 0 nothing is active: rho = 1 and theta = max|v|, so every entry becomes 0)
    # the largest such j (Duchi et al. show the condition holds exactly for j <= rho; taking the
    # largest index rather than the count keeps that choice under rounding near ties), as the
    # 0-based index rho - 1: none active gives index 0, i.e. rho = 1
    last = (active * k).amax(dim=1, keepdim=True)  # [B, 1] int64
    # whole-number divisor: the same quotient as in flat's dtype; theta >= 0 outside the ball
    # (there css_rho > r), <= 0 inside, where the floor at 0 makes the step below the identity
    theta = (excess.gather(1, last) / (last + 1)).clamp_(min=0)
    # soft thresholding as v - clamp(v, -theta, theta): entry for entry the value of
    # sign(v) * max(|v| - theta, 0) (v - theta and v + theta are the same roundings as
    # |v| - theta with its sign; entries within theta give 0), in three ops instead of four plus
    # the inside-the-ball select (theta = 0 returns v unchanged); each op's fixed cost dominates
    # on small features, after every optimiser step
    return (flat - flat.clamp(-theta, theta)).reshape(x.shape)


@functools.lru_cache(maxsize=16)
def _positions(n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """``1, 2, …, n`` as a row of ``dtype`` and ``0, 1, …, n − 1`` as an int64 row (gather's
    index type), on ``device``, made once per size (the projection runs after every optimiser
    step, where each op's fixed cost dominates on small features; never written to)."""
    return (torch.arange(1, n + 1, device=device, dtype=dtype),
            torch.arange(n, device=device, dtype=torch.int64))
