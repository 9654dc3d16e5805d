"""Small helpers the aggregation rules share."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_shares(num_samples: Tensor, dtype: torch.dtype) -> Tensor:
    """Each client's share of the samples (uniform when every count is zero)."""
    counts = num_samples.to(dtype)
    total = counts.sum()
    if not total > 0:
        return uniform(counts.numel(), dtype)
    return counts / total


def uniform(n: int, dtype: torch.dtype) -> Tensor:
    """Equal trust 1/n for n rows."""
    return torch.full((n,), 1.0 / n, dtype=dtype)
