"""Local training of one client for one round (DESIGN: ``LocalTraining``).

One worker model is reused for every client: loading the global vector into it is a
single copy, far cheaper than building a fresh model per client. FedAvg trains the
flat parameter vector with ``fedarena.fl_core.local_step.optimizer_step``, the same function
the attacker unrolls (gradient by autograd on the worker, one functional step, written
back), so the local step is written once. The update leaves as a flat vector; the
private data leaves separately, for the harness only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import ImageDataset
from .local_step import optimizer_step
from .updates import ClientUpdate, LocalTraining, PrivateData
from .vectors import buffers_to_vector, vector_to_buffers, vector_to_model

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Client:
    """A participant: its id, its local data and its ground-truth role.

    ``role`` (``"honest"``, ``"unreliable"``, ``"sign_flip"``, …) is known only to the
    simulation and the harness, for scoring detection; the server never sees it.
    """

    client_id: int
    data: ImageDataset
    role: str = "honest"


@dataclass
class GlobalState:
    """The global model a round starts from: trainable parameters and float buffers."""

    params: Tensor
    buffers: Tensor | None = None


class LocalTrainer(Protocol):
    """Trains a client's copy of the global model; DP-SGD and other defenses swap it."""

    def __call__(
        self, model: nn.Module, state: GlobalState, client_id: int, data: ImageDataset,
        training: LocalTraining, generator: torch.Generator,
    ) -> tuple[ClientUpdate, PrivateData]: ...


def train_client(
    model: nn.Module,
    state: GlobalState,
    client_id: int,
    data: ImageDataset,
    training: LocalTraining,
    generator: torch.Generator,
    loss_fn: LossFn = F.cross_entropy,
) -> tuple[ClientUpdate, PrivateData]:
    """The honest client: FedSGD gradient or FedAvg delta, plus the data it used.

    ``model`` is a worker whose parameters are overwritten with ``state``. FedAvg's
    steps are ``optimizer_step`` on the flat vector: bit-identical to
    ``torch.optim.SGD/Adam(foreach=True)`` on the worker, except that a parameter the
    loss does not reach gets a zero gradient (torch would skip it).
    """
    load_state(model, state)
    model.train(training.model_mode == "train")
    fedsgd = training.algorithm == "fedsgd"
    # FedSGD normalises only its batch (elementwise: the same values), not the whole local set every round.
    inputs = data.normalization.normalize(data.images[:1]) if fedsgd else data.normalized()
    labels = data.labels
    min_batch = min_batch_size(model, training, inputs)
    if fedsgd:
        if min(len(data), training.batch_size) < min_batch:
            raise ValueError(f"client {client_id}: a FedSGD batch of {min(len(data), training.batch_size)} sample(s) "
                             "cannot train a BatchNorm model in train mode (it needs more than one sample per "
                             "batch); use a larger batch_size, eval mode or GroupNorm")
        idx = torch.randperm(len(data), generator=generator)[: training.batch_size]
        x, y = data.normalized(idx), labels[idx]
        params = [p for p in model.parameters() if p.requires_grad]
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, params)
        vector = torch.cat([g.reshape(-1) for g in grads])
        meta = {"loss": loss.item(), "steps": 1}
        private = PrivateData(x, y)
    else:
        batches = batch_schedule(len(data), training, generator, min_batch)
        params = [p for p in model.parameters() if p.requires_grad]
        w, opt_state = state.params, {}
        total = 0.0
        for step, idx in enumerate(batches, start=1):
            loss = loss_fn(model(inputs[idx]), labels[idx])
            grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
            w = optimizer_step(w, torch.cat([g.reshape(-1) for g in grads]), training, step, opt_state)
            vector_to_model(w, model)
            total += loss.item()
        vector = w - state.params
        used = first_use_order(batches, len(data))
        meta = {"loss": total / len(batches), "steps": len(batches)}
        private = PrivateData(inputs[used], labels[used])
    update = ClientUpdate(client_id, vector, training.kind, len(data) if training.algorithm == "fedavg"
                          else int(private.labels.shape[0]), meta, buffers_to_vector(model))
    return update, private


def load_state(model: nn.Module, state: GlobalState) -> None:
    """Write a full-model global state into ``model`` (trainable parameters, float buffers)."""
    vector_to_model(state.params, model)
    if state.buffers is not None:
        vector_to_buffers(state.buffers, model)


def make_optimizer(model: nn.Module, training: LocalTraining) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimiser ``training`` names, for trainers that need one (DP-SGD via
    Opacus); ``optimizer_step`` is its functional twin."""
    params = [p for p in model.parameters() if p.requires_grad]
    if training.optimizer == "sgd":
        return torch.optim.SGD(params, lr=training.lr, momentum=training.momentum,
                               weight_decay=training.weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=training.lr, weight_decay=training.weight_decay, foreach=True)


def batch_schedule(n: int, training: LocalTraining, generator: torch.Generator,
                   min_batch: int = 1) -> list[Tensor]:
    """Index batches for FedAvg: ``epochs`` shuffled passes, or exactly ``steps`` batches
    drawn from consecutive shuffled passes (the last batch of a pass may be smaller; see
    ``pass_bounds`` for ``min_batch``)."""
    if n == 0:
        raise ValueError("a client with no data cannot train")
    bounds = pass_bounds(n, training.batch_size, min_batch)
    batches: list[Tensor] = []
    epochs = training.epochs if training.steps is None else None
    while True:
        perm = torch.randperm(n, generator=generator)
        batches.extend(perm[a:b] for a, b in bounds)
        if epochs is not None:
            epochs -= 1
            if epochs == 0:
                return batches
        elif len(batches) >= training.steps:  # type: ignore[operator]
            return batches[: training.steps]


def pass_bounds(n: int, batch_size: int, min_batch: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch of one pass over ``n`` samples.

    The last batch holds the remainder. When it is smaller than ``min_batch`` (2 for a
    model that normalises by batch statistics in train mode: BatchNorm cannot normalise
    one sample) it is merged into the batch before it, so the pass has one batch fewer
    and one larger one; the client and the attacker's unrolled simulation
    (``fedarena.attacks.inversion.simulate.unrolled_batches``) both take their batches from here.
    """
    if n < min_batch:
        raise ValueError(f"{n} sample(s) cannot form a batch of at least {min_batch}: BatchNorm in train "
                         "mode needs more than one sample per batch (use eval mode, GroupNorm, or more data)")
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_batch:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def min_batch_size(model: nn.Module, training: LocalTraining, example: Tensor) -> int:
    """2 when ``model`` would normalise one value per channel by batch statistics while
    training — BatchNorm in train mode on a ``[1, C]`` or ``[1, C, 1, 1]`` input raises
    ("Expected more than 1 value per channel") — else 1.

    Found exactly by one eval-mode, no-grad forward of one ``example`` sample with hooks
    that read each BatchNorm layer's input shape (eval mode: the running statistics are
    not touched). BatchNorm over several spatial positions trains on a batch of one, so
    such models keep their batches as they were.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or training.model_mode != "train":
        return 1
    single: list[bool] = []

    def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        single.append(math.prod(args[0].shape[2:]) == 1)

    handles = [m.register_forward_pre_hook(hook) for m in bns]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2 if any(single) else 1


def first_use_order(batches: list[Tensor], n: int) -> Tensor:
    """Distinct sample indices in the order training first touched them."""
    order = torch.cat(batches)
    first = torch.full((n,), order.numel(), dtype=torch.long)
    first.scatter_reduce_(0, order, torch.arange(order.numel()), reduce="amin")
    used = (first < order.numel()).nonzero().squeeze(1)
    return used[torch.argsort(first[used])]
