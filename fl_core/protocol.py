"""Protocols: what a client shares, what it keeps, how the server folds the aggregate back.

DESIGN ("Protocols"). A protocol is a client/server pair of rules around the one local
trainer and the one aggregation step:

1. **What a client shares** — ``shared_layout(model)``: the ``ParameterLayout`` of the
   vector a client uploads and the server aggregates. The whole model (FedSGD/FedAvg),
   a sub-model (FedPer: the feature extractor, the head stays private), or another
   network than the one evaluated (HyperFL: the hypernetwork). ``read_shared`` and
   ``write_shared`` move that vector out of and into the server's model. The server
   validates every upload against this layout; aggregators and poisoning attacks see
   only ``[n, d]`` stacks of shared vectors, ``d = shared_layout(model).dim``.
2. **What a client keeps** — a ``ClientState`` per client id, created lazily at its
   first round, held by the simulation's client side (``Simulation.client_states``)
   and handed only to that client's own ``client_start`` / ``client_upload`` calls:
   the server and the other clients never see it. Private parameters (FedPer's head,
   HyperFL's embedding and head) and optimiser state that outlives a round (client
   momentum, MoNNA) live here.
   ``client_start(global_state, kept)`` turns the server's global shared state into the
   full-model ``GlobalState`` the local trainer starts from; the trainer (honest
   ``train_client``, DP-SGD, …) is unchanged and returns a full-model update;
   ``client_upload(update, start, kept, training)`` turns it into the upload (the shared
   part, a momentum average, …) and updates what the client keeps.
3. **How the server folds the aggregate back** — ``fold(params, aggregate, kind,
   server_lr, client_lr)``: FedSGD ``w − server_lr·lr·agg``, FedAvg ``w + server_lr·agg``.
4. **What is evaluated** — ``evaluate(model, states, test_set, batch_size)``: the global
   model by default; a personalised protocol evaluates each client's own model (FedPer
   below: the shared body with each client's head) and reports the per-client numbers.
   ``test_set`` is one dataset, or ``{client id: local test split}`` (personalised FL's
   protocol: each client's model on its own split, the mean over clients reported).
5. **Who trains** — ``local_trainer(trainer)``: the trainer the simulation runs; the
   given one (honest ``train_client``, DP-SGD, …) by default; a protocol whose local
   round is its own (HyperFL's two phases) returns its trainer.
6. **What the server holds** — ``server_model(model, seed)``: the server's model built
   from the network a suite names (the one clients evaluate); that network itself by
   default, a ``HyperFLNet`` around it for HyperFL. ``client_model(model, kept)`` is the
   network one client evaluates (the global model by default; its personalised model
   for FedPer/HyperFL), e.g. to score a targeted attack on the clients it targets.
   ``upload_is_update`` says whether the upload is the trainer's whole-model update,
   the ``Observation`` an inversion attack assumes (False for FedPer, HyperFL, client
   momentum). ``records_private_parameters`` says that the protocol's trainer records
   the private parameters each upload was made with (``PrivateData.parameters``), so
   ``make_observation`` names them as the attacker's unknowns (and grants their values
   under the oracle flags): the shared upload is then invertible with the private
   parameters as optimisation variables (HyperFL). The harness's privacy task refuses a
   protocol with neither (FedPer, client momentum).

``FLProtocol`` itself is FedSGD/FedAvg and the default everywhere (bit-identical to the
federation before protocols existed). How others plug in:

- **HyperFL** (Guo et al., AAAI 2025): the server's model is the hypernetwork, so
  ``shared_layout`` is its layout; ``client_start`` generates the client's feature
  extractor from the hypernetwork and the client's private embedding (kept), attaches
  its private head (kept) and returns that target network's state; ``client_upload``
  maps the target network's update back to a hypernetwork update (chain rule through
  the generator) and stores the new embedding and head; ``evaluate`` is per client.
  The attacker gets an ``Observation`` of the server's model (a ``HyperFLNet``, whose
  forward is the generator chain) with the embedding and head frozen and named in
  ``private_names``; they are its unknowns (``param.<name>`` variables), or granted.
- **Client momentum** (``ClientMomentum``, MoNNA: Farhadkhani et al., ICML 2022;
  Karimireddy et al., ICML 2021): the client uploads its momentum of updates, kept
  across rounds; the server's rule (robust aggregation, e.g. NNM + a robust mean) is the
  aggregator's business.
- **A Flower strategy** wraps ``Server.step(updates, client_lr) -> StepRecord``: its
  ``aggregate_fit`` turns the fit results into ``ClientUpdate``s over
  ``server.layout`` and calls the one step; ``configure_fit`` sends
  ``server.state`` and the client runs ``client_start`` → trainer → ``client_upload``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from .client import GlobalState, LocalTrainer
from .data import ImageDataset
from .evaluation import evaluate
from .registry import Registry
from .updates import ClientUpdate, LocalTraining, UpdateKind
from .vectors import ParameterLayout, model_to_vector, vector_to_model


@dataclass
class ClientState:
    """What one client keeps between rounds; client-side only, never sent to the server.

    ``initial`` is the full model the federation started from (a public
    initialisation), from which a protocol creates private parameters lazily.
    ``values`` is the protocol's own store (private parameters, momentum buffers).
    """

    client_id: int
    initial: GlobalState
    values: dict[str, Tensor] = field(default_factory=dict)


TestSets = ImageDataset | Mapping[int, ImageDataset]


@dataclass
class Evaluation:
    """Test accuracy and loss of what the protocol evaluates, plus per-client details."""

    accuracy: float
    loss: float
    info: dict[str, Any] = field(default_factory=dict)


class FLProtocol:
    """FedSGD/FedAvg: the whole model is shared, a client keeps nothing, the global model
    is evaluated. Subclasses override the rules that differ (see the module docstring)."""

    name = "fedavg"
    #: The upload is the trainer's whole-model update (what inversion attacks observe).
    upload_is_update = True
    #: The trainer records the private parameters of each upload (``PrivateData.parameters``):
    #: an inversion attack optimises them beside the images (HyperFL).
    records_private_parameters = False

    # -- what the server holds ------------------------------------------------------
    def server_model(self, model: nn.Module, seed: int | None = None) -> nn.Module:
        """The server's model for the network ``model`` (drawing any new parameters from ``seed``)."""
        return model

    def client_model(self, model: nn.Module, kept: ClientState, worker: nn.Module | None = None) -> nn.Module:
        """The network client ``kept.client_id`` evaluates: the global ``model`` here; a
        personalised protocol loads the client's own into ``worker`` (a copy of ``model``)."""
        return model

    # -- what is shared -------------------------------------------------------------
    def shared_layout(self, model: nn.Module) -> ParameterLayout:
        """Layout of the uploaded vector; a subclass may remember ``model``'s architecture here."""
        return ParameterLayout.of(model)

    def read_shared(self, model: nn.Module) -> Tensor:
        return model_to_vector(model)

    def write_shared(self, vector: Tensor, model: nn.Module) -> None:
        vector_to_model(vector, model)

    # -- client side ----------------------------------------------------------------
    def client_start(self, state: GlobalState, kept: ClientState) -> GlobalState:
        """The full-model state the client's trainer starts from."""
        return state

    def client_upload(self, update: ClientUpdate, start: GlobalState, kept: ClientState,
                      training: LocalTraining) -> ClientUpdate:
        """The upload made from the trainer's full-model ``update``; may update ``kept``."""
        return update

    # -- server side ----------------------------------------------------------------
    def fold(self, params: Tensor, aggregate: Tensor, kind: UpdateKind, server_lr: float,
             client_lr: float) -> Tensor:
        """New global shared parameters: FedSGD w − server_lr·lr·agg, FedAvg w + server_lr·agg."""
        scale = -server_lr * client_lr if kind == "gradient" else server_lr
        return params + scale * aggregate

    # -- who trains -----------------------------------------------------------------
    def local_trainer(self, trainer: LocalTrainer) -> LocalTrainer:
        """The trainer clients run: ``trainer`` unless the protocol owns the local round."""
        return trainer

    # -- evaluation -----------------------------------------------------------------
    def evaluate(self, model: nn.Module, states: Mapping[int, ClientState], test_set: TestSets,
                 batch_size: int) -> Evaluation:
        """The global model on the test set, or on every client's local split (mean over
        clients); ``states`` is for personalised protocols."""
        if isinstance(test_set, ImageDataset):
            return Evaluation(*evaluate(model, test_set, batch_size))
        return per_client_evaluation({cid: (lambda: model) for cid in test_set}, test_set, batch_size)


class FedAvgProtocol(FLProtocol):
    """FedSGD/FedAvg (McMahan et al. 2017): the default protocol."""


class ClientMomentum(FLProtocol):
    """Client-side momentum kept across rounds (MoNNA, Farhadkhani et al. 2022, Alg. 1).

    Each client uploads ``m_t = β·m_{t−1} + (1 − β)·u_t`` with ``m_0 = 0``, where ``u_t``
    is its round-``t`` update (FedSGD gradient or FedAvg delta) and ``m`` persists in
    its ``ClientState`` between the rounds it is sampled in; the server folds the
    aggregate of momentums as it would the updates; the op order is the reference
    code's (EPFL ByzFL / MoNNA clients: ``m.mul_(β).add_(g, alpha=1 − β)`` from
    ``m = 0``). β = 0 is plain FedSGD/FedAvg, bit for bit. The robust part of MoNNA
    (nearest-neighbour mixing before a robust mean) is the aggregator's.
    """

    name = "client_momentum"
    upload_is_update = False  # the upload mixes earlier rounds' updates

    def __init__(self, beta: float = 0.9) -> None:
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 <= beta < 1:
            raise ValueError(f"client_momentum: beta must be a number in [0, 1), got {beta!r}")
        self.beta = float(beta)

    def client_upload(self, update: ClientUpdate, start: GlobalState, kept: ClientState,
                      training: LocalTraining) -> ClientUpdate:
        u = update.vector
        prev = kept.values.get("momentum")
        # add(alpha=) rounds once; with β = 0 it returns u exactly (0·m + 1·u).
        m = torch.mul(u, 1 - self.beta) if prev is None else torch.add(prev.mul(self.beta), u, alpha=1 - self.beta)
        kept.values["momentum"] = m.clone()  # a transform may change the upload in place
        return replace(update, vector=m, metadata={**update.metadata, "client_momentum": self.beta})


class FedPer(FLProtocol):
    """Personalisation layers (FedPer, Arivazhagan et al. 2019): the clients share the
    base layers; the parameters named by ``private`` (prefixes, e.g. the head) stay on
    each client, start from the common initialisation and persist across rounds.

    The server aggregates and updates only the base; each client evaluates its own
    model (shared base + its head). Buffers (BatchNorm statistics) are averaged as in
    FedAvg. With FedSGD the client steps its head itself (w − lr·g). One instance
    serves one federation: ``shared_layout`` remembers the model's architecture.
    """

    name = "fedper"
    upload_is_update = False  # the head stays private: the upload is part of the model

    def __init__(self, private: Collection[str] = ("head",)) -> None:
        if isinstance(private, str) or not private:
            raise ValueError(f"fedper: private must be a non-empty collection of name prefixes, got {private!r}")
        self.private = tuple(private)
        self._shared: Tensor | None = None
        self._kept: Tensor | None = None
        self._full: ParameterLayout | None = None

    def _is_private(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.private)

    def shared_layout(self, model: nn.Module) -> ParameterLayout:
        full = ParameterLayout.of(model)
        private = [n for n in full.names if self._is_private(n)]
        unmatched = [p for p in self.private if not any(n == p or n.startswith(p + ".") for n in private)]
        if unmatched:
            raise ValueError(f"fedper: no trainable parameters under {unmatched}; the model's are {list(full.names)}")
        shared = ParameterLayout.of(model, [n for n in full.names if n not in private])
        if shared.dim == 0:
            raise ValueError("fedper: every parameter is private; nothing would be shared")
        device = next(model.parameters()).device
        self._full = full
        self._shared = shared.index_in(full).to(device)
        self._kept = ParameterLayout.of(model, private).index_in(full).to(device)
        return shared

    def _indices(self) -> tuple[Tensor, Tensor]:
        if self._shared is None or self._kept is None:
            raise RuntimeError("fedper: shared_layout(model) must be called first (Server does)")
        return self._shared, self._kept

    def read_shared(self, model: nn.Module) -> Tensor:
        return model_to_vector(model)[self._indices()[0]]

    def write_shared(self, vector: Tensor, model: nn.Module) -> None:
        full = model_to_vector(model)
        full[self._indices()[0]] = vector
        vector_to_model(full, model)

    def head(self, kept: ClientState) -> Tensor:
        """The client's private parameters (the common initialisation until it trains)."""
        if "private" not in kept.values:
            kept.values["private"] = kept.initial.params[self._indices()[1]].clone()
        return kept.values["private"]

    def client_start(self, state: GlobalState, kept: ClientState) -> GlobalState:
        shared, private = self._indices()
        full = torch.empty(shared.numel() + private.numel(), dtype=state.params.dtype, device=state.params.device)
        full[shared] = state.params
        full[private] = self.head(kept)
        return GlobalState(full, state.buffers)

    def client_upload(self, update: ClientUpdate, start: GlobalState, kept: ClientState,
                      training: LocalTraining) -> ClientUpdate:
        shared, private = self._indices()
        step = update.vector[private]
        alpha = 1.0 if update.kind == "delta" else -training.lr
        kept.values["private"] = torch.add(start.params[private], step, alpha=alpha)
        return replace(update, vector=update.vector[shared])

    def evaluate(self, model: nn.Module, states: Mapping[int, ClientState], test_set: TestSets,
                 batch_size: int) -> Evaluation:
        """Each client that has trained, with its personalised model (global base + its head),
        on the test set or on its own split when ``test_set`` maps client ids to splits
        (clients without a split, or not yet trained, are skipped); the mean over clients is
        reported, per-client in ``client_accuracy``."""
        ids = sorted(states) if isinstance(test_set, ImageDataset) else sorted(set(states) & set(test_set))
        if not ids:
            return super().evaluate(model, states, test_set, batch_size)
        worker = copy.deepcopy(model)
        splits = {cid: test_set for cid in ids} if isinstance(test_set, ImageDataset) else test_set
        return per_client_evaluation({cid: (lambda cid=cid: self.client_model(model, states[cid], worker))
                                      for cid in ids}, splits, batch_size)

    def client_model(self, model: nn.Module, kept: ClientState, worker: nn.Module | None = None) -> nn.Module:
        """The global base with the client's private parameters, in ``worker`` (a new copy of
        ``model`` when not given)."""
        worker = copy.deepcopy(model) if worker is None else worker
        vector_to_model(self.client_start(GlobalState(self.read_shared(model)), kept).params, worker)
        return worker


def per_client_evaluation(models: Mapping[int, Callable[[], nn.Module]], test_sets: Mapping[int, ImageDataset],
                          batch_size: int) -> Evaluation:
    """Client ``cid``'s model (``models[cid]()``, built when needed) on ``test_sets[cid]``; the
    unweighted mean over clients, per-client accuracies in ``info["client_accuracy"]``."""
    missing = sorted(set(models) - set(test_sets))
    if missing:
        raise KeyError(f"no local test split for clients {missing}")
    per_client: dict[int, float] = {}
    losses: list[float] = []
    for cid in sorted(models):
        acc, loss = evaluate(models[cid](), test_sets[cid], batch_size)
        per_client[cid] = acc
        losses.append(loss)
    accs = list(per_client.values())
    return Evaluation(sum(accs) / len(accs), sum(losses) / len(losses), {"client_accuracy": per_client})


def invertible(protocol: FLProtocol | type[FLProtocol]) -> bool:
    """Whether an inversion attack handles the protocol's uploads: the whole-model update, or
    a shared part whose private parameters the trainer records (the attack's unknowns)."""
    return bool(protocol.upload_is_update or protocol.records_private_parameters)


PROTOCOLS: Registry[type[FLProtocol]] = Registry("protocol")
PROTOCOLS.add("fedavg", FedAvgProtocol, "FedSGD/FedAvg: whole model shared, nothing kept (the default)")
PROTOCOLS.add("client_momentum", ClientMomentum, "MoNNA-style client momentum m = βm + (1−β)u kept across rounds")
PROTOCOLS.add("fedper", FedPer, "FedPer: base layers shared, personalisation layers (head) kept per client")
