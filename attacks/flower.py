"""FedArena poisoning attacks on Flower's Message API (optional extra ``fedarena[flower]``).

- ``DataPoisoningMod``: a data attack (label flip, backdoor) as a ClientApp mod; the
  client's ``fedarena.fl_core.flower.train_reply`` trains on the poisoned data.
- ``ModelPoisoningMod``: an update attack that needs only the client's own update (sign
  flip of its own update, additive noise, model replacement) as a ClientApp mod; it
  rewrites the reply as a one-member colluding group.
- ``OmniscientAttack``: a strategy wrapper for attacks that need the round's honest
  updates (ALIE, IPM, min-max, min-sum, sign flip of the honest mean): it rewrites the
  replies of the designated malicious clients before the inner strategy sees them —
  the same place a FedArena ``Simulation`` calls ``UpdateAttack.craft``.
``poisoning_mod(name, …)`` builds the right mod from ``fedarena.attacks.registry.POISONING_ATTACKS``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from torch import nn

from fedarena.fl_core.flower import (
    ARRAYS_KEY,
    METRICS_KEY,
    NUM_EXAMPLES_KEY,
    ArrayCodec,
    Mod,
    installed_data_attack,
    reply_client_id,
    reply_update,
    rewrite_reply,
    update_record,
)
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.simulation import DataAttack, RoundContext, UpdateAttack
from fedarena.fl_core.updates import ClientUpdate

from .registry import POISONING_ATTACKS


class DataPoisoningMod:
    """A FedArena ``DataAttack`` as a ClientApp mod: inside it, ``train_reply`` trains on
    ``attack.poison(data, torch_generator(seed, "poison", client, r))`` — a simulation's
    stream for the same client and round."""

    def __init__(self, attack: DataAttack, *, seed: int = 0) -> None:
        self.attack, self.seed = attack, int(seed)

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        with installed_data_attack(self.attack, self.seed):
            return call_next(msg, context)


class ModelPoisoningMod:
    """A FedArena ``UpdateAttack`` on the client's own update, as a ClientApp mod.

    The attack sees a ``RoundContext`` with no honest updates and ``own`` = this client's
    update (omniscient attacks fall back to it; use ``OmniscientAttack`` for the real
    thing). Randomness: ``torch_generator(seed, "update_attack", group, r)``, a
    simulation's stream for its ``group``-th adversary. ``num_clients`` (clients per
    round) is what ``model_replacement`` scales by; without it the attack sees 1.
    """

    def __init__(self, attack: UpdateAttack, *, seed: int = 0, group: int = 0, num_clients: int | None = None,
                 model: nn.Module | None = None) -> None:
        self.attack, self.seed, self.group = attack, int(seed), int(group)
        self.num_clients = num_clients
        self.codec = None if model is None else ArrayCodec.of(model)

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        sent = msg.content.array_records[ARRAYS_KEY]
        global_params = (self.codec or ArrayCodec.from_record(sent)).to_state(sent).params

        def craft(update: ClientUpdate, r: int) -> ClientUpdate:
            ctx = RoundContext(
                round=r, honest=update.vector.new_empty(0, update.vector.numel()), own=update.vector.unsqueeze(0),
                client_ids=[update.client_id], num_samples=torch.tensor([float(update.num_samples)]),
                num_clients=self.num_clients or 1, global_params=global_params, kind=update.kind,
                generator=torch_generator(self.seed, "update_attack", self.group, r))
            crafted = craft_checked(self.attack, ctx)
            return ClientUpdate(update.client_id, crafted[0], update.kind, update.num_samples, update.metadata,
                                update.buffers)

        return rewrite_reply(msg, reply, context, craft, self.codec)


def craft_checked(attack: UpdateAttack, ctx: RoundContext) -> torch.Tensor:
    """``attack.craft(ctx)``, refusing a result that is not one row per colluder."""
    crafted = attack.craft(ctx)
    if crafted.shape != ctx.own.shape:
        raise ValueError(f"{type(attack).__name__}: crafted updates of shape {tuple(crafted.shape)}, "
                         f"expected {tuple(ctx.own.shape)}")
    return crafted


def poisoning_mod(name: str, *, seed: int = 0, group: int = 0, num_clients: int | None = None,
                  model: nn.Module | None = None, **kwargs: Any) -> Mod:
    """The ClientApp mod for registry attack ``name`` (its keyword arguments in ``kwargs``)."""
    attack = POISONING_ATTACKS.get(name)(**kwargs)
    if hasattr(attack, "poison"):
        return DataPoisoningMod(attack, seed=seed)
    return ModelPoisoningMod(attack, seed=seed, group=group, num_clients=num_clients, model=model)


class OmniscientAttack(Strategy):
    """Wraps a strategy; rewrites the malicious clients' train replies with ``attack.craft``.

    ``malicious``: the client ids of the colluding group (keyed as ``client_id_key``
    says: Flower node ids by default, or a reply metric such as ``"client-id"``), or a
    predicate on the reply. The attack's ``RoundContext`` is built as a FedArena
    simulation builds it: honest and own rows in client-id order, ``num_clients`` the
    round's replies, generator ``torch_generator(seed, "update_attack", group, r)``.
    Replies that cannot be read (wrong arrays) pass through untouched for the inner
    strategy to reject. Everything else is the inner strategy's.
    """

    def __init__(self, inner: Strategy, attack: UpdateAttack | str, model: nn.Module,
                 malicious: Collection[int] | Callable[[Message], bool], *, seed: int = 0, group: int = 0,
                 client_id_key: str | None = None, attack_args: dict[str, Any] | None = None) -> None:
        self.inner = inner
        self.attack = POISONING_ATTACKS.get(attack)(**(attack_args or {})) if isinstance(attack, str) else attack
        if not hasattr(self.attack, "craft"):
            raise TypeError(f"{type(self.attack).__name__} is not a model-poisoning attack (it has no craft)")
        self.codec = ArrayCodec.of(model)
        self.device = next(model.parameters()).device  # the attack computes where the model lives
        self.malicious = malicious
        self.seed, self.group, self.client_id_key = int(seed), int(group), client_id_key
        self._global: ArrayRecord | None = None

    def is_malicious(self, msg: Message, client_id: int) -> bool:
        if callable(self.malicious):
            return bool(self.malicious(msg))
        return client_id in self.malicious

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._global = arrays
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self._global is None:
            raise RuntimeError("OmniscientAttack.aggregate_train before configure_train: no global model known")
        state = self.codec.to_state(self._global, device=self.device)
        rows: list[tuple[int, bool, Message, ClientUpdate]] = []
        for msg in replies:
            if msg.has_error():
                continue
            arrays = msg.content.array_records.get(ARRAYS_KEY)
            metrics = msg.content.metric_records.get(METRICS_KEY, MetricRecord())
            if self.codec.check(arrays) is not None:
                continue
            try:
                cid = reply_client_id(msg, self.client_id_key)
            except ValueError:
                continue
            update = reply_update(self.codec, state, arrays, cid, int(metrics.get(NUM_EXAMPLES_KEY, 0)))
            rows.append((cid, self.is_malicious(msg, cid), msg, update))
        rows.sort(key=lambda row: row[0])
        own = [row for row in rows if row[1]]
        if own:
            honest = [u.vector for _, bad, _, u in rows if not bad]
            r = server_round - 1
            ctx = RoundContext(
                round=r, honest=torch.stack(honest) if honest else state.params.new_empty(0, state.params.numel()),
                own=torch.stack([u.vector for *_, u in own]), client_ids=[cid for cid, *_ in own],
                num_samples=torch.tensor([float(u.num_samples) for *_, u in own]), num_clients=len(rows),
                global_params=state.params, kind=own[0][3].kind,
                generator=torch_generator(self.seed, "update_attack", self.group, r))
            crafted = craft_checked(self.attack, ctx)
            for (_, _, msg, u), vec in zip(own, crafted, strict=True):
                forged = ClientUpdate(u.client_id, vec, u.kind, u.num_samples, u.metadata, u.buffers)
                msg.content[ARRAYS_KEY] = update_record(self.codec, state, forged, msg.content[ARRAYS_KEY])
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()
