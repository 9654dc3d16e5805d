"""A differentiable re-enactment of the client: candidate batch → the update it would upload.

``ClientSimulator(model, training, mode)(x, targets)`` returns the flat update vector
(``ParameterLayout`` order, like ``ClientUpdate.vector``) as a differentiable function
of the candidate images ``x`` (and of soft labels, when those are optimised):

- FedSGD: ``∇_w CE(f_w(x), y)`` by ``torch.autograd.grad(..., create_graph=True)``.
- FedAvg: the local steps unrolled with ``torch.func.functional_call`` on the flat
  parameter vector (``ParameterLayout.unflatten`` gives the views), SGD (momentum,
  weight decay, as ``torch.optim.SGD``) or Adam (as ``torch.optim.Adam``) written out
  functionally, and ``w_K − w_0`` returned (IG paper section 5, "multiple local
  steps"; inversefed ``loss_steps``).

Batches of the unrolled epochs are consecutive slices of the candidate batch (the
client's ``batch_schedule`` with the shuffle taken out): the candidate order is itself
free, so the first epoch loses nothing; later epochs reshuffle on the client and the
attacker cannot know how, which is an approximation of every unrolling attack.

The targets are hard labels ``[B]`` (int64) or class probabilities ``[B, K]`` (DLG's
softmaxed dummy labels): ``F.cross_entropy`` — the honest client's loss — takes both.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fl_core.local_step import optimizer_step
from fl_core.updates import LocalTraining
from fl_core.vectors import ParameterLayout, model_to_vector

from .base import ModelMode


class ClientSimulator:
    """Maps a candidate batch to the flat update vector the client would have uploaded.

    Works on a private copy of ``model`` (BatchNorm in train mode updates running
    statistics, which must not touch the observation's model).
    """

    def __init__(self, model: nn.Module, training: LocalTraining, mode: ModelMode) -> None:
        self.model = copy.deepcopy(model)
        self.model.train(mode == "train")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.mode = mode
        self.training = training
        self.layout = ParameterLayout.of(model)
        # A leaf that requires grad, so autograd can differentiate the loss w.r.t. it;
        # it never receives .grad (only torch.autograd.grad is used on it).
        self.w0 = model_to_vector(model).requires_grad_(True)
        self.frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.buffers = dict(self.model.named_buffers())

    @property
    def algorithm(self) -> str:
        return self.training.algorithm

    def __call__(self, x: Tensor, targets: Tensor, create_graph: bool = True, functional: bool = False) -> Tensor:
        """The simulated update. ``functional=True`` differentiates with ``torch.func.grad``
        instead of ``torch.autograd.grad``, so the call can run under ``torch.func.vmap``."""
        if self.training.algorithm == "fedsgd":
            return self._grad(self.w0, x, targets, create_graph, functional)
        t = self.training
        w = self.w0
        step_state: dict[str, Tensor] = {}
        for step, idx in enumerate(unrolled_batches(x.shape[0], t), start=1):
            g = self._grad(w, x[idx], targets[idx], create_graph, functional)
            w = optimizer_step(w, g, t, step, step_state)
            if not create_graph and not functional:  # plain evaluation: restart the graph
                w = w.detach().requires_grad_(True)
        return w - self.w0

    def forward(self, w: Tensor, x: Tensor) -> Tensor:
        """The model's output with flat parameters ``w`` (differentiable in ``w`` and ``x``)."""
        state = {**self.layout.unflatten(w), **self.frozen, **self.buffers}
        return functional_call(self.model, state, (x,))

    def _grad(self, w: Tensor, x: Tensor, targets: Tensor, create_graph: bool, functional: bool) -> Tensor:
        if functional:
            return torch.func.grad(lambda v: F.cross_entropy(self.forward(v, x), targets))(w)
        (g,) = torch.autograd.grad(F.cross_entropy(self.forward(w, x), targets), w, create_graph=create_graph)
        return g


def unrolled_batches(n: int, training: LocalTraining) -> list[slice]:
    """Batches of the unrolled local training: consecutive slices, ``epochs`` passes or
    exactly ``steps`` batches (a pass's last batch may be smaller, as on the client)."""
    per_pass = [slice(s, min(s + training.batch_size, n)) for s in range(0, n, training.batch_size)]
    if training.steps is None:
        return per_pass * training.epochs
    reps = math.ceil(training.steps / len(per_pass))
    return (per_pass * reps)[: training.steps]
