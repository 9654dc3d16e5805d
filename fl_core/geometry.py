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
diagonal is exactly 0. ``distance_gram`` (used by ``pairwise_sq_distances``) detects the
case where it matters — a component shared by every row dominating their spread, as late
in training or in long update histories — from the Gram matrix itself (O(n²)), and then
recomputes the product on the centred rows x_i − x̄, whose distances are the same.

Overflow: a finite float32 row with entries ≳ 1e19 has a squared norm beyond float32's
range. ``gram`` then recomputes the product in float64 over column blocks (bounded extra
memory), so such a row gets finite, exact inner products and distances, and every rule
sees it as what it is: far away, not NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

CANCELLATION_RATIO = 100.0
"""``distance_gram`` shifts the rows when the median over pairs of (‖x_i‖² + ‖x_j‖²) / d_ij
exceeds this (float32; scaled by the machine epsilon for other dtypes): a component
shared by every row ≳ 10× the rows' spread. There a float32 Gram product's rounding
(~eps·‖x‖² per entry, summed over d) reaches ~1e-4 of a typical distance, enough to
reorder nearly tied Krum scores (issue 13, defect 6)."""

_BLOCK = 1 << 16  # columns per float64 block when recomputing an overflowing product


def gram(x: Tensor) -> Tensor:
    """``x @ x.T``: every inner product of the rows of ``x`` ``[n, d]`` → ``[n, n]``.

    When a squared norm overflows ``x``'s dtype although the row is finite, the product
    is recomputed in float64 (returned as float64); a NaN/Inf entry still gives a
    non-finite diagonal, which is how ``Aggregator`` screens rows.
    """
    _check_stack(x)
    g = x @ x.T
    if x.dtype != torch.float64 and not bool(torch.isfinite(g.diagonal()).all()):
        return exact_gram(x)
    return g


def exact_gram(x: Tensor) -> Tensor:
    """``x @ x.T`` accumulated in float64 over column blocks: no overflow for any finite
    float32 rows, and at most ``[n, 65536]`` float64 of extra memory."""
    _check_stack(x)
    n, d = x.shape
    g = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    for a in range(0, d, _BLOCK):
        block = x[:, a:a + _BLOCK].double()
        g.addmm_(block, block.T)
    return g


def distance_gram(x: Tensor, g: Tensor | None = None) -> Tensor:
    """A Gram matrix giving the rows' pairwise distances accurately: ``g`` (or ``gram(x)``)
    when well conditioned, else the Gram matrix of the rows shifted by one of them.

    A shift changes no distance, nor any distance to an affine combination Σ w_i x_i with
    Σ w_i = 1 (Weiszfeld's iterates), so distance-based rules may use either matrix;
    cosines need the raw ``gram``. The float Gram route computes d_ij = G_ii + G_jj − 2G_ij
    with an error ~ eps·(G_ii + G_jj); it is judged ill-conditioned when the median over
    pairs of (G_ii + G_jj) / d_ij exceeds ``CANCELLATION_RATIO`` (scaled by the dtype's
    epsilon relative to float32). The rows are then shifted by the row of median norm (a
    member of the bulk, so one far outlier cannot drag the shift as it would the mean) and
    the product recomputed: one more pass over ``x`` and one ``[n, d]`` temporary, paid
    only in that case.
    """
    g = gram(x) if g is None else g
    n = g.shape[0]
    if n < 3 or not bool(torch.isfinite(g).all()):
        return g
    sq = g.diagonal()
    iu = torch.triu_indices(n, n, 1, device=g.device)
    size = (sq.unsqueeze(1) + sq.unsqueeze(0))[iu[0], iu[1]]
    d = size - 2.0 * g[iu[0], iu[1]]
    limit = CANCELLATION_RATIO * float(torch.finfo(torch.float32).eps) / float(torch.finfo(g.dtype).eps)
    if not float(torch.median(size / d.clamp_min(0.0))) > limit:  # 0/0 (zero rows) is NaN: no shift
        return g
    anchor = int(torch.argsort(sq, stable=True)[(n - 1) // 2])
    shifted = x - x[anchor]
    c = gram(shifted)
    return c.double() if g.dtype == torch.float64 else c


def sq_distances_from_gram(g: Tensor) -> Tensor:
    """Squared Euclidean distances ``[n, n]`` from a Gram matrix; ≥ 0, zero diagonal."""
    sq = g.diagonal()
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * g).clamp_min_(0.0)
    d.fill_diagonal_(0.0)
    return d


def pairwise_sq_distances(x: Tensor, g: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances between the rows of ``x`` ``[n, d]`` (one GEMM, or
    none when their Gram matrix ``g`` is already at hand; a second one on centred rows
    when cancellation would spoil them, see ``distance_gram``)."""
    return sq_distances_from_gram(distance_gram(x, g))


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
    out = (sq - 2.0 * (x @ v) + v.dot(v)).clamp_min_(0.0)
    if x.dtype != torch.float64 and not bool(torch.isfinite(out).all()):
        return exact_gram_diagonal(x, v)  # a square beyond the dtype's range: exact, in float64
    return out


def row_norms(x: Tensor) -> Tensor:
    """‖x_i‖ of every row ``[n]`` (``torch.linalg.vector_norm``), recomputed in float64 when
    a norm overflows ``x``'s dtype although the row is finite."""
    _check_stack(x)
    norms = torch.linalg.vector_norm(x, dim=1)
    if x.dtype != torch.float64 and not bool(torch.isfinite(norms).all()):
        return exact_gram_diagonal(x).sqrt()
    return norms


def exact_gram_diagonal(x: Tensor, v: Tensor | None = None) -> Tensor:
    """‖x_i − v‖² (``v`` = 0 by default) accumulated in float64 over column blocks: no
    overflow for finite rows, at most ``[n, 65536]`` float64 of extra memory."""
    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for a in range(0, x.shape[1], _BLOCK):
        block = x[:, a:a + _BLOCK].double()
        if v is not None:
            block = block - v[a:a + _BLOCK].double()
        out += block.square().sum(1)
    return out


def _check_stack(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected an update stack of shape [n, d], got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"expected floating-point updates, got dtype {x.dtype}")
