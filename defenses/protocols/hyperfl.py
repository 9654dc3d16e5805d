"""HyperFL (Guo et al., "A New Federated Learning Framework Against Gradient Inversion
Attacks", AAAI 2025) as a protocol on the seam (``fedarena.fl_core.protocol``).

Each client holds a private embedding ``e`` (dim 64) and a private classifier head; a
shared hypernetwork ``H`` (an MLP ``e -> ReLU(Linear(64, 128))`` and one linear head per
generated tensor) turns the embedding into the target network's feature-extractor
weights. Only ``H``'s parameters leave a client (its FedAvg delta); the server averages
them weighted by sample count (any FedArena aggregator acts on the ``[n, d]`` stack of
hypernetwork deltas). Evaluation is personalised: each client's own network (generated
extractor + its head) on its own test split.

Facts from the reference code (Pengxin-Guo/HyperFL, read for facts only):

- ``models.py``: ``Hypernetwork_CifarCNN`` / ``Hypernetwork_CNN_FMNIST``: ``mlp =
  Linear(embed_dim, hidden_dim) + ReLU``, then one ``Linear(hidden_dim, numel)`` per
  feature-extractor tensor (conv1/2(/3) weight and bias, fc1 weight and bias), viewed to
  the tensor's shape; the client embedding is ``nn.Embedding(1, embed_dim)`` (N(0, 1)
  init); ``fc2`` (the head) is the target network's own parameter. The target networks
  are FedPAC's ``CifarCNN`` (conv 3→16 k5, 16→32 k5 p1, 32→64 k3 p1, max-pool 2 after
  each, fc1 576→128, fc2 128→classes, leaky ReLU) and ``CNN_FMNIST`` (conv 1→16 k5,
  16→32 k5 p1, fc1 800→128, fc2): ``ReferenceCNN`` below.
- ``hyperfl.py`` ``LocalUpdate_HyperFL.local_training``: first the head alone, 1 epoch of
  SGD (lr ``lr_g`` = 0.1, momentum 0.5, weight decay 5e-4); then hypernetwork and
  embedding together, ``local_epoch`` (5) epochs of one SGD (lr 0.02, momentum 0.5,
  weight decay 5e-4) whose gradients are the chain rule through the generated weights
  (``autograd.grad(weights, H.parameters(), grad_outputs=dL/dweights)``), each of the
  two gradient groups clipped to norm 50 (``clip_grad_norm_``) before the step; both
  optimisers are created afresh each round; the hypernetwork's state dict is returned.

Here the chain is one autograd pass through ``torch.func.functional_call`` of the target
network with the generated parameters (the same derivative), and the steps are the
reference's ``torch.optim.SGD`` and ``clip_grad_norm_``, in place (``optimizer_step``,
their functional twin, would copy the ~15M-parameter hypernetwork several times a step).
Speed (profiled on one Fashion-MNIST client, 600 images, 1 thread): a step is memory-bound
on the heads' ~60 MB of weights, and fresh ~60 MB tensors cost more than the arithmetic
(page faults on first touch: alloc + fill 28 ms against 3.5 ms for a reused buffer). So
autograd runs with the heads' weights detached (``HyperNetwork.from_features``) and their
gradients, rank one (``g ⊗ h``: one product per entry, the same bits), are written into
buffers reused over the round (``_HeadGradients``), and the weight decay is added to them
in place (``_decay_``) instead of torch's out-of-place copy; the protocol moves the shared
block by slices, not index gathers. Same numbers bit for bit (tested against the plain
round); one client round 11.7 s → 6.8 s on the loaded 2-core machine (4.7 s when quieter).
Sizes (``hyperfl_sizes``; tested): the CIFAR-10 CNN has 107,690 parameters, of which
106,400 are generated, so the hypernetwork has 129·106,400 + 8,320 = 13,733,920, i.e. an
upload 127.5× FedAvg's; the Fashion-MNIST CNN has 117,066 (115,776 generated), a
14,943,424-parameter hypernetwork, 127.6× FedAvg's upload.

For attacks: a HyperFL client's observation is its hypernetwork update (the upload). The
trainer records the embedding and head the upload was made with (``PrivateData.parameters``),
so ``make_observation`` hands the attacker the server's ``HyperFLNet`` with those frozen and
named (``Observation.private_names``); the unchanged attacks optimise them as
``param.<name>`` overrides of that network, whose own forward is the differentiable chain
(or take them from the ``embedding_known`` / ``head_known`` oracle grants). Nothing in
``attacks`` imports this module. ``target_parameters(net, hypernetwork, embedding, head)``
builds the target network's full parameter vector from the same three pieces, for code
that wants the target's flat vector (``functional_call(net.target, ...)``).

With DP-SGD on the client (a ``DPSGD`` trainer, the ``dp_sgd`` defense) the same round runs
on DP-SGD steps, embedding and head included: ``hyperfl_dp.PrivateHyperFLRound``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fedarena.defenses.privacy.dp_sgd import DPSGD
from fedarena.fl_core.client import (
    GlobalState,
    LocalTrainer,
    LossFn,
    batch_schedule,
    first_use_order,
    load_state,
    train_client,
)
from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.protocol import ClientState, FedPer
from fedarena.fl_core.seeding import derive_seed
from fedarena.fl_core.updates import ClientUpdate, LocalTraining, PrivateData
from fedarena.fl_core.vectors import ParameterLayout, buffers_to_vector, model_to_vector, vector_to_model

#: The reference's hypernetwork-phase schedule (its head phase is ``HyperFL``'s defaults).
#: Batch size 50 is FedPAC's ``local_bs`` default, on whose code HyperFL builds.
REFERENCE_TRAINING = LocalTraining(algorithm="fedavg", lr=0.02, epochs=5, batch_size=50, optimizer="sgd",
                                   momentum=0.5, weight_decay=5e-4)


class ReferenceCNN(nn.Module):
    """HyperFL's target networks (FedPAC's ``CifarCNN`` for 3-channel input, ``CNN_FMNIST``
    for 1-channel): convs with max-pool 2 and leaky ReLU, ``fc1`` → 128, head ``fc2``."""

    def __init__(self, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> None:
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        self.num_classes, self.input_shape = int(num_classes), (c, h, w)
        # (out channels, kernel, padding): CifarCNN for RGB, CNN_FMNIST otherwise
        spec = [(16, 5, 0), (32, 5, 1), (64, 3, 1)] if c == 3 else [(16, 5, 0), (32, 5, 1)]
        self.num_convs = len(spec)
        channels = c
        for i, (out, k, pad) in enumerate(spec, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(channels, out, k, padding=pad))
            channels, h, w = out, (h - k + 2 * pad + 1) // 2, (w - k + 2 * pad + 1) // 2
        if h < 1 or w < 1:
            raise ValueError(f"ReferenceCNN: input {input_shape} is too small for {len(spec)} conv/pool stages")
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(channels * h * w, 128)
        self.fc2 = nn.Linear(128, self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(1, self.num_convs + 1):
            x = self.pool(F.leaky_relu(getattr(self, f"conv{i}")(x)))
        return self.fc2(F.leaky_relu(self.fc1(x.flatten(1))))


class HyperNetwork(nn.Module):
    """``e ↦ {name: Linear_name(ReLU(Linear(e)))·view(shape)}``: one linear head per generated tensor."""

    def __init__(self, shapes: Mapping[str, torch.Size], embedding_dim: int = 64, hidden_dim: int = 128) -> None:
        super().__init__()
        if not shapes:
            raise ValueError("HyperNetwork: no tensors to generate")
        self.names = tuple(shapes)
        self.shapes = tuple(torch.Size(s) for s in shapes.values())
        self.mlp = nn.Sequential(nn.Linear(embedding_dim, hidden_dim), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden_dim, math.prod(s)) for s in self.shapes)

    def forward(self, embedding: Tensor) -> dict[str, Tensor]:
        return self.from_features(self.mlp(embedding))

    def from_features(self, features: Tensor, fixed_heads: bool = False) -> dict[str, Tensor]:
        """The generated tensors from the MLP's output; with ``fixed_heads`` the heads'
        parameters enter detached (the same values: autograd then skips their gradients,
        which ``head_gradients`` forms from the outputs' gradients instead)."""
        if not fixed_heads:
            return {n: head(features).view(s) for n, head, s in zip(self.names, self.heads, self.shapes, strict=True)}
        return {n: F.linear(features, head.weight.detach(), head.bias.detach()).view(s)
                for n, head, s in zip(self.names, self.heads, self.shapes, strict=True)}


class HyperFLNet(nn.Module):
    """A HyperFL client's network: ``hypernetwork`` (shared), ``embedding`` and the target's
    head (private), and the target network whose feature extractor is generated.

    The target's generated parameters stay as frozen placeholders (``requires_grad`` off,
    never read: ``forward`` substitutes the generated tensors), so the trainable
    parameters, in order, are ``hypernetwork.*``, ``embedding``, ``target.<head>.*``.
    """

    def __init__(self, target: nn.Module, head: str | None = None, embedding_dim: int = 64,
                 hidden_dim: int = 128) -> None:
        super().__init__()
        head = last_linear(target) if head is None else head
        named = [(n, p) for n, p in target.named_parameters() if p.requires_grad]
        self.head_prefix = head
        head_names = [n for n, _ in named if n == head or n.startswith(head + ".")]
        if not head_names:
            names = [n for n, _ in named]
            raise ValueError(f"HyperFLNet: the target has no parameters under {head!r}; it has {names}")
        generated = {n: p.shape for n, p in named if n not in head_names}
        if not generated:
            raise ValueError("HyperFLNet: every target parameter is in the head; nothing to generate")
        self.target_layout = ParameterLayout(tuple(n for n, _ in named), tuple(p.shape for _, p in named))
        self.head_names = tuple(head_names)
        self.hypernetwork = HyperNetwork(generated, embedding_dim, hidden_dim)
        self.embedding = nn.Parameter(torch.randn(embedding_dim))  # nn.Embedding's N(0, 1)
        self.target = target
        for n, p in named:
            if n in generated:
                p.requires_grad_(False)

    @property
    def generated_names(self) -> tuple[str, ...]:
        return self.hypernetwork.names

    def generate(self) -> dict[str, Tensor]:
        """The feature-extractor parameters for this network's embedding (differentiable)."""
        return self.hypernetwork(self.embedding)

    def forward(self, x: Tensor) -> Tensor:
        return functional_call(self.target, self.generate(), (x,))

    def head_parameters(self) -> list[nn.Parameter]:
        own = dict(self.target.named_parameters())
        return [own[n] for n in self.head_names]


def last_linear(target: nn.Module) -> str:
    """The name of ``target``'s last ``nn.Linear`` (registration order): its classifier head
    (``fc2`` of the reference CNNs, ``fc3`` of ``lenet5``, which also has an ``fc2``)."""
    names = [n for n, m in target.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"HyperFLNet: {type(target).__name__} has no nn.Linear layer to keep as the private "
                         "head; name the head's module with head=...")
    return names[-1]


def build_hyperfl_net(target: nn.Module, head: str | None = None, embedding_dim: int = 64, hidden_dim: int = 128,
                      seed: int | None = None) -> HyperFLNet:
    """``HyperFLNet`` with its hypernetwork and embedding drawn from ``(seed, "hyperfl")``
    (global RNG untouched) when ``seed`` is given."""
    if seed is None:
        return HyperFLNet(target, head, embedding_dim, hidden_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "hyperfl"))
        return HyperFLNet(target, head, embedding_dim, hidden_dim)


def target_parameters(net: HyperFLNet, hypernetwork: Tensor, embedding: Tensor, head: Tensor) -> Tensor:
    """The target network's full flat parameter vector (``net.target_layout`` order) from a
    flat hypernetwork vector, an embedding and a flat head (``net.head_names`` order);
    differentiable in all three. Use it with ``functional_call(net.target,
    net.target_layout.unflatten(vector), x)``."""
    hn_layout = ParameterLayout.of(net.hypernetwork)
    generated = functional_call(net.hypernetwork, hn_layout.unflatten(hypernetwork), (embedding,))
    head_layout = ParameterLayout(net.head_names, tuple(net.target_layout.shapes[net.target_layout.names.index(n)]
                                                        for n in net.head_names))
    return net.target_layout.flatten({**generated, **head_layout.unflatten(head)})


@dataclass(frozen=True)
class Sizes:
    """Parameter counts behind HyperFL's upload cost."""

    target: int
    generated: int
    head: int
    hypernetwork: int

    @property
    def upload_ratio(self) -> float:
        """HyperFL's upload (the hypernetwork) over FedAvg's (the whole target network)."""
        return self.hypernetwork / self.target


def hyperfl_sizes(net: HyperFLNet) -> Sizes:
    head = sum(p.numel() for p in net.head_parameters())
    generated = sum(math.prod(s) for s in net.hypernetwork.shapes)
    return Sizes(generated + head, generated, head, sum(p.numel() for p in net.hypernetwork.parameters()))


def _sgd(groups: list[list[nn.Parameter]], t: LocalTraining, weight_decay: float | None = None) -> torch.optim.SGD:
    """The reference's optimiser, created afresh each round (in place and foreach: the
    hypernetwork is ~128× the target network, so no flat copies per step). ``weight_decay=0``
    with ``_decay_`` before each step is the same step without torch's out-of-place copy."""
    return torch.optim.SGD([{"params": g} for g in groups], lr=t.lr, momentum=t.momentum,
                           weight_decay=t.weight_decay if weight_decay is None else weight_decay, foreach=True)


def _decay_(params: Sequence[nn.Parameter], weight_decay: float) -> None:
    """``torch.optim.SGD``'s weight decay (``_foreach_add(grads, params, alpha=wd)``, the same
    kernel, so the same bits) into the gradients in place: on the ~15M-parameter hypernetwork
    torch's fresh copy costs more (page faults on ~60 MB of new memory) than the arithmetic."""
    if weight_decay:
        with torch.no_grad():
            torch._foreach_add_([p.grad for p in params], list(params), alpha=weight_decay)


def _set_grads(params: Sequence[nn.Parameter], grads: Sequence[Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g


class _HeadGradients:
    """The hypernetwork heads' gradients, formed in buffers reused over a round's steps.

    A head ``W·h + b`` sees one feature vector ``h`` (the MLP's output for the client's
    embedding), so its weight gradient is the outer product ``g ⊗ h`` of its output's
    gradient ``g`` with ``h`` and its bias gradient is ``g``: what autograd computes (an
    ``mm`` with inner dimension one, one product per entry and no sum, so the same bits),
    without allocating the heads' ~60 MB of gradients anew at every step.
    """

    def __init__(self, hypernetwork: HyperNetwork) -> None:
        self.weights = [head.weight for head in hypernetwork.heads]
        self.biases = [head.bias for head in hypernetwork.heads]
        self.buffers = [torch.empty_like(w, memory_format=torch.contiguous_format) for w in self.weights]

    def assign(self, features: Tensor, output_grads: Sequence[Tensor]) -> None:
        """Set the heads' ``.grad`` from the generated tensors' gradients (``from_features`` order)."""
        h = features.detach()
        for w, b, buf, g in zip(self.weights, self.biases, self.buffers, output_grads, strict=True):
            w.grad = torch.outer(g.reshape(-1), h, out=buf)
            b.grad = g.reshape(-1)


class HyperFL(FedPer):
    """HyperFL: the hypernetwork is shared; the embedding and the head are kept per client.

    The server's model is a ``HyperFLNet``; the shared layout is ``hypernetwork.*``;
    ``embedding`` and ``target.<head>`` stay on each client, starting from the server
    model's initialisation (an assumption: the reference's driver, which would say how
    client models are initialised, was not available to check), so the upload is the
    hypernetwork delta and nothing else. The
    local round is the reference's two phases (module docstring), ``trainer``, which the
    simulation runs (``local_trainer``); ``FederationConfig.local = REFERENCE_TRAINING``
    is the hypernetwork phase; the head phase takes its own ``head_*`` settings and the
    batch size of ``training``. ``head``, ``embedding_dim``, ``hidden_dim`` shape the
    ``HyperFLNet`` that ``server_model`` builds around a target network (a suite names
    the target as its model); ``head`` defaults to the target's last linear layer
    (``last_linear``: ``fc2`` of the reference CNNs, ``fc3`` of ``lenet5``).

    Attacks: the trainer records the embedding and head each upload was made with
    (``PrivateData.parameters``, roles ``"embedding"`` and ``"head"``: the embedding of
    the round's start, the head after the head phase, i.e. the one the hypernetwork
    phase used), so ``make_observation`` names them as the attacker's unknowns. With
    ``algorithm="fedsgd"`` (FedArena's FedSGD variant for attack studies; the reference
    has none) a client uploads the gradient of one batch's loss w.r.t. the hypernetwork,
    at its embedding and head, and steps those itself (FedPer's rule, ``w − lr·g``).
    """

    name = "hyperfl"
    records_private_parameters = True

    def __init__(self, head_epochs: int = 1, head_lr: float = 0.1, head_momentum: float = 0.5,
                 head_weight_decay: float = 5e-4, clip_norm: float = 50.0, loss_fn: LossFn = F.cross_entropy,
                 head: str | None = None, embedding_dim: int = 64, hidden_dim: int = 128) -> None:
        super().__init__(private=("embedding", "target"))
        if embedding_dim < 1 or hidden_dim < 1:
            raise ValueError(f"hyperfl: embedding_dim and hidden_dim must be >= 1, got {embedding_dim}, {hidden_dim}")
        self.head_name, self.embedding_dim, self.hidden_dim = head, int(embedding_dim), int(hidden_dim)
        if head_epochs < 0:
            raise ValueError(f"hyperfl: head_epochs must be >= 0, got {head_epochs}")
        if not clip_norm > 0:
            raise ValueError(f"hyperfl: clip_norm must be > 0, got {clip_norm}")
        self.head_epochs = int(head_epochs)
        self.head_training = LocalTraining(lr=head_lr, momentum=head_momentum, weight_decay=head_weight_decay)
        self.clip_norm = float(clip_norm)
        self.loss_fn = loss_fn
        self._block: tuple[int, int] | None = None

    def server_model(self, model: nn.Module, seed: int | None = None) -> nn.Module:
        """A ``HyperFLNet`` whose target is ``model`` (its ``head`` parameters the private
        head; hypernetwork and embedding drawn from ``seed``); a ``HyperFLNet`` is kept."""
        if isinstance(model, HyperFLNet):
            return model
        return build_hyperfl_net(model, self.head_name, self.embedding_dim, self.hidden_dim, seed=seed)

    def shared_layout(self, model: nn.Module) -> ParameterLayout:
        if not isinstance(model, HyperFLNet):
            raise TypeError(f"hyperfl: the server's model must be a HyperFLNet, got {type(model).__name__}")
        layout = super().shared_layout(model)
        # the hypernetwork's parameters are one block of the full vector (after the embedding,
        # before the head): the moves below are slices, the same values as FedPer's gathers by
        # index without passes over a ~15M-entry index per client
        names = ParameterLayout.of(model).names
        start = names.index(layout.names[0])
        if names[start:start + len(layout.names)] != layout.names:
            raise RuntimeError(f"hyperfl: the hypernetwork's parameters must be consecutive in the model's: {names}")
        self._block = (sum(ParameterLayout.of(model, names[:start]).numels), layout.dim)
        return layout

    def _shared_block(self) -> tuple[int, int]:
        """``(offset, length)`` of the shared hypernetwork vector in the full one."""
        block = self._block
        if block is None:
            raise RuntimeError("hyperfl: shared_layout(model) must be called first (Server does)")
        return block

    def read_shared(self, model: nn.Module) -> Tensor:
        self._shared_block()
        return model_to_vector(model.hypernetwork)

    def write_shared(self, vector: Tensor, model: nn.Module) -> None:
        self._shared_block()
        vector_to_model(vector, model.hypernetwork)

    def client_start(self, state: GlobalState, kept: ClientState) -> GlobalState:
        a, _ = self._shared_block()
        private = self.head(kept)
        return GlobalState(torch.cat([private[:a], state.params, private[a:]]), state.buffers)

    def client_upload(self, update: ClientUpdate, start: GlobalState, kept: ClientState,
                      training: LocalTraining) -> ClientUpdate:
        a, d = self._shared_block()
        alpha = 1.0 if update.kind == "delta" else -training.lr
        kept.values["private"] = torch.add(torch.cat([start.params[:a], start.params[a + d:]]),
                                           torch.cat([update.vector[:a], update.vector[a + d:]]), alpha=alpha)
        return replace(update, vector=update.vector[a:a + d])

    def client_model(self, model: nn.Module, kept: ClientState, worker: nn.Module | None = None) -> nn.Module:
        """The global hypernetwork with the client's embedding and head, in ``worker`` (a new
        copy of ``model`` when not given), copied in place (no full-model vectors)."""
        self._shared_block()
        worker = copy.deepcopy(model) if worker is None else worker
        if not isinstance(worker, HyperFLNet) or not isinstance(model, HyperFLNet):
            raise TypeError(f"hyperfl: client_model needs HyperFLNets, got {type(model).__name__}, "
                            f"{type(worker).__name__}")
        private = [worker.embedding, *worker.head_parameters()]  # the full vector's order after the hypernetwork
        chunks = torch.split(self.head(kept), [p.numel() for p in private])
        with torch.no_grad():
            if worker is not model:
                torch._foreach_copy_(list(worker.hypernetwork.parameters()), list(model.hypernetwork.parameters()))
            torch._foreach_copy_(private, [c.view_as(p) for c, p in zip(chunks, private, strict=True)])
        return worker

    def local_trainer(self, trainer: LocalTrainer) -> LocalTrainer:
        """HyperFL owns the local round: the honest trainer gives its round, DP-SGD (a ``DPSGD``)
        the same round on DP-SGD steps (``hyperfl_dp.PrivateHyperFLRound``, accounted by that
        ``DPSGD``); any other trainer cannot be composed."""
        from .hyperfl_dp import PrivateHyperFLRound  # it builds on this module's steps

        if isinstance(trainer, DPSGD):
            return PrivateHyperFLRound(self, trainer)
        if trainer is not train_client and trainer != self.trainer:
            raise ValueError("hyperfl: the protocol owns the local round (head, then hypernetwork and "
                             f"embedding); it composes with the honest trainer and dp_sgd, not with trainer "
                             f"{getattr(trainer, '__name__', trainer)!r}")
        return self.trainer

    def trainer(self, model: nn.Module, state: GlobalState, client_id: int, data: ImageDataset,
                training: LocalTraining, generator: torch.Generator) -> tuple[ClientUpdate, PrivateData]:
        """The reference's local round on a ``HyperFLNet`` worker (a ``LocalTrainer``)."""
        if not isinstance(model, HyperFLNet):
            raise TypeError(f"hyperfl: the trainer needs a HyperFLNet, got {type(model).__name__}")
        if training.algorithm == "fedsgd":
            update, private = train_client(model, state, client_id, data, training, generator, self.loss_fn)
            return update, replace(private, parameters=self.private_parameters(model))
        if training.optimizer != "sgd":
            raise ValueError("hyperfl: the local round is the reference's SGD epochs; use optimizer='sgd' "
                             f"(got {training.optimizer!r})")
        load_state(model, state)
        model.train(training.model_mode == "train")
        inputs, labels = data.normalized(), data.labels
        head = model.head_parameters()
        shared = [*model.hypernetwork.parameters(), model.embedding]
        n_hyper = sum(p.numel() for p in shared[:-1])
        losses: list[float] = []
        used: list[Tensor] = []
        # phase 1: the head alone; the generated extractor is fixed meanwhile
        if self.head_epochs:
            head_cfg = LocalTraining(lr=self.head_training.lr, epochs=self.head_epochs,
                                     batch_size=training.batch_size, momentum=self.head_training.momentum,
                                     weight_decay=self.head_training.weight_decay)
            with torch.no_grad():
                generated = model.generate()
            opt = _sgd([head], head_cfg)
            batches = batch_schedule(len(data), head_cfg, generator)
            for idx in batches:
                loss = self.loss_fn(functional_call(model.target, generated, (inputs[idx],)), labels[idx])
                _set_grads(head, torch.autograd.grad(loss, head))
                opt.step()
                losses.append(loss.item())
            used.extend(batches)
        kept = self.private_parameters(model)  # what phase 2 runs with: the upload's private parameters
        # phase 2: hypernetwork and embedding through the generated weights, each group clipped
        # (the heads' gradients are formed by _HeadGradients, the weight decay added in place: the same steps)
        hyper = shared[:-1]
        hn = model.hypernetwork
        rest = [*hn.mlp.parameters(), model.embedding]
        heads = _HeadGradients(hn)
        opt = _sgd([hyper, [model.embedding]], training, weight_decay=0.0)
        batches = batch_schedule(len(data), training, generator)
        for idx in batches:
            features = hn.mlp(model.embedding)
            generated = hn.from_features(features, fixed_heads=True)
            loss = self.loss_fn(functional_call(model.target, generated, (inputs[idx],)), labels[idx])
            grads = torch.autograd.grad(loss, [*generated.values(), *rest])
            heads.assign(features, grads[:len(generated)])
            _set_grads(rest, grads[len(generated):])
            torch.nn.utils.clip_grad_norm_(hyper, self.clip_norm, foreach=True)
            torch.nn.utils.clip_grad_norm_([model.embedding], self.clip_norm)
            _decay_(shared, training.weight_decay)
            opt.step()
            losses.append(loss.item())
        used.extend(batches)
        for p in (*head, *shared):
            p.grad = None
        order = first_use_order(used, len(data))
        vector = model_to_vector(model) - state.params
        meta = {"loss": sum(losses) / len(losses), "steps": len(losses), "hypernetwork_params": n_hyper}
        update = ClientUpdate(client_id, vector, "delta", len(data), meta, buffers_to_vector(model))
        return update, PrivateData(inputs[order], labels[order], parameters=kept)

    @staticmethod
    def private_parameters(model: HyperFLNet) -> dict[str, dict[str, Tensor]]:
        """``{"embedding": {...}, "head": {...}}``: copies of the client's private parameters now."""
        head = dict(zip((f"target.{n}" for n in model.head_names), model.head_parameters(), strict=True))
        return {"embedding": {"embedding": model.embedding.detach().clone()},
                "head": {n: p.detach().clone() for n, p in head.items()}}
