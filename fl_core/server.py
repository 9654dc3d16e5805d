"""The FL server: validates uploads, aggregates, steps the global model.

Validation happens here, before any aggregation rule: a non-finite or wrongly shaped
update is rejected and recorded with its reason, never averaged into the model. The
server holds the global *shared* state of its protocol (``fl_core.protocol``): the
whole model for FedSGD/FedAvg, a sub-model or another network for other protocols.
``step(updates, client_lr) -> StepRecord`` is the one server step (a Flower strategy
wraps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .aggregation import Aggregator, FedAvg, finite_rows
from .client import GlobalState
from .protocol import FedAvgProtocol, FLProtocol
from .updates import ClientUpdate
from .vectors import buffers_to_vector, vector_to_buffers


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
        v = update.vector
        if not isinstance(v, Tensor):
            return f"update vector is {type(v).__name__}, not a tensor"
        if v.dim() != 1 or v.numel() != self.layout.dim:
            return (f"update has shape {tuple(v.shape)}, expected ({self.layout.dim},) "
                    f"(the {self.protocol.name} protocol's shared layout)")
        if not v.is_floating_point():
            return f"update dtype {v.dtype} is not floating point"
        if not bool(finite_rows(v.unsqueeze(0))[0]):
            return f"update has {int((~torch.isfinite(v)).sum())} non-finite entries"
        if update.kind not in ("gradient", "delta"):
            return f"update kind {update.kind!r} is neither 'gradient' nor 'delta'"
        if update.num_samples < 0:
            return f"negative sample count {update.num_samples}"
        b = update.buffers
        if b is not None and (self.state.buffers is None or b.shape != self.state.buffers.shape
                              or not bool(torch.isfinite(b).all())):
            return "malformed or non-finite buffers"
        return None

    def step(self, updates: Sequence[ClientUpdate], client_lr: float = 1.0) -> StepRecord:
        """Validate, aggregate the accepted uploads, fold the aggregate into the global state."""
        record = StepRecord()
        accepted: list[ClientUpdate] = []
        for u in updates:
            reason = self.validate(u)
            if reason is None:
                accepted.append(u)
            else:
                record.rejected[u.client_id] = reason
        if not accepted:
            record.applied = False
            record.info["reason"] = "no valid update this round"
            return record
        kinds = {u.kind for u in accepted}
        if len(kinds) > 1:
            raise ValueError(f"a round mixes update kinds {sorted(kinds)}")
        params = self.state.params
        stack = torch.stack([u.vector.to(device=params.device, dtype=params.dtype) for u in accepted])
        counts = torch.tensor([float(u.num_samples) for u in accepted], device=params.device)
        ids = [u.client_id for u in accepted]
        result = self.aggregator(stack, counts, ids)
        record.weights = dict(zip(ids, result.weights.tolist(), strict=True))
        record.info.update(result.info)
        new_params = self.protocol.fold(params, result.aggregate, kinds.pop(), self.server_lr, client_lr)
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
