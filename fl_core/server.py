"""The FL server: validates uploads, aggregates, steps the global model.

Validation happens here, before any aggregation rule: a non-finite or wrongly shaped
update is rejected and recorded with its reason, never averaged into the model. The
server holds the global *shared* state of its protocol (``fedarena.fl_core.protocol``): the
whole model for FedSGD/FedAvg, a sub-model or another network for other protocols.
``step(updates, client_lr) -> StepRecord`` is the one server step (a Flower strategy
wraps it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import torch
from torch import Tensor, nn

from .aggregation import Aggregator, FedAvg, finite_rows
from .client import GlobalState
from .protocol import FedAvgProtocol, FLProtocol
from .updates import ClientUpdate
from .vectors import buffers_to_vector, vector_to_buffers

MAX_SAMPLE_COUNT = 2**53


@dataclass
class StepRecord:
    """What one aggregation step did: who was rejected (and why), who was trusted."""

    rejected: dict[int, str] = field(default_factory=dict)
    weights: dict[int, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    applied: bool = True


class Server:
    """Holds the global model; ``step`` applies one round of client updates.

    ``layout`` is the protocol's shared layout (what uploads cover) and ``state`` the
    global shared parameters plus the model's float buffers. The protocol folds the
    aggregate back (default FedSGD/FedAvg): FedSGD (kind ``gradient``):
    w ← w − server_lr · lr · agg, with ``lr`` the clients' learning rate. FedAvg (kind
    ``delta``): w ← w + server_lr · agg.
    """

    def __init__(self, model: nn.Module, aggregator: Aggregator | None = None, server_lr: float = 1.0, *,
                 protocol: FLProtocol | None = None) -> None:
        if not server_lr > 0:
            raise ValueError(f"server_lr must be > 0, got {server_lr}")
        self.model = model
        self.aggregator = aggregator if aggregator is not None else FedAvg()
        self.server_lr = server_lr
        self.protocol = protocol if protocol is not None else FedAvgProtocol()
        self.layout = self.protocol.shared_layout(model)
        self.state = GlobalState(self.protocol.read_shared(model), buffers_to_vector(model))

    def validate(self, update: ClientUpdate) -> str | None:
        """Why ``update`` must be rejected, or None if it is well formed."""
        return self._check(update)[1]

    def _check(self, update: ClientUpdate) -> tuple[Tensor | None, str | None]:
        """``(vector in the server's dtype and device, None)`` for a well-formed upload, else
        ``(None, reason)``. Finiteness is judged after the cast: a float64 update that is
        finite only in float64 would otherwise turn into ±inf inside the aggregation."""
        v = update.vector
        if not isinstance(v, Tensor):
            return None, f"update vector is {type(v).__name__}, not a tensor"
        if v.dim() != 1 or v.numel() != self.layout.dim:
            return None, (f"update has shape {tuple(v.shape)}, expected ({self.layout.dim},) "
                          f"(the {self.protocol.name} protocol's shared layout)")
        if not v.is_floating_point():
            return None, f"update dtype {v.dtype} is not floating point"
        if update.kind not in ("gradient", "delta"):
            return None, f"update kind {update.kind!r} is neither 'gradient' nor 'delta'"
        reason = _sample_count_problem(update.num_samples)
        if reason is not None:
            return None, reason
        params = self.state.params
        cast = v.to(device=params.device, dtype=params.dtype)
        if not bool(finite_rows(cast.unsqueeze(0))[0]):
            bad = int((~torch.isfinite(cast)).sum())
            overflow = cast.dtype != v.dtype and bool(torch.isfinite(v).all())
            where = f" after the cast from {v.dtype} to {cast.dtype} (its values overflow it)" if overflow else ""
            return None, f"update has {bad} non-finite entries{where}"
        b = update.buffers
        if b is not None and (self.state.buffers is None or b.shape != self.state.buffers.shape
                              or not bool(torch.isfinite(b).all())):
            return None, "malformed or non-finite buffers"
        return cast, None

    def step(self, updates: Sequence[ClientUpdate], client_lr: float = 1.0, kind: str | None = None) -> StepRecord:
        """Validate, aggregate the accepted uploads, fold the aggregate into the global state.

        ``kind``: the round's update kind (the clients' ``LocalTraining.kind``); uploads of
        another kind are rejected. When None, the kind most uploads have is the round's
        (ties: the first upload's). A client id that uploads more than once in a round has
        every copy rejected (which copy is genuine is unknowable, and one id must not carry
        two weights). Every rejection is recorded with its reason; the round goes on with
        the rest.
        """
        record = StepRecord()
        counts_by_id: dict[int, int] = {}
        for u in updates:
            counts_by_id[u.client_id] = counts_by_id.get(u.client_id, 0) + 1
        checked: list[tuple[ClientUpdate, Tensor]] = []
        for u in updates:
            if counts_by_id[u.client_id] > 1:
                record.rejected[u.client_id] = f"client {u.client_id} uploaded {counts_by_id[u.client_id]} " \
                                               "updates this round; every copy is rejected"
                continue
            vector, reason = self._check(u)
            if reason is None:
                checked.append((u, vector))  # type: ignore[arg-type]
            else:
                record.rejected[u.client_id] = reason
        round_kind = kind if kind is not None else _majority_kind([u.kind for u, _ in checked])
        accepted: list[ClientUpdate] = []
        vectors: list[Tensor] = []
        for u, vector in checked:
            if u.kind != round_kind:
                record.rejected[u.client_id] = f"update kind {u.kind!r} in a {round_kind!r} round"
            else:
                accepted.append(u)
                vectors.append(vector)
        if not accepted:
            record.applied = False
            record.info["reason"] = "no valid update this round"
            return record
        params = self.state.params
        stack = torch.stack(vectors)
        counts = torch.tensor([float(u.num_samples) for u in accepted], device=params.device)
        ids = [u.client_id for u in accepted]
        result = self.aggregator(stack, counts, ids)
        record.weights = dict(zip(ids, result.weights.tolist(), strict=True))
        record.info.update(result.info)
        new_params = self.protocol.fold(params, result.aggregate, round_kind, self.server_lr, client_lr)
        if not bool(torch.isfinite(new_params).all()):
            record.applied = False
            record.info["reason"] = "aggregate is non-finite; global model left unchanged"
            return record
        self.state = GlobalState(new_params, self._average_buffers(accepted, result.weights))
        self.protocol.write_shared(self.state.params, self.model)
        if self.state.buffers is not None:
            vector_to_buffers(self.state.buffers, self.model)
        return record

    def _average_buffers(self, accepted: Sequence[ClientUpdate], weights: Tensor) -> Tensor | None:
        """Sample-weighted mean of the trusted clients' BatchNorm statistics (plain FedAvg)."""
        if self.state.buffers is None:
            return None
        rows = [(u.buffers, float(u.num_samples)) for u, w in zip(accepted, weights.tolist(), strict=True)
                if w > 0 and u.buffers is not None]
        if not rows:
            return self.state.buffers
        stack = torch.stack([b.to(self.state.buffers.device) for b, _ in rows])
        counts = torch.tensor([c for _, c in rows], device=stack.device)
        return (counts / counts.sum()) @ stack


def _sample_count_problem(num_samples: object) -> str | None:
    """Why a claimed sample count cannot weight an average: it must be a whole number
    >= 0 and below 2**53 (beyond that floats cannot even count; a claim of 1e30 would
    otherwise take the average over). The claim is the client's word: a robust rule
    should not lean on it, but it must be a count."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, Integral | float):
        return f"sample count {num_samples!r} ({type(num_samples).__name__}) is not a number"
    if not math.isfinite(num_samples) or num_samples != int(num_samples):
        return f"sample count {num_samples!r} is not a whole number"
    if num_samples < 0:
        return f"negative sample count {num_samples!r}"
    if num_samples >= MAX_SAMPLE_COUNT:
        return f"sample count {num_samples!r} exceeds {MAX_SAMPLE_COUNT:.0e}"
    return None


def _majority_kind(kinds: Sequence[str]) -> str | None:
    if not kinds:
        return None
    tally = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    return max(tally, key=lambda k: tally[k])
