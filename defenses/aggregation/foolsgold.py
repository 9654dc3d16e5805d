"""FoolsGold (Fung, Yoon & Beschastnikh, "The Limitations of Federated Learning in Sybil
Settings", RAID 2020, Algorithm 1).

Sybils pushing one poisoning goal send similar updates round after round; honest
non-IID clients do not. FoolsGold keeps each client's *history* (sum of all its
updates), compares histories by cosine similarity and gives low learning-rate weight to
clients whose history is very similar to another's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fedarena.fl_core.aggregation import AggregationResult, Aggregator
from fedarena.fl_core.geometry import cosine_from_gram, gram

from ..registry import AGGREGATORS
from .common import MAX_NORM_RATIO, ClientRows, norm_outliers


@AGGREGATORS.register("foolsgold")
class FoolsGold(Aggregator):
    """FoolsGold with pardoning and the logit confidence function.

    Per round (Algorithm 1, lines 5–21): H_i += Δ_i; cs_ij = cos(H_i, H_j) − [i = j]
    (the reference ``DistributedML/FoolsGold`` subtracts the identity: the diagonal is 0,
    so v_i ≥ 0); v_i = max_j cs_ij; pardoning: cs_ij ← cs_ij · v_i / v_j when v_i < v_j;
    α_i = 1 − max_j cs_ij, clipped to [0, 1]; α ← α / max α; α = 1 → 0.99;
    α ← κ (ln(α / (1 − α)) + 0.5), clipped to [0, 1]. ``kappa`` = 1 (the paper's
    confidence parameter). The paper's optional feature-importance weighting of the
    output layer is not applied (it needs the model layout; histories are compared on
    the whole flat update). The aggregate is the α-weighted *mean* of this round's
    updates, Σ α_i Δ_i / Σ α_i (the reference code applies Σ α_i Δ_i with a learning
    rate; normalising keeps the step comparable to FedAvg's). All α = 0 gives a zero
    update. State: the history per client id; ``reset()`` clears it.

    Deviation (issue 14, item 4): FoolsGold compares directions only, so one update of
    huge norm in an unremarkable direction would get α ≈ 1 and dominate the mean. An
    update whose norm exceeds ``max_norm_ratio`` (default 1e4) × the round's median
    update norm gets α = 0 that round (``info["norm_outliers"]``); None disables this.
    History cosines are computed without overflow (``fedarena.fl_core.geometry.gram``).
    """

    name = "foolsgold"

    def __init__(self, kappa: float = 1.0, max_norm_ratio: float | None = MAX_NORM_RATIO) -> None:
        if not kappa > 0:
            raise ValueError(f"foolsgold: kappa must be > 0, got {kappa}")
        if max_norm_ratio is not None and not max_norm_ratio >= 1:
            raise ValueError(f"foolsgold: max_norm_ratio must be >= 1 or None, got {max_norm_ratio}")
        self.kappa = float(kappa)
        self.max_norm_ratio = None if max_norm_ratio is None else float(max_norm_ratio)
        self.history: ClientRows | None = None

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        d = updates.shape[1]
        if (self.history is None or self.history.shape != (d,) or self.history.dtype != updates.dtype
                or self.history.data.device != updates.device):
            self.history = ClientRows(d, dtype=updates.dtype, device=updates.device)  # a new federation's model
        idx = self.history.rows(client_ids)
        self.history.data.index_add_(0, idx, updates)
        everyone = len(idx) == len(self.history) and bool((idx == torch.arange(len(idx), device=idx.device)).all())
        hist = self.history.data if everyone else self.history.data[idx]
        alpha = foolsgold_weights(cosine_from_gram(gram(hist).double()), self.kappa).to(updates.dtype)
        outliers = norm_outliers(updates, self.max_norm_ratio)
        info: dict[str, Any] = {}
        if bool(outliers.any()):
            alpha = alpha.masked_fill(outliers, 0.0)
            info["norm_outliers"] = [client_ids[i] for i in outliers.nonzero().squeeze(1).tolist()]
        total = alpha.sum()
        if not total > 0:
            return AggregationResult(updates.new_zeros(d), alpha, {**info, "all_zero": True})
        weights = alpha / total
        return AggregationResult(weights @ updates, weights, {**info, "alpha": alpha.tolist()})

    def reset(self) -> None:
        self.history = None


def foolsgold_weights(cs: Tensor, kappa: float = 1.0) -> Tensor:
    """FoolsGold's per-client learning rates α ∈ [0, 1] from the history cosine matrix.

    As the reference: cs − I (diagonal 0, so every v_i = max_j cs_ij ≥ 0 and pardoning
    only ever shrinks a similarity: v_i / v_j ∈ [0, 1)), then α_i = 1 − max_j cs_ij with
    the 0 diagonal in the max, i.e. α ≤ 1 before clipping.
    """
    n = cs.shape[0]
    if n == 1:
        return cs.new_ones(1)
    cs = cs.clone().fill_diagonal_(0.0)
    v = cs.max(dim=1).values
    pardon = v.unsqueeze(1) < v.unsqueeze(0)  # [i, j]: v_i < v_j, hence v_j > 0
    cs = torch.where(pardon, cs * (v.unsqueeze(1) / v.unsqueeze(0).clamp_min(1e-300)), cs)
    cs.fill_diagonal_(0.0)
    alpha = (1.0 - cs.max(dim=1).values).clamp(0.0, 1.0)
    top = alpha.max()
    if not top > 0:
        return torch.zeros_like(alpha)
    alpha = alpha / top
    alpha = torch.where(alpha >= 1.0, torch.full_like(alpha, 0.99), alpha)
    with torch.no_grad():
        logit = kappa * (torch.log(alpha / (1.0 - alpha)) + 0.5)
    return torch.nan_to_num(logit, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
