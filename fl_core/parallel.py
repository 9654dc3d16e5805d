"""A round's clients in parallel worker processes, with results identical to sequential training.

Each client's local round is a pure function of (global start state, client data, seed,
round): ``local_round`` below, which ``Simulation`` runs in process and ``ClientPool``
workers run in theirs. The pool's workers are spawned processes (``torch.multiprocessing``
spawn context, ``threads`` torch threads each). At start each worker receives a copy of
the model, the trainer and, once, the data of a fixed share of the clients (client ``i``
of the federation's list goes to worker ``i % workers``) plus the data attacks of its
malicious clients; per round it receives the global state (and a client's own start
state only where the protocol's differs from the global one) and sends back each
client's ``(update, private)`` — the private data only when the simulation has observers
(the only readers of it; for FedAvg it is the client's whole dataset, most of a reply).

Protocol client state (``ClientState``) stays in the driver: ``Simulation`` calls
``protocol.client_start`` before and ``protocol.client_upload`` and the transforms after
the worker's training, in client order, exactly as sequentially. Workers keep no state
between rounds but their model (overwritten from the start state by every trainer) and
the data, so results do not depend on which worker trains a client.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import traceback
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

import torch
import torch.multiprocessing as mp
from torch import nn

from .client import Client, GlobalState, LocalTrainer
from .data import ImageDataset
from .interrupts import sigint_held
from .models.dropout import dropout_masks
from .seeding import torch_generator
from .updates import ClientUpdate, LocalTraining, PrivateData

if TYPE_CHECKING:
    from .simulation import DataAttack


def workers_refuse(trainer: LocalTrainer) -> str | None:
    """Why ``trainer`` cannot train in client workers, or None when it can.

    Workers train with copies of the trainer; a trainer *object* may keep state across
    calls (DP-SGD's privacy accountant counts its steps), which the copies would update
    while the driver's stays as it was, so only plain functions go to workers.
    """
    if inspect.isfunction(trainer):
        return None
    return (f"{type(trainer).__name__} is an object that may keep state (DP-SGD's accountant), which "
            "workers would update in their copies only")


def local_round(model: nn.Module, trainer: LocalTrainer, start: GlobalState, cid: int, data: ImageDataset,
                training: LocalTraining, seed: int, r: int, data_attack: DataAttack | None,
                device: torch.device) -> tuple[ClientUpdate, PrivateData]:
    """Client ``cid``'s training in round ``r`` from ``start``: poisoning, dropout masks, trainer.

    Every random draw comes from generators derived from ``(seed, cid, r)``, so the
    result does not depend on the process or on what ran before.
    """
    gen = torch_generator(seed, "client", cid, "round", r)  # CPU: the same batches on every device
    if data_attack is not None:
        data = data_attack.poison(data, torch_generator(seed, "poison", cid, r))
    masks_gen = torch_generator(seed, "dropout", cid, r, device=device)
    with dropout_masks(model, generator=masks_gen, record=True) as masks:
        update, private = trainer(model, start, cid, data, training, gen)
    if masks:
        private = dataclasses.replace(private, dropout_masks=masks)
    return update, private


@dataclasses.dataclass
class _Setup:
    model: nn.Module
    trainer: LocalTrainer
    data: dict[int, ImageDataset]
    attacks: dict[int, Any]
    training: LocalTraining
    seed: int
    threads: int


def _send(conn: Connection, obj: Any) -> None:
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))  # tensors by value: no shared fds


def _recv(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())


def _worker_main(conn: Connection) -> None:
    """A worker: set up once, then per round train the listed clients in order and reply."""
    try:
        setup: _Setup = _recv(conn)
        torch.set_num_threads(setup.threads)
        device = next(setup.model.parameters()).device
        _send(conn, ("ready", None))
    except (BrokenPipeError, ConnectionResetError):  # the driver already stopped the pool (a Ctrl-C)
        return
    except BaseException:
        _send(conn, ("error", traceback.format_exc()))
        return
    while True:
        try:
            message = _recv(conn)
        except EOFError:
            return
        if message is None:
            return
        state, r, jobs, private = message
        for cid, start in jobs:  # one reply per client, so sending overlaps the next client's training
            try:
                update, data = local_round(setup.model, setup.trainer, state if start is None else start, cid,
                                           setup.data[cid], setup.training, setup.seed, r, setup.attacks.get(cid),
                                           device)
                _send(conn, ("ok", (update, data if private else None)))
            except (BrokenPipeError, ConnectionResetError):  # nobody left to answer
                return
            except BaseException:
                _send(conn, ("error", f"client {cid}, round {r}:\n{traceback.format_exc()}"))
                break


class ClientPool:
    """``workers`` spawned processes, each keeping a model copy and a fixed share of the clients' data."""

    def __init__(self, workers: int, model: nn.Module, clients: Sequence[Client], trainer: LocalTrainer,
                 training: LocalTraining, seed: int, data_attacks: Mapping[int, Any] | None = None,
                 threads: int = 1) -> None:
        if workers < 2:
            raise ValueError(f"ClientPool needs at least 2 workers (1 trains in process), got {workers}")
        attacks = dict(data_attacks or {})
        self.worker_of = {c.client_id: i % workers for i, c in enumerate(clients)}
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        try:
            for w in range(workers):
                mine = [c for c in clients if self.worker_of[c.client_id] == w]
                setup = _Setup(model, trainer, {c.client_id: c.data for c in mine},
                               {c.client_id: attacks[c.client_id] for c in mine if c.client_id in attacks},
                               training, seed, threads)
                try:
                    payload = pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL)
                except (pickle.PicklingError, AttributeError, TypeError) as exc:
                    raise ValueError(f"client_workers: the trainer, model and data attacks must be picklable "
                                     f"(module-level functions and classes) to reach worker processes: {exc}"
                                     ) from exc
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child,), daemon=True, name=f"fedarena-client-{w}")
                with sigint_held():  # the terminal's Ctrl-C is the driver's to handle, never a start-up traceback
                    proc.start()
                child.close()
                parent.send_bytes(payload)
                self._conns.append(parent)
                self._procs.append(proc)
            for w, conn in enumerate(self._conns):
                self._reply(w, conn)
        except BaseException:
            self.close()
            raise

    def train(self, state: GlobalState, r: int, jobs: Sequence[tuple[int, GlobalState | None]],
              private: bool = True) -> list[tuple[ClientUpdate, PrivateData | None]]:
        """Train ``jobs`` (client id, its start state or None for ``state``) and return results in job order.

        ``private=False``: the private data stays in the workers (None in its place); it is
        the bulk of a reply (a FedAvg client's whole normalised dataset) and only observers
        read it."""
        per_worker: dict[int, list[int]] = {}
        for k, (cid, _) in enumerate(jobs):
            if cid not in self.worker_of:
                raise KeyError(f"client {cid} was not given to the ClientPool")
            per_worker.setdefault(self.worker_of[cid], []).append(k)
        for w, ks in per_worker.items():
            _send(self._conns[w], (state, r, [jobs[k] for k in ks], private))
        results: list[Any] = [None] * len(jobs)
        waiting = {self._conns[w]: (w, iter(ks)) for w, ks in per_worker.items()}
        todo = len(jobs)
        try:
            while todo:
                for conn in wait(list(waiting)):  # whichever worker has a result ready
                    w, ks = waiting[conn]
                    results[next(ks)] = self._reply(w, conn)
                    todo -= 1
        except BaseException:  # a worker failed or died: the others' replies are out of step, stop them all
            self.close()
            raise
        return results

    def _reply(self, w: int, conn: Connection) -> Any:
        try:
            status, payload = _recv(conn)
        except EOFError:
            raise RuntimeError(f"client worker {w} died (exit code {self._procs[w].exitcode})") from None
        if status == "error":
            raise RuntimeError(f"client worker {w} failed:\n{payload}")
        return payload

    @property
    def closed(self) -> bool:
        return not self._conns

    def close(self) -> None:
        for conn in self._conns:
            try:
                _send(conn, None)
                conn.close()
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        self._conns, self._procs = [], []
