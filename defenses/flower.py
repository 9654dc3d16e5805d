"""FedArena defenses on Flower's Message API (optional extra ``fedarena[flower]``).

- ``FedArenaStrategy``: any FedArena ``Aggregator`` (a registry name from
  ``fedarena.defenses.registry.AGGREGATORS`` or an instance) as a Flower strategy. Replies become
  updates (reply − global, ``fedarena.fl_core.flower``) and go through ``fedarena.fl_core.server.Server.step``
  itself — the same validation, aggregation and model step as a FedArena simulation,
  no second copy of the arithmetic. Trust weights go into the round's metrics.
- ``TransformMod`` / ``TrainerMod``: a FedArena update transform (noise, clipping,
  pruning, quantization, local DP-FedAvg) or local trainer (DP-SGD) as a ClientApp mod;
  ``privacy_mods(name, …)`` builds them from ``fedarena.defenses.registry.PRIVACY_DEFENSES``.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log
from torch import nn

from fedarena.fl_core.aggregation import Aggregator
from fedarena.fl_core.client import LocalTrainer, load_state
from fedarena.fl_core.flower import (
    ARRAYS_KEY,
    METRICS_KEY,
    ArrayCodec,
    Mod,
    installed_trainer,
    reply_client_id,
    reply_update,
    rewrite_reply,
)
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.server import Server, StepRecord
from fedarena.fl_core.simulation import UpdateTransform
from fedarena.fl_core.updates import ClientUpdate, UpdateKind

from .registry import AGGREGATORS, PRIVACY_DEFENSES, ClientDefense


class FedArenaStrategy(FedAvg):
    """A FedArena aggregator as a Flower strategy (sampling and evaluation: Flower's FedAvg).

    ``model`` is the global model (its architecture names the arrays; it is stepped in
    place, like ``Server.model``). ``client_id_key``: None keys clients by Flower node id;
    a metric name (e.g. ``"client-id"``, which ``fedarena.fl_core.flower.train_reply`` reports)
    keys them by that. Rows reach the aggregator sorted by that id, so stateful rules
    (MUD-HoG, FoolsGold, centered clipping) see each client under one id every round —
    the aggregator object, and its state, is the same across rounds.
    ``kind="gradient"`` (FedSGD replies: global + gradient) steps by −server_lr·client_lr.

    Each round's ``StepRecord`` (rejected replies with reasons, trust weights, rule info)
    is in ``records[server_round]`` (an error reply is recorded under its node id: it
    carries no metrics); the metrics carry ``fedarena-ids``,
    ``fedarena-weights`` (aligned), ``fedarena-rejected`` and ``fedarena-applied``.
    """

    def __init__(self, aggregator: Aggregator | str, model: nn.Module, *, aggregator_args: dict[str, Any] | None = None,
                 server_lr: float = 1.0, kind: UpdateKind = "delta", client_lr: float = 1.0,
                 client_id_key: str | None = None, **fedavg_args: Any) -> None:
        super().__init__(**fedavg_args)
        if isinstance(aggregator, str):
            aggregator = AGGREGATORS.get(aggregator)(**(aggregator_args or {}))
        elif aggregator_args:
            raise ValueError("aggregator_args apply only to an aggregator given by registry name")
        if not isinstance(aggregator, Aggregator):
            raise TypeError(f"aggregator must be a fl_core Aggregator or a registry name, got {type(aggregator)}")
        if kind not in ("delta", "gradient"):
            raise ValueError(f"kind must be 'delta' or 'gradient', got {kind!r}")
        self.server = Server(model, aggregator, server_lr)
        self.codec = ArrayCodec.of(model)
        self.kind: UpdateKind = kind
        self.client_lr = float(client_lr)
        self.client_id_key = client_id_key
        self.records: dict[int, StepRecord] = {}

    @property
    def aggregator(self) -> Aggregator:
        return self.server.aggregator

    def summary(self) -> None:
        log(INFO, "\t├──> FedArena aggregator: %s (%s updates)", self.aggregator.name, self.kind)
        super().summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Flower's sampling; the global state follows the arrays Flower sends (usually ours)."""
        self._sync(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def _sync(self, arrays: ArrayRecord) -> None:
        current = self.server.state
        state = self.codec.to_state(arrays, dtype=current.params.dtype, device=current.params.device)
        same_buffers = (state.buffers is None) == (current.buffers is None) and (
            state.buffers is None or torch.equal(state.buffers, current.buffers))  # type: ignore[arg-type]
        if not (torch.equal(state.params, current.params) and same_buffers):
            self.server.state = state
            load_state(self.server.model, state)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, errors = self._check_and_log_replies(replies, is_train=True, validate=False)
        record = StepRecord()
        for msg in errors:
            record.rejected[int(msg.metadata.src_node_id)] = f"error reply: {msg.error.reason}"
        updates, contents = self.read_replies(valid, record.rejected)
        step = self.server.step(updates, client_lr=self.client_lr) if updates else StepRecord(
            applied=False, info={"reason": "no valid update this round"})
        step.rejected = {**record.rejected, **step.rejected}
        self.records[server_round] = step
        trusted = [c for u, c in zip(updates, contents, strict=True) if step.weights.get(u.client_id, 0.0) > 0]
        metrics = self.train_metrics_aggr_fn(trusted, self.weighted_by_key) if trusted else MetricRecord()
        ids = list(step.weights)
        metrics["fedarena-ids"] = ids
        metrics["fedarena-weights"] = [float(step.weights[i]) for i in ids]
        metrics["fedarena-rejected"] = sorted(step.rejected)
        metrics["fedarena-applied"] = int(step.applied)
        for cid, reason in step.rejected.items():
            log(INFO, "\t> FedArena rejected client %d: %s", cid, reason)
        arrays = ArrayRecord(self.server.model.state_dict()) if step.applied else None
        return arrays, metrics

    def read_replies(self, replies: Iterable[Message],
                     rejected: dict[int, str]) -> tuple[list[ClientUpdate], list[RecordDict]]:
        """Replies → updates sorted by client id; unreadable replies go to ``rejected``."""
        rows = []
        for msg in replies:
            try:
                cid = reply_client_id(msg, self.client_id_key)
            except ValueError as exc:
                rejected[int(msg.metadata.src_node_id)] = str(exc)
                continue
            if any(cid == seen for seen, _, _ in rows):
                rejected[cid] = "a second reply under this client id this round"
                continue
            content = msg.content
            arrays = content.get(ARRAYS_KEY)  # not .array_records: that builds a filtered copy per call
            metrics = content.get(METRICS_KEY)
            reason = self.codec.check(arrays)
            if reason is None and (not isinstance(metrics, MetricRecord) or self.weighted_by_key not in metrics):
                reason = f"reply has no metrics[{self.weighted_by_key!r}]"
            if reason is not None:
                rejected[cid] = reason
                continue
            n = metrics[self.weighted_by_key]  # type: ignore[index]
            if not isinstance(n, int | float) or isinstance(n, bool) or n != int(n):
                rejected[cid] = f"sample count {n!r} is not an integer"
                continue
            update = reply_update(self.codec, self.server.state, arrays, cid, int(n), self.kind)  # type: ignore[arg-type]
            rows.append((cid, update, content))
        rows.sort(key=lambda row: row[0])
        return [u for _, u, _ in rows], [c for _, _, c in rows]


class TransformMod:
    """A FedArena ``UpdateTransform`` (noise, clipping, pruning, quantization, local
    DP-FedAvg) as a ClientApp mod on train replies.

    Randomness: ``torch_generator(seed, "transform", index, client, r)`` with r =
    server-round − 1 — a FedArena simulation's stream for its ``index``-th transform.
    Without ``model``, every float array of the reply is the update (see
    ``ArrayCodec.from_record``). List it after attack mods (``mods=[attack, *privacy]``):
    the innermost mod changes the reply first, as a simulation transforms an upload
    before an attacker replaces it.
    """

    def __init__(self, transform: UpdateTransform, *, seed: int = 0, index: int = 0,
                 model: nn.Module | None = None) -> None:
        self.transform, self.seed, self.index = transform, int(seed), int(index)
        self.codec = None if model is None else ArrayCodec.of(model)

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        return rewrite_reply(msg, reply, context, self._apply, self.codec)

    def _apply(self, update: ClientUpdate, r: int) -> ClientUpdate:
        return self.transform(update, torch_generator(self.seed, "transform", self.index, update.client_id, r))


class TrainerMod:
    """A FedArena local trainer (DP-SGD) as a ClientApp mod: ``fedarena.fl_core.flower.train_reply``
    trains with it inside this mod. The trainer object keeps its accountant per client, so
    it must live as long as the client's process does (one ClientApp per node)."""

    def __init__(self, trainer: LocalTrainer) -> None:
        self.trainer = trainer

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        with installed_trainer(self.trainer):
            return call_next(msg, context)


def privacy_mods(defense: ClientDefense | str, *, seed: int = 0, model: nn.Module | None = None,
                 **kwargs: Any) -> list[Mod]:
    """The ClientApp mods of a privacy defense (a ``PRIVACY_DEFENSES`` name and its keyword
    arguments, or a ``ClientDefense``); a server-side part (central DP-FedAvg's aggregator)
    goes to ``FedArenaStrategy`` instead, so it is refused here."""
    if isinstance(defense, str):
        defense = PRIVACY_DEFENSES.get(defense)(**kwargs)
    elif kwargs:
        raise ValueError("keyword arguments apply only to a defense given by registry name")
    if defense.aggregator is not None:
        raise ValueError(f"this defense has a server-side aggregator ({defense.aggregator.name}): pass it to "
                         "FedArenaStrategy and its transforms to privacy_mods(ClientDefense(transforms=...))")
    mods: list[Mod] = [] if defense.trainer is None else [TrainerMod(defense.trainer)]
    mods += [TransformMod(t, seed=seed, index=i, model=model) for i, t in enumerate(defense.transforms)]
    return mods
