"""The aggregation contract (DESIGN: ``Aggregator``) and the default, FedAvg.

Robust aggregators live in ``defenses.aggregation`` and subclass ``Aggregator``; the
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
    """

    name: str = "aggregator"

    def __call__(
        self, updates: Tensor, num_samples: Tensor | Sequence[int] | None = None,
        client_ids: Sequence[int] | None = None,
    ) -> AggregationResult:
        if updates.dim() != 2:
            raise ValueError(f"{self.name}: expected updates of shape [n, d], got {tuple(updates.shape)}")
        n = updates.shape[0]
        counts = torch.ones(n) if num_samples is None else torch.as_tensor(num_samples, dtype=torch.float32)
        ids = list(range(n)) if client_ids is None else list(client_ids)
        if counts.shape != (n,) or len(ids) != n:
            raise ValueError(f"{self.name}: {n} updates but {counts.numel()} sample counts / {len(ids)} ids")
        finite = finite_rows(updates)
        if not finite.any():
            raise ValueError(f"{self.name}: every update is non-finite; nothing to aggregate")
        if finite.all():
            return self.aggregate(updates, counts, ids)
        keep = finite.nonzero().squeeze(1)
        result = self.aggregate(updates[keep], counts[keep], [ids[i] for i in keep.tolist()])
        weights = torch.zeros(n, dtype=result.weights.dtype)
        weights[keep] = result.weights
        info = dict(result.info, rejected_nonfinite=[ids[i] for i in (~finite).nonzero().squeeze(1).tolist()])
        return AggregationResult(result.aggregate, weights, info)

    @abstractmethod
    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        """Aggregate finite rows."""

    def reset(self) -> None:
        """Forget cross-round state (a new federation)."""


def finite_rows(updates: Tensor) -> Tensor:
    """Which rows of ``[n, d]`` are entirely finite.

    A NaN or ±Inf entry makes its row's sum non-finite, so one row-sum pass (a fast
    reduction, ~20× cheaper than ``isfinite(updates).all(1)`` at d = 10^6) clears every
    row whose sum is finite; only rows whose sum is not (a bad entry, or an overflowing
    sum of finite values) get the exact elementwise check.
    """
    finite = torch.isfinite(updates.sum(dim=1))
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
