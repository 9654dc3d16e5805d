"""Clipping aggregators: centered clipping (Karimireddy, He & Jaggi, ICML 2021) and
norm clipping (bounded update norms, e.g. Sun et al. 2019, "Can You Really Backdoor
Federated Learning?").

Both need only per-row norms / distances to one vector (a GEMV each), never the
pairwise matrix: they are O(n·d).
"""

from __future__ import annotations

from torch import Tensor

from fedarena.fl_core.aggregation import AggregationResult, Aggregator
from fedarena.fl_core.geometry import row_norms, sq_distances_to

from ..registry import AGGREGATORS
from .common import sample_shares


@AGGREGATORS.register("centered_clipping")
class CenteredClipping(Aggregator):
    """Centered clipping, CClip (Karimireddy et al. 2021, Eq. 2): the previous aggregate
    moved by the mean of the updates' deviations from it, each clipped to norm τ.

    The rule:

        v ← v + (1/n) Σ_i (x_i − v) · min(1, τ / ‖x_i − v‖),   repeated L times,

    starting from the previous round's aggregate (the server-side momentum the paper
    clips around; zero in the first round). Defaults τ = 10, L = 1 (the paper's
    experiments use one iteration; its code's ``Clipping(tau, n_iter=1)``). Unweighted
    (1/n), as in the paper. ``weights``: (1/n)·min(1, τ/‖x_i − v‖) of the last iteration.
    State: the previous aggregate; ``reset()`` clears it.
    """

    name = "centered_clipping"

    def __init__(self, tau: float = 10.0, iterations: int = 1) -> None:
        if not tau > 0:
            raise ValueError(f"centered_clipping: tau must be > 0, got {tau}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"centered_clipping: iterations must be a positive int, got {iterations!r}")
        self.tau, self.iterations = float(tau), iterations
        self.center: Tensor | None = None

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        n, d = updates.shape
        v = self.center if self.center is not None and self.center.shape == (d,) else updates.new_zeros(d)
        v = v.to(device=updates.device, dtype=updates.dtype)
        coef = updates.new_full((n,), 1.0 / n)
        for _ in range(self.iterations):
            dist = sq_distances_to(updates, v).sqrt()  # float64 where a square overflows: no inf
            coef = ((self.tau / dist.clamp_min(1e-12)).clamp_max(1.0) / n).to(updates.dtype)
            v = coef @ updates + (1.0 - coef.sum()) * v  # v + Σ c_i (x_i − v)
        self.center = v.clone()
        return AggregationResult(v, coef, {"clipped": int((coef < 1.0 / n).sum())})

    def reset(self) -> None:
        self.center = None


@AGGREGATORS.register("norm_clipping")
class NormClipping(Aggregator):
    """Scale every update to norm ≤ ``max_norm``, then take the sample-weighted mean.

    ``max_norm=None``: the median of this round's update norms (adaptive; a fixed bound
    M as in Sun et al. 2019 needs a value per model and task). ``weights``: each
    client's sample share times its scaling factor.
    """

    name = "norm_clipping"

    def __init__(self, max_norm: float | None = None) -> None:
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"norm_clipping: max_norm must be > 0 or None, got {max_norm}")
        self.max_norm = max_norm

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        norms = row_norms(updates)  # float64 where a norm overflows: no inf
        bound = float(norms.median()) if self.max_norm is None else self.max_norm
        scale = (bound / norms.clamp_min(1e-12)).clamp_max(1.0).to(updates.dtype)
        share = sample_shares(num_samples, updates.dtype)
        weights = share * scale
        return AggregationResult(weights @ updates, weights, {"max_norm": bound})
