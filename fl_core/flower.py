"""The Flower seam (optional extra ``fedarena[flower]``): ArrayRecord ⇄ FedArena vectors,
and the ClientApp side of one FedArena client round.

Both ``fedarena.attacks.flower`` and ``fedarena.defenses.flower`` read client replies as FedArena updates
and write updates back into replies, so the conversion lives here, one layer below
both. A reply carries the client's model *after* local training (Flower's convention);
its update is ``reply − global`` on the trainable parameters, in ``ParameterLayout``
order (looked up by name: a model's state-dict order interleaves BatchNorm buffers, so
it is not the layout order in general).

Client-side hooks: a data-poisoning mod and a DP-SGD mod must change *how* the ClientApp
trains, not its reply. ``train_reply`` (what a FedArena ClientApp's ``train`` calls) runs
one client round exactly as ``fedarena.fl_core.simulation.Simulation`` does — same trainer, same
generators — and consults the data attack and trainer that enclosing mods installed
with ``installed_data_attack`` / ``installed_trainer`` (context variables: they reach
the ClientApp's call without travelling in the message).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from torch import Tensor, nn

from .client import GlobalState, LocalTrainer, train_client
from .data import ImageDataset
from .seeding import derive_seed, torch_generator
from .simulation import DataAttack
from .updates import ClientUpdate, LocalTraining, UpdateKind
from .vectors import ParameterLayout

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
CONFIG_KEY = "config"
NUM_EXAMPLES_KEY = "num-examples"
CLIENT_ID_KEY = "client-id"

Mod = Callable[[Message, Context, ClientAppCallable], Message]  # a ClientApp mod (flwr.clientapp.typing.Mod)


@dataclass(frozen=True)
class ArrayCodec:
    """Which ArrayRecord entries are the trainable parameters (in layout order) and the
    float buffers (in ``model.buffers()`` order) of one model architecture."""

    layout: ParameterLayout
    buffer_names: tuple[str, ...]
    buffer_shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, model: nn.Module) -> ArrayCodec:
        bufs = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
        return cls(ParameterLayout.of(model), tuple(n for n, _ in bufs), tuple(b.shape for _, b in bufs))

    @classmethod
    def from_record(cls, record: ArrayRecord) -> ArrayCodec:
        """Every floating-point array of ``record``, in record order, as parameters: the
        codec of a client-side mod that has no model (right for models without float
        buffers; give the mod its model otherwise, so BatchNorm statistics stay out)."""
        float_keys = [k for k in record if np.issubdtype(np.dtype(record[k].dtype), np.floating)]
        layout = ParameterLayout(tuple(float_keys), tuple(torch.Size(record[k].shape) for k in float_keys))
        return cls(layout, (), ())

    def check(self, record: object) -> str | None:
        """Why ``record`` cannot be read as this model's arrays, or None."""
        if not isinstance(record, ArrayRecord):
            return f"reply carries {type(record).__name__}, not an ArrayRecord"
        expected = dict(zip(self.layout.names, self.layout.shapes, strict=True))
        expected.update(zip(self.buffer_names, self.buffer_shapes, strict=True))
        missing = [n for n in expected if n not in record]
        if missing:
            return f"reply lacks arrays {missing[:5]}{' …' if len(missing) > 5 else ''}"
        for name, shape in expected.items():
            arr = record[name]
            if tuple(arr.shape) != tuple(shape):
                return f"array {name!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}"
            if not np.issubdtype(np.dtype(arr.dtype), np.floating):
                return f"array {name!r} has dtype {arr.dtype}, not floating point"
        return None

    def to_state(self, record: ArrayRecord, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> GlobalState:
        """The parameters and float buffers in ``record``, as ``dtype`` on ``device`` (the
        model's: records arrive in host memory). Raises ``ValueError`` naming what is wrong."""
        reason = self.check(record)
        if reason is not None:
            raise ValueError(reason)
        return self.read_state(record, dtype, device)

    def read_state(self, record: ArrayRecord, dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> GlobalState:
        """``to_state`` for a record ``check`` already passed (a strategy checks every reply once)."""
        params = _flat(record, self.layout.names)
        buffers = _flat(record, self.buffer_names) if self.buffer_names else None
        if dtype is not None or device is not None:
            params = params.to(device=device, dtype=dtype)
            buffers = None if buffers is None else buffers.to(device=device, dtype=dtype)
        return GlobalState(params, buffers)

    def to_record(self, state: GlobalState, like: ArrayRecord) -> ArrayRecord:
        """``like`` (its keys, order and non-float entries) with ``state`` written in."""
        values: dict[str, Tensor] = dict(self.layout.unflatten(state.params.detach().cpu()))
        if state.buffers is not None and self.buffer_names:
            chunks = torch.split(state.buffers.detach().cpu(), [s.numel() for s in self.buffer_shapes])
            values.update({n: c.view(s) for n, c, s in zip(self.buffer_names, chunks, self.buffer_shapes,
                                                            strict=True)})
        out = ArrayRecord()
        for key in like:
            out[key] = Array(values[key].contiguous().numpy()) if key in values else like[key]
        return out


def _flat(record: ArrayRecord, names: tuple[str, ...]) -> Tensor:
    """The arrays ``names`` of ``record`` concatenated (flattened, in that order) into one fresh vector.

    As ``torch.cat`` of the arrays would give (same dtype promotion, same values), but
    each deserialized array (read-only: it views the message's bytes) is copied once,
    straight into its slice, instead of into a writable copy and then into the vector.
    """
    arrays = [record[n].numpy() for n in names]
    out = np.empty(sum(a.size for a in arrays), dtype=np.result_type(*arrays))
    start = 0
    for a in arrays:
        out[start:start + a.size] = a.reshape(-1)
        start += a.size
    return torch.from_numpy(out)


def reply_update(codec: ArrayCodec, global_state: GlobalState, record: ArrayRecord, client_id: int,
                 num_samples: int, kind: UpdateKind = "delta") -> ClientUpdate:
    """The FedArena update a reply carries: its parameters − the global ones (and its buffers).
    ``record`` must have passed ``codec.check`` (callers check first to record why a reply is refused)."""
    state = codec.read_state(record, dtype=global_state.params.dtype, device=global_state.params.device)
    delta = state.params.sub_(global_state.params)  # in place: read_state's vector is a fresh concatenation
    return ClientUpdate(client_id, delta, kind, num_samples, {}, state.buffers)


def update_record(codec: ArrayCodec, global_state: GlobalState, update: ClientUpdate,
                  like: ArrayRecord) -> ArrayRecord:
    """The reply arrays that carry ``update``: global parameters + update (buffers as uploaded)."""
    buffers = update.buffers if update.buffers is not None else global_state.buffers
    return codec.to_record(GlobalState(global_state.params + update.vector, buffers), like)


def rewrite_reply(msg: Message, reply: Message, context: Context,
                  change: Callable[[ClientUpdate, int], ClientUpdate], codec: ArrayCodec | None = None) -> Message:
    """``reply`` with its update replaced by ``change(update, r)`` (r = server-round − 1):
    what a ClientApp mod that changes the upload (noise, sign flip…) does."""
    sent = msg.content.array_records.get(ARRAYS_KEY)
    like = reply.content.array_records.get(ARRAYS_KEY)
    if sent is None or like is None:
        raise ValueError(f"train message or its reply has no ArrayRecord {ARRAYS_KEY!r}")
    codec = codec if codec is not None else ArrayCodec.from_record(sent)
    state = codec.to_state(sent)
    reason = codec.check(like)
    if reason is not None:
        raise ValueError(f"train reply: {reason}")
    metrics = reply.content.metric_records.get(METRICS_KEY, MetricRecord())
    update = reply_update(codec, state, like, client_id_of(context), int(metrics.get(NUM_EXAMPLES_KEY, 0)))
    reply.content[ARRAYS_KEY] = update_record(codec, state, change(update, server_round(msg) - 1), like)
    return reply


def server_round(msg: Message) -> int:
    """Flower's server round (1-based) from a train message's config."""
    config = msg.content.config_records.get(CONFIG_KEY, ConfigRecord())
    if "server-round" not in config:
        raise ValueError("train message has no config['server-round']: it was not sent by a Flower strategy")
    return int(config["server-round"])  # type: ignore[arg-type]


def client_id_of(context: Context) -> int:
    """The FedArena client id of this ClientApp: its partition id (simulation) or node id."""
    pid = context.node_config.get("partition-id")
    return int(pid) if pid is not None else int(context.node_id)  # type: ignore[arg-type]


def reply_client_id(msg: Message, key: str | None) -> int:
    """The id a server-side component keys a reply by: ``metrics[key]`` when ``key`` is
    given (e.g. the partition id a simulation's clients report), else the source node id."""
    if key is None:
        return int(msg.metadata.src_node_id)
    metrics = msg.content.get(METRICS_KEY)
    if not isinstance(metrics, MetricRecord) or key not in metrics:
        raise ValueError(f"reply from node {msg.metadata.src_node_id} has no metrics[{key!r}]")
    return int(metrics[key])  # type: ignore[arg-type]


_DATA_ATTACK: contextvars.ContextVar[tuple[DataAttack, int] | None] = contextvars.ContextVar(
    "fedarena_data_attack", default=None)
_TRAINER: contextvars.ContextVar[LocalTrainer | None] = contextvars.ContextVar("fedarena_trainer", default=None)


@contextlib.contextmanager
def installed_data_attack(attack: DataAttack, seed: int) -> Iterator[None]:
    """Make ``train_reply`` poison its client's data with ``attack`` inside the block."""
    if _DATA_ATTACK.get() is not None:
        raise ValueError("two data-poisoning mods on one ClientApp; combine them into one attack")
    token = _DATA_ATTACK.set((attack, seed))
    try:
        yield
    finally:
        _DATA_ATTACK.reset(token)


@contextlib.contextmanager
def installed_trainer(trainer: LocalTrainer) -> Iterator[None]:
    """Make ``train_reply`` train with ``trainer`` (e.g. DP-SGD) inside the block."""
    if _TRAINER.get() is not None:
        raise ValueError("two trainer mods on one ClientApp; a client trains one way")
    token = _TRAINER.set(trainer)
    try:
        yield
    finally:
        _TRAINER.reset(token)


def train_reply(msg: Message, *, worker: nn.Module, data: ImageDataset, training: LocalTraining, client_id: int,
                seed: int, codec: ArrayCodec | None = None) -> Message:
    """One FedArena client round as a Flower reply (the body of a ClientApp's ``train``).

    As ``fedarena.fl_core.parallel.local_round`` (a Simulation client) for round ``server-round − 1``: generator
    ``torch_generator(seed, "client", id, "round", r)``, global torch seed for dropout,
    poison generator ``(seed, "poison", id, r)``; the reply carries global + update and
    ``metrics`` with ``num-examples``, ``client-id`` and the training loss.
    """
    codec = codec if codec is not None else ArrayCodec.of(worker)
    record = msg.content.array_records.get(ARRAYS_KEY)
    if record is None:
        raise ValueError(f"train message has no ArrayRecord {ARRAYS_KEY!r}")
    r = server_round(msg) - 1
    first = next(worker.parameters())
    state = codec.to_state(record, dtype=first.dtype, device=first.device)
    poison = _DATA_ATTACK.get()
    if poison is not None:
        attack, attack_seed = poison
        data = attack.poison(data, torch_generator(attack_seed, "poison", client_id, r))
    trainer = _TRAINER.get() or train_client
    torch.manual_seed(derive_seed(seed, "dropout", client_id, r))
    generator = torch_generator(seed, "client", client_id, "round", r)
    update, _ = trainer(worker, state, client_id, data, training, generator)
    metrics = MetricRecord({NUM_EXAMPLES_KEY: int(update.num_samples), CLIENT_ID_KEY: int(client_id),
                            "train-loss": float(update.metadata.get("loss", float("nan")))})
    content = RecordDict({ARRAYS_KEY: update_record(codec, state, update, record), METRICS_KEY: metrics})
    return Message(content=content, reply_to=msg)
