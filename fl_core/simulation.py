"""A federation in one process: rounds, client sampling, hooks, evaluation, history.

Hooks (DESIGN):
- ``Adversary.data_attack`` changes a malicious client's data before it trains
  (label flips, backdoor triggers).
- ``Adversary.update_attack`` replaces the malicious clients' uploads after every
  client has trained; it sees the round's honest updates (omniscient attacker), and
  one call crafts the whole colluding group's updates.
- ``transforms`` act on every upload before it leaves the client (clipping, noise…).
- ``observers`` receive every upload as the server sees it, plus the private data
  (for the harness's scoring only; an attack receives an ``Observation``).
One ``seed`` determines sampling, training order, dropout and attack randomness; the
global RNG is never touched. Each client's dropout masks come from its own generator
``torch_generator(seed, "dropout", client_id, round)`` and are recorded in its
``PrivateData.dropout_masks``.

The protocol (``fedarena.fl_core.protocol``; default FedSGD/FedAvg) decides what each client
shares and keeps: ``client_states`` holds what clients keep between rounds, client-side.
Everything runs on the device of the model it is given: client and test data are moved
there once, at construction.

``client_workers=N`` (N ≥ 2) trains a round's clients in N worker processes
(``fedarena.fl_core.parallel.ClientPool``, started at the first round, closed by ``run`` or
``close``); results are identical to sequential training, since a client's local round
is a pure function of (start state, data, seed, round) and the protocol's client state,
the transforms, attacks on updates and aggregation stay in this process, in client order.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .aggregation import Aggregator
from .client import Client, GlobalState, LocalTrainer, train_client
from .data import ImageDataset
from .parallel import ClientPool, local_round, workers_refuse
from .protocol import ClientState, FLProtocol
from .seeding import torch_generator
from .server import Server
from .updates import ClientUpdate, LocalTraining, PrivateData, UpdateKind
from .vectors import buffers_to_vector, model_to_vector


@dataclass(frozen=True)
class FederationConfig:
    rounds: int = 10
    clients_per_round: int | None = None
    local: LocalTraining = field(default_factory=LocalTraining)
    server_lr: float = 1.0
    seed: int = 0
    eval_every: int = 1
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"FederationConfig.rounds must be >= 1, got {self.rounds}")
        if self.clients_per_round is not None and self.clients_per_round < 1:
            raise ValueError(f"FederationConfig.clients_per_round must be >= 1, got {self.clients_per_round}")
        if self.eval_every < 1:
            raise ValueError(f"FederationConfig.eval_every must be >= 1, got {self.eval_every}")


class DataAttack(Protocol):
    """Data poisoning: returns the data a malicious client trains on this round."""

    def poison(self, data: ImageDataset, generator: torch.Generator) -> ImageDataset: ...


@dataclass
class RoundContext:
    """What an omniscient model-poisoning attacker knows when it crafts its updates."""

    round: int
    honest: Tensor
    own: Tensor
    client_ids: list[int]
    num_samples: Tensor
    num_clients: int
    global_params: Tensor
    kind: UpdateKind
    generator: torch.Generator


class UpdateAttack(Protocol):
    """Model poisoning: returns the ``[m, d]`` updates of the colluding group."""

    def craft(self, ctx: RoundContext) -> Tensor: ...


UpdateTransform = Callable[[ClientUpdate, torch.Generator], ClientUpdate]


@dataclass
class Adversary:
    """A group of colluding malicious clients sharing one behaviour."""

    client_ids: Collection[int]
    data_attack: DataAttack | None = None
    update_attack: UpdateAttack | None = None
    name: str = "adversary"


@dataclass
class UploadEvent:
    round: int
    update: ClientUpdate
    private: PrivateData
    state: GlobalState
    training: LocalTraining
    role: str


Observer = Callable[[UploadEvent], None]


@dataclass
class RoundRecord:
    round: int
    clients: list[int]
    accuracy: float | None
    loss: float | None
    rejected: dict[int, str]
    weights: dict[int, float]
    applied: bool
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class History:
    rounds: list[RoundRecord] = field(default_factory=list)
    roles: dict[int, str] = field(default_factory=dict)

    @property
    def accuracies(self) -> list[float]:
        return [r.accuracy for r in self.rounds if r.accuracy is not None]

    @property
    def final_accuracy(self) -> float | None:
        acc = self.accuracies
        return acc[-1] if acc else None

    def to_dict(self) -> dict[str, Any]:
        return {"roles": {str(k): v for k, v in self.roles.items()},
                "rounds": [_jsonable(asdict(r)) for r in self.rounds]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class Simulation:
    """Runs a federation. ``model`` is the initial global model (it is trained in place).

    ``protocol`` (default FedSGD/FedAvg) builds the server with ``aggregator``; or pass a
    ready ``server`` (whose model must be ``model``; it brings its aggregator and protocol).
    ``test_set`` is one dataset or ``{client id: local test split}``; the protocol decides
    what is evaluated on it. The clients run ``protocol.local_trainer(trainer)``.
    """

    def __init__(
        self,
        model: nn.Module,
        clients: Sequence[Client],
        config: FederationConfig,
        test_set: ImageDataset | Mapping[int, ImageDataset] | None = None,
        aggregator: Aggregator | None = None,
        *,
        trainer: LocalTrainer = train_client,
        adversaries: Sequence[Adversary] = (),
        transforms: Sequence[UpdateTransform] = (),
        observers: Sequence[Observer] = (),
        progress: bool | None = None,
        protocol: FLProtocol | None = None,
        server: Server | None = None,
        client_workers: int = 1,
        client_threads: int = 1,
    ) -> None:
        if client_workers < 1:
            raise ValueError(f"Simulation: client_workers must be >= 1, got {client_workers}")
        refused = workers_refuse(trainer) if client_workers > 1 else None
        if refused:
            raise ValueError(f"Simulation: client_workers={client_workers} needs a trainer function; {refused}: "
                             "train it with client_workers=1")
        ids = [c.client_id for c in clients]
        if len(set(ids)) != len(ids):
            raise ValueError("client ids must be unique")
        if not clients:
            raise ValueError("a federation needs at least one client")
        if config.clients_per_round is not None and config.clients_per_round > len(clients):
            raise ValueError(f"clients_per_round={config.clients_per_round} exceeds {len(clients)} clients")
        if server is not None:
            if server.model is not model:
                raise ValueError("Simulation: server.model must be the model passed as the global model")
            if aggregator is not None or protocol is not None:
                raise ValueError("Simulation: give either a ready server or aggregator/protocol, not both")
            if server.server_lr != config.server_lr:
                raise ValueError(f"Simulation: server.server_lr={server.server_lr} differs from "
                                 f"config.server_lr={config.server_lr}")
        device = _device_of(model)
        self.clients = [c if c.data.images.device == device else dataclasses.replace(c, data=c.data.to(device))
                        for c in clients]
        self.config = config
        # one test set, or {client id: local test split} (personalised evaluation)
        self.test_set: ImageDataset | dict[int, ImageDataset] | None = (
            None if test_set is None else test_set.to(device) if isinstance(test_set, ImageDataset)
            else {cid: split.to(device) for cid, split in test_set.items()})
        self.server = server if server is not None else Server(model, aggregator, config.server_lr, protocol=protocol)
        self.protocol = self.server.protocol
        self.worker = copy.deepcopy(model)
        self.device = device
        self._initial = GlobalState(model_to_vector(model), buffers_to_vector(model))
        self.client_states: dict[int, ClientState] = {}
        self.trainer = self.protocol.local_trainer(trainer)
        self.adversaries = list(adversaries)
        self.transforms = list(transforms)
        self.observers = list(observers)
        self.progress = progress
        self._adversary_of: dict[int, Adversary] = {}
        for adv in self.adversaries:
            for cid in adv.client_ids:
                if cid not in ids:
                    raise ValueError(f"adversary {adv.name!r} names unknown client {cid}")
                if cid in self._adversary_of:
                    raise ValueError(f"client {cid} belongs to two adversaries")
                self._adversary_of[cid] = adv
        self.history = History(roles={c.client_id: c.role for c in self.clients})
        self.client_workers, self.client_threads = client_workers, client_threads
        self._pool: ClientPool | None = None

    @property
    def model(self) -> nn.Module:
        return self.server.model

    def run(self) -> History:
        try:
            for r in tqdm(range(self.config.rounds), desc="rounds", disable=_disabled(self.progress), leave=False):
                self.history.rounds.append(self.run_round(r))
        finally:
            self.close()
        return self.history

    def start_workers(self) -> ClientPool:
        """Start the client worker processes now (else at the first round): model and data go out once."""
        if self.client_workers < 2:
            raise ValueError("Simulation.start_workers: client_workers is 1 (clients train in this process)")
        if self._pool is None or self._pool.closed:
            attacks = {cid: adv.data_attack for cid, adv in self._adversary_of.items() if adv.data_attack is not None}
            self._pool = ClientPool(self.client_workers, self.worker, self.clients, self.trainer,
                                    self.config.local, self.config.seed, attacks, self.client_threads)
        return self._pool

    def close(self) -> None:
        """Stop the client worker processes, if any (a later round starts them again)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sample_clients(self, round_index: int) -> list[Client]:
        k = self.config.clients_per_round
        if k is None or k == len(self.clients):
            return list(self.clients)
        gen = torch_generator(self.config.seed, "sampling", round_index)
        chosen = torch.randperm(len(self.clients), generator=gen)[:k].sort().values
        return [self.clients[i] for i in chosen.tolist()]

    def run_round(self, r: int) -> RoundRecord:
        start = time.perf_counter()
        cfg = self.config
        state = self.server.state
        sampled = self.sample_clients(r)
        updates, privates = self._train_all(sampled, state, r)
        updates = self._apply_update_attacks(updates, r, state)
        if self.observers:  # privates are None without observers (workers keep them)
            for client, update, private in zip(sampled, updates, privates, strict=True):
                event = UploadEvent(r, update, private, state, cfg.local, client.role)  # type: ignore[arg-type]
                for observer in self.observers:
                    observer(event)
        step = self.server.step(updates, client_lr=cfg.local.lr, kind=cfg.local.kind)
        acc = loss = None
        info = dict(step.info)
        if self.test_set is not None and ((r + 1) % cfg.eval_every == 0 or r + 1 == cfg.rounds):
            result = self.protocol.evaluate(self.server.model, self.client_states, self.test_set,
                                            cfg.eval_batch_size)
            acc, loss = result.accuracy, result.loss
            info.update(result.info)
        return RoundRecord(r, [c.client_id for c in sampled], acc, loss, step.rejected, step.weights,
                           step.applied, time.perf_counter() - start, info)

    def client_state(self, client_id: int) -> ClientState:
        """What ``client_id`` keeps between rounds (created at first use); client-side only."""
        kept = self.client_states.get(client_id)
        if kept is None:
            kept = self.client_states[client_id] = ClientState(client_id, self._initial)
        return kept

    def _train_all(self, sampled: list[Client], state: GlobalState,
                   r: int) -> tuple[list[ClientUpdate], list[PrivateData | None]]:
        """Every sampled client's upload and private data, in order; in workers if ``client_workers`` > 1
        (whose private data come back only for observers, else None)."""
        kept = [self.client_state(c.client_id) for c in sampled]
        starts = [self.protocol.client_start(state, k) for k in kept]
        if self.client_workers > 1:
            jobs = [(c.client_id, None if s is state else s) for c, s in zip(sampled, starts, strict=True)]
            trained = self.start_workers().train(state, r, jobs, private=bool(self.observers))
        else:
            trained = [local_round(self.worker, self.trainer, s, c.client_id, c.data, self.config.local,
                                   self.config.seed, r, self._data_attack(c.client_id), self.device)
                       for c, s in zip(sampled, starts, strict=True)]
        updates, privates = [], []
        for client, start, k, (update, private) in zip(sampled, starts, kept, trained, strict=True):
            update = self.protocol.client_upload(update, start, k, self.config.local)
            for i, transform in enumerate(self.transforms):
                update = transform(update, torch_generator(self.config.seed, "transform", i, client.client_id, r))
            updates.append(update)
            privates.append(private)
        return updates, privates

    def _data_attack(self, cid: int) -> DataAttack | None:
        adv = self._adversary_of.get(cid)
        return None if adv is None else adv.data_attack

    def _apply_update_attacks(self, updates: list[ClientUpdate], r: int, state: GlobalState) -> list[ClientUpdate]:
        attackers = {a.name: a for a in self.adversaries if a.update_attack is not None}
        if not attackers:
            return updates
        honest_rows = [u.vector for u in updates if u.client_id not in self._adversary_of]
        d = state.params.numel()
        honest = torch.stack(honest_rows) if honest_rows else state.params.new_empty(0, d)
        out = list(updates)
        for i, adv in enumerate(self.adversaries):
            if adv.update_attack is None:
                continue
            rows = [j for j, u in enumerate(updates) if u.client_id in adv.client_ids]
            if not rows:
                continue
            ctx = RoundContext(
                round=r, honest=honest, own=torch.stack([updates[j].vector for j in rows]),
                client_ids=[updates[j].client_id for j in rows],
                num_samples=torch.tensor([float(updates[j].num_samples) for j in rows], device=state.params.device),
                num_clients=len(updates), global_params=state.params, kind=updates[rows[0]].kind,
                generator=torch_generator(self.config.seed, "update_attack", i, r),
            )
            crafted = adv.update_attack.craft(ctx)
            if crafted.shape != ctx.own.shape:
                raise ValueError(f"{adv.name}: crafted updates of shape {tuple(crafted.shape)}, "
                                 f"expected {tuple(ctx.own.shape)}")
            for j, vec in zip(rows, crafted, strict=True):
                out[j] = ClientUpdate(updates[j].client_id, vec, updates[j].kind, updates[j].num_samples,
                                      updates[j].metadata, updates[j].buffers)
        return out


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    raise ValueError(f"{type(model).__name__} has no parameters to train")


def _disabled(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    return repr(obj)
