"""Nearest-neighbour mixing, NNM (Allouah et al., "Fixing by Mixing", AISTATS 2023, Algorithm 1).

A pre-aggregator: every update is replaced by the mean of its n − f nearest
neighbours (itself included, at distance 0), then any aggregation rule runs on the
mixed updates. Mixing is the linear map M (row i: 1/(n−f) on i's neighbours), so the
mixed stack is one GEMM ``M @ X`` and each original client's trust is ``wᵀ M`` for the
inner rule's trust w.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from fedarena.fl_core.aggregation import AggregationResult, Aggregator
from fedarena.fl_core.geometry import gram as inner_products
from fedarena.fl_core.geometry import pairwise_sq_distances

from ..registry import AGGREGATORS


@AGGREGATORS.register("nnm")
class NNM(Aggregator):
    """NNM ∘ ``aggregator`` (a registered name or an ``Aggregator`` instance).

    ``f``: tolerated Byzantine clients; ``None`` means ⌊(n−1)/2⌋ (NNM assumes f < n/2).
    When the inner rule is built by name and takes an ``f`` that ``aggregator_params``
    does not set, it receives the same ``f`` (the paper pairs NNM and the rule with one
    f). Ties in distance go to the lower row index. A round with n ≤ f (clients absent or
    rejected) uses ⌊(n−1)/2⌋ instead, recorded in ``info["nnm_f_clamped"]``.
    """

    name = "nnm"
    uses_gram = True

    def __init__(self, aggregator: str | Aggregator = "median", f: int | None = None,
                 aggregator_params: dict[str, Any] | None = None) -> None:
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 0):
            raise ValueError(f"nnm: f must be a non-negative int or None, got {f!r}")
        self.f = f
        params = dict(aggregator_params or {})
        if isinstance(aggregator, Aggregator):
            if params:
                raise ValueError("nnm: aggregator_params only apply to an aggregator given by name")
            self.inner = aggregator
        elif isinstance(aggregator, str):
            if aggregator == "nnm":
                raise ValueError("nnm: the inner aggregator cannot be nnm itself")
            factory = AGGREGATORS.get(aggregator)
            if f is not None and "f" not in params and "f" in inspect.signature(factory).parameters:
                params["f"] = f
            self.inner = factory(**params)
        else:
            raise TypeError(f"nnm: aggregator must be a registered name or an Aggregator, "
                            f"got {type(aggregator).__name__}")

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int],
                  gram: Tensor | None = None) -> AggregationResult:
        n = updates.shape[0]
        f = (n - 1) // 2 if self.f is None else self.f
        clamped: dict[str, Any] = {}
        if f >= n:  # a round with fewer clients than the explicit f: NNM's own default, recorded
            clamped = {"nnm_f_clamped": {"rule": self.name, "n": n, "f_requested": f, "f_used": (n - 1) // 2,
                                     "condition": "n > f"}}
            f = (n - 1) // 2
        g = inner_products(updates) if gram is None else gram
        exact = mixing_matrix(pairwise_sq_distances(updates, g), n - f)
        mixing = exact.to(updates.dtype)
        # The mixed rows' Gram matrix is M G Mᵀ: an [n, n] product instead of another pass over [n, d]
        # (in float64 when G is, as after an overflowing product).
        m = mixing if g.dtype == mixing.dtype else exact.to(g.dtype)
        extra = {"gram": m @ g @ m.T} if self.inner.uses_gram else {}
        inner = self.inner.aggregate(mixing @ updates, num_samples, client_ids, **extra)
        weights = inner.weights.to(updates.dtype) @ mixing
        return AggregationResult(inner.aggregate, weights, dict(inner.info, nnm_f=f, inner=self.inner.name, **clamped))

    def reset(self) -> None:
        self.inner.reset()


def mixing_matrix(sq_dist: Tensor, k: int) -> Tensor:
    """Row-stochastic ``[n, n]``: 1/k on each row's k nearest rows (itself first)."""
    n = sq_dist.shape[0]
    d = sq_dist.clone().fill_diagonal_(-1.0)  # self is always its own nearest neighbour
    nearest = torch.argsort(d, dim=1, stable=True)[:, :k]
    m = torch.zeros(n, n, dtype=torch.float64, device=sq_dist.device)
    m.scatter_(1, nearest, 1.0 / k)
    return m
