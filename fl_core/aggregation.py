"""The aggregation contract (DESIGN: ``Aggregator``) and the default, FedAvg.

Robust aggregators live in ``fedarena.defenses.aggregation`` and subclass ``Aggregator``; the
base class rejects non-finite rows once, for all of them, so a NaN upload never
reaches any aggregation rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .geometry import gram


@dataclass
class AggregationResult:
    """``aggregate`` ``[d]``; ``weights`` ``[n]``: the trust given to each input row
    (0 = excluded), aligned with the rows the aggregator was called with."""

    aggregate: Tensor
    weights: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def trusted(self) -> Tensor:
        return self.weights > 0


class Aggregator(ABC):
    """Combine a stack of client updates ``[n, d]`` into one ``[d]`` vector.

    Subclasses implement ``aggregate`` on finite rows only. Stateful aggregators keep
    their state on ``self`` across calls (one call per round) and key it by client id.

    Rules built on pairwise geometry set ``uses_gram = True`` and accept a keyword
    ``gram`` (the finite rows' ``[n, n]`` Gram matrix, or None when called directly).
    The base then computes the Gram product first and screens rows by its diagonal
    (‖x_i‖² is non-finite iff a NaN/Inf entry, or an overflow, is in row i), so the
    screen costs no pass over the stack beyond the product the rule needs anyway. A row
    that is finite but whose squared norm overflows (entries ≳ 1e19 in float32) passes the
    screen: ``fedarena.fl_core.geometry.gram`` then gives it exact float64 inner products, and each
    rule bounds it by its own rule (``tests/test_extreme_updates.py``).

    Every tensor a rule creates lives on the device of the updates it is given (sample
    counts given as a list or CPU tensor are moved there); results on CPU are unchanged.
    """

    name: str = "aggregator"
    uses_gram: bool = False

    def __call__(
        self, updates: Tensor, num_samples: Tensor | Sequence[int] | None = None,
        client_ids: Sequence[int] | None = None,
    ) -> AggregationResult:
        if updates.dim() != 2:
            raise ValueError(f"{self.name}: expected updates of shape [n, d], got {tuple(updates.shape)}")
        n = updates.shape[0]
        device = updates.device
        counts = (torch.ones(n, device=device) if num_samples is None
                  else torch.as_tensor(num_samples, dtype=torch.float32, device=device))
        ids = list(range(n)) if client_ids is None else list(client_ids)
        if counts.shape != (n,) or len(ids) != n:
            raise ValueError(f"{self.name}: {n} updates but {counts.numel()} sample counts / {len(ids)} ids")
        g = gram(updates) if self.uses_gram else None
        finite = finite_rows(updates, None if g is None else g.diagonal())
        if not finite.any():
            raise ValueError(f"{self.name}: every update is non-finite; nothing to aggregate")
        extra = {} if g is None else {"gram": g}
        if finite.all():
            return self.aggregate(updates, counts, ids, **extra)
        keep = finite.nonzero().squeeze(1)
        if g is not None:
            extra["gram"] = g[keep][:, keep]  # each entry is one row pair's dot product: unaffected by others
        result = self.aggregate(updates[keep], counts[keep], [ids[i] for i in keep.tolist()], **extra)
        weights = torch.zeros(n, dtype=result.weights.dtype, device=result.weights.device)
        weights[keep] = result.weights
        info = dict(result.info, rejected_nonfinite=[ids[i] for i in (~finite).nonzero().squeeze(1).tolist()])
        return AggregationResult(result.aggregate, weights, info)

    @abstractmethod
    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        """Aggregate finite rows."""

    def reset(self) -> None:
        """Forget cross-round state (a new federation)."""


def finite_rows(updates: Tensor, sq_norms: Tensor | None = None) -> Tensor:
    """Which rows of ``[n, d]`` are entirely finite.

    A NaN or ±Inf entry makes its row's sum non-finite, so one row-sum pass (a fast
    reduction, ~20× cheaper than ``isfinite(updates).all(1)`` at d = 10^6) clears every
    row whose sum is finite; only rows whose sum is not (a bad entry, or an overflowing
    sum of finite values) get the exact elementwise check. Given the rows' squared norms
    (a Gram diagonal), they screen instead of the sum, for free.
    """
    screen = updates.sum(dim=1) if sq_norms is None else sq_norms
    finite = torch.isfinite(screen)
    if not bool(finite.all()):
        suspect = (~finite).nonzero().squeeze(1)
        finite[suspect] = torch.isfinite(updates[suspect]).all(dim=1)
    return finite


class FedAvg(Aggregator):
    """Sample-weighted mean (McMahan et al., 2017)."""

    name = "fedavg"

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        weights = num_samples.to(updates.dtype) / num_samples.sum()
        return AggregationResult(weights @ updates, weights)
