"""Pairwise geometry of an update stack ``[n, d]`` from one Gram matrix product.

Distance-based defenses (Krum, Multi-Krum, Bulyan, NNM, FoolsGold, MUD-HoG) and
distance-aware attacks (min-max, min-sum) all need every pairwise distance or cosine
between n client updates. Materialising ``x_i − x_j`` (or ``torch.cdist``) streams the
``[n, d]`` stack n times; one ``x @ x.T`` (a BLAS GEMM) streams it once and gives every
inner product, from which ‖x_i − x_j‖² = ‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩ and
cos(x_i, x_j) = ⟨x_i, x_j⟩ / (‖x_i‖‖x_j‖) follow in O(n²). This module is the one place
that computes them; it lives in fl_core because attacks and defenses both need it.

Cancellation: when two rows are nearly equal relative to their norms the squared
distance loses relative precision (float32: ~1e-6 of ‖x‖²); it is clamped at 0 and the
diagonal is exactly 0. Pass float64 rows where tiny distances matter.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gram(x: Tensor) -> Tensor:
    """``x @ x.T``: every inner product of the rows of ``x`` ``[n, d]`` → ``[n, n]``."""
    _check_stack(x)
    return x @ x.T


def sq_distances_from_gram(g: Tensor) -> Tensor:
    """Squared Euclidean distances ``[n, n]`` from a Gram matrix; ≥ 0, zero diagonal."""
    sq = g.diagonal()
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * g).clamp_min_(0.0)
    d.fill_diagonal_(0.0)
    return d


def pairwise_sq_distances(x: Tensor, g: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances between the rows of ``x`` ``[n, d]`` (one GEMM, or
    none when their Gram matrix ``g`` is already at hand)."""
    return sq_distances_from_gram(gram(x) if g is None else g)


def cosine_from_gram(g: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine similarities ``[n, n]`` from a Gram matrix; a zero row has cosine 0 to all."""
    norms = g.diagonal().clamp_min(0.0).sqrt()
    denom = (norms.unsqueeze(1) * norms.unsqueeze(0)).clamp_min(eps)
    return (g / denom).clamp_(-1.0, 1.0)


def pairwise_cosine(x: Tensor) -> Tensor:
    """Cosine similarities between the rows of ``x`` ``[n, d]`` (one GEMM)."""
    return cosine_from_gram(gram(x))


def isometric_embedding(g: Tensor) -> Tensor:
    """Rows ``[n, r]`` (r ≤ n) with the same pairwise distances as the rows behind Gram ``g``.

    G = Q Λ Qᵀ gives Y = Q √Λ with Y Yᵀ = G, so ‖y_i − y_j‖ = ‖x_i − x_j‖: clustering n
    high-dimensional updates (k-means, DBSCAN) can run on n coordinates each. Computed in
    float64; eigenvalues below 0 (rounding) are dropped.
    """
    vals, vecs = torch.linalg.eigh(g.double())
    keep = vals > vals.abs().max().clamp_min(1e-300) * 1e-12
    return vecs[:, keep] * vals[keep].sqrt()


def sq_distances_to(x: Tensor, v: Tensor) -> Tensor:
    """‖x_i − v‖² for every row of ``x`` ``[n, d]`` and one vector ``v`` ``[d]`` (one GEMV)."""
    _check_stack(x)
    if v.shape != (x.shape[1],):
        raise ValueError(f"vector of shape {tuple(v.shape)} does not match rows of length {x.shape[1]}")
    sq = torch.linalg.vector_norm(x, dim=1).square()
    return (sq - 2.0 * (x @ v) + v.dot(v)).clamp_min_(0.0)


def _check_stack(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected an update stack of shape [n, d], got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"expected floating-point updates, got dtype {x.dtype}")
