"""Small helpers the aggregation rules share."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fedarena.fl_core.geometry import row_norms


def sample_shares(num_samples: Tensor, dtype: torch.dtype) -> Tensor:
    """Each client's share of the samples (uniform when every count is zero), on the
    counts' device."""
    counts = num_samples.to(dtype)
    total = counts.sum()
    if not total > 0:
        return uniform(counts.numel(), dtype, counts.device)
    return counts / total


MAX_NORM_RATIO = 1e4
"""Default norm-outlier bound of the rules with no magnitude defence of their own
(FoolsGold, MUD-HoG): an update more than this many times the round's median update
norm is excluded (issue 14, item 4). Far above honest spread (the MUD-HoG MNIST mix's
additive-noise clients are within ~10×), far below a boosted or corrupted update."""


def norm_outliers(updates: Tensor, ratio: float | None) -> Tensor:
    """Rows whose norm exceeds ``ratio`` × the median row norm (bool ``[n]``; none when
    ``ratio`` is None). Norms are computed without overflow (``fedarena.fl_core.geometry.row_norms``)."""
    if ratio is None or updates.shape[0] < 3:
        return torch.zeros(updates.shape[0], dtype=torch.bool, device=updates.device)
    norms = row_norms(updates)
    return norms > ratio * norms.median()


def row_selector(rows: Tensor | Sequence[int]) -> slice | Tensor:
    """Row indices as a ``slice`` when they run consecutively (a, a+1, …), else as a long
    tensor. Indexing ``[n, d]`` state with the slice is a view; with the tensor, a copy,
    which at d = 10^6 costs a fresh 400 MB allocation per use. A tensor keeps its device;
    a list becomes a CPU index (valid for indexing state on any device)."""
    index = torch.as_tensor(rows, dtype=torch.long, device=rows.device if isinstance(rows, Tensor) else "cpu")
    n = index.numel()
    if n and bool((index == torch.arange(int(index[0]), int(index[0]) + n, device=index.device)).all()):
        return slice(int(index[0]), int(index[0]) + n)
    return index


def uniform(n: int, dtype: torch.dtype, device: torch.device | str | None = None) -> Tensor:
    """Equal trust 1/n for n rows."""
    return torch.full((n,), 1.0 / n, dtype=dtype, device=device)


class ClientRows:
    """Per-client state rows ``[k, *shape]`` keyed by client id, grown as new ids appear.

    Stateful rules (FoolsGold, MUD-HoG) update many clients' rows per round; one tensor
    plus an id → row map lets them do it with one indexed operation instead of a Python
    loop over clients.
    """

    def __init__(self, *shape: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        self.shape, self.dtype = tuple(shape), dtype
        self.index: dict[int, int] = {}
        self.data = torch.zeros((0, *self.shape), dtype=dtype, device=device)

    def rows(self, client_ids: list[int]) -> Tensor:
        """Row indices of ``client_ids`` (zero rows are added for unseen ids)."""
        new = [cid for cid in dict.fromkeys(client_ids) if cid not in self.index]
        if new:
            start = len(self.index)
            self.index.update({cid: start + i for i, cid in enumerate(new)})
            self.data = torch.cat([self.data, self.data.new_zeros((len(new), *self.shape))])
        return torch.tensor([self.index[cid] for cid in client_ids], dtype=torch.long, device=self.data.device)

    def __len__(self) -> int:
        return len(self.index)
