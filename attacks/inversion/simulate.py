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

The unknown parts of the client's model enter as two optional arguments (see
``variables``): ``masks`` ``{site: [mask per local step]}`` are replayed into the
model's dropout sites by ``fedarena.fl_core.models.dropout.dropout_masks(given=...)`` (one
forward per local step, so the ``k``-th mask of a site is used in step ``k``; only in
train mode, where dropout is active), and ``params`` ``{name: tensor}`` replace named
parameters of the model as ``functional_call`` state overrides.

FedSGD without private parameters (the common case, one call per attack iteration) skips
``functional_call`` and the flat vector: the private copy's own trainable parameters are the
leaves (they hold ``w0``'s values), the model is called as it is, and the per-parameter
gradients are joined by one ``torch.cat`` in layout order. That is the same arithmetic as
differentiating through the views of ``w0`` (whose backward is that concatenation), without
the per-call state-dict swap, split and view ops and their backward; the attack outputs are
bit-identical (issue 16's speed bound: a generator-prior iteration on LeNet is a few ms, and
this overhead was a tenth of it).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fedarena.fl_core.client import min_batch_size, pass_bounds
from fedarena.fl_core.local_step import optimizer_step
from fedarena.fl_core.models.dropout import dropout_masks
from fedarena.fl_core.updates import LocalTraining
from fedarena.fl_core.vectors import ParameterLayout, model_to_vector

from .base import ModelMode


class ClientSimulator:
    """Maps a candidate batch to the flat update vector the client would have uploaded.

    Works on a private copy of ``model`` (BatchNorm in train mode updates running
    statistics, which must not touch the observation's model). The copy's trainable
    parameters (the layout's) require grad: they are the leaves of the direct FedSGD path
    (module docstring); every other path overrides them through ``functional_call``. They
    never receive ``.grad`` (only ``torch.autograd.grad`` is used on them).
    """

    def __init__(self, model: nn.Module, training: LocalTraining, mode: ModelMode) -> None:
        self.model = copy.deepcopy(model)
        self.model.train(mode == "train")
        self.mode = mode
        self.training = training
        self.layout = ParameterLayout.of(model)
        own = dict(self.model.named_parameters())
        for p in own.values():
            p.requires_grad_(False)
        #: the copy's trainable parameters in layout order (the direct FedSGD path's leaves)
        self.leaves = [own[n].requires_grad_(True) for n in self.layout.names]
        # A leaf that requires grad, so autograd can differentiate the loss w.r.t. it;
        # it never receives .grad (only torch.autograd.grad is used on it).
        self.w0 = model_to_vector(model).requires_grad_(True)
        self.frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.buffers = dict(self.model.named_buffers())
        self._min_batch: dict[tuple[int, ...], int] = {}
        #: where the dropout sites draw masks that are not given (train mode): None = torch's
        #: global RNG (plain ``nn.Dropout``); a generator = fresh masks from the attacker's own
        #: seeded stream on every forward (Inverting Gradients with random masks)
        self.generator: torch.Generator | None = None

    def min_batch(self, x: Tensor) -> int:
        """The client's smallest local batch for inputs shaped like ``x``
        (``fedarena.fl_core.client.min_batch_size``), found once per input shape."""
        shape = tuple(x.shape[1:])
        if shape not in self._min_batch:
            example = torch.zeros(1, *shape, device=self.w0.device, dtype=self.w0.dtype)
            self._min_batch[shape] = min_batch_size(self.model, replace(self.training, model_mode=self.mode), example)
        return self._min_batch[shape]

    @property
    def algorithm(self) -> str:
        return self.training.algorithm

    def __call__(self, x: Tensor, targets: Tensor, create_graph: bool = True, functional: bool = False,
                 masks: Mapping[str, Sequence[Tensor]] | None = None,
                 params: Mapping[str, Tensor] | None = None) -> Tensor:
        """The simulated update. ``functional=True`` differentiates with ``torch.func.grad``
        instead of ``torch.autograd.grad``, so the call can run under ``torch.func.vmap``.
        ``masks``/``params``: the client's dropout masks and private parameters (see the
        module docstring); None leaves the model as observed."""
        if params:
            self._check_params(params)
        context = (nullcontext() if masks is None and self.generator is None
                   else dropout_masks(self.model, generator=self.generator, given=masks))
        with context:
            if self.training.algorithm == "fedsgd":
                if not functional and not params:
                    return self._direct_grad(x, targets, create_graph)
                return self._grad(self.w0, x, targets, create_graph, functional, params)
            t = self.training
            w = self.w0
            step_state: dict[str, Tensor] = {}
            for step, idx in enumerate(unrolled_batches(x.shape[0], t, self.min_batch(x)), start=1):
                g = self._grad(w, x[idx], targets[idx], create_graph, functional, params)
                w = optimizer_step(w, g, t, step, step_state)
                if not create_graph and not functional:  # plain evaluation: restart the graph
                    w = w.detach().requires_grad_(True)
            return w - self.w0

    def mask_shapes(self, x: Tensor, targets: Tensor) -> dict[str, torch.Size]:
        """``{site: [steps, *mask]}``: the shape of each active dropout site's masks for a
        candidate batch shaped like ``x`` (one simulated run with throw-away masks from a
        private generator), i.e. the shape of a ``mask.<site>`` variable. Empty in eval mode."""
        generator = torch.Generator(device=x.device).manual_seed(0)
        with dropout_masks(self.model, generator=generator, record=True) as seen:
            self(x.detach(), targets.detach(), create_graph=False)
        shapes: dict[str, torch.Size] = {}
        for site, masks in seen.items():
            if len({m.shape for m in masks}) > 1:
                raise ValueError(f"dropout site {site!r} sees batches of different sizes over the local steps "
                                 f"({sorted({tuple(m.shape) for m in masks})}); its masks cannot be one variable")
            shapes[site] = torch.Size([len(masks), *masks[0].shape])
        return shapes

    def forward(self, w: Tensor, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """The model's output with flat parameters ``w`` (differentiable in ``w`` and ``x``),
        named parameters overridden by ``params``."""
        state = {**self.layout.unflatten(w), **self.frozen, **self.buffers}
        if params:
            state.update(params)
        return functional_call(self.model, state, (x,))

    def _check_params(self, params: Mapping[str, Tensor]) -> None:
        known = dict(self.model.named_parameters())
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"private parameters {unknown} are not parameters of the model; "
                             f"its parameters are {list(known)}")
        for name, value in params.items():
            if value.shape != known[name].shape:
                raise ValueError(f"private parameter {name!r} has shape {tuple(value.shape)}, "
                                 f"the model's has {tuple(known[name].shape)}")

    def _grad(self, w: Tensor, x: Tensor, targets: Tensor, create_graph: bool, functional: bool,
              params: Mapping[str, Tensor] | None = None) -> Tensor:
        if functional:
            return torch.func.grad(lambda v: F.cross_entropy(self.forward(v, x, params), targets))(w)
        loss = F.cross_entropy(self.forward(w, x, params), targets)
        (g,) = torch.autograd.grad(loss, w, create_graph=create_graph)
        return g

    def _direct_grad(self, x: Tensor, targets: Tensor, create_graph: bool) -> Tensor:
        """``_grad(w0, ...)`` by the model's own parameters (module docstring): a parameter the
        loss does not reach gets zeros, as the flat vector's split backward gives it."""
        loss = F.cross_entropy(self.model(x), targets)
        grads = torch.autograd.grad(loss, self.leaves, create_graph=create_graph, allow_unused=True,
                                    materialize_grads=True)
        return torch.cat([g.reshape(-1) for g in grads])


def unrolled_batches(n: int, training: LocalTraining, min_batch: int = 1) -> list[slice]:
    """Batches of the unrolled local training: consecutive slices, ``epochs`` passes or
    exactly ``steps`` batches, cut by the client's own rule (``fedarena.fl_core.client.pass_bounds``:
    a pass's last batch may be smaller, and is merged into the one before it when smaller
    than ``min_batch``, as for BatchNorm in train mode)."""
    per_pass = [slice(a, b) for a, b in pass_bounds(n, training.batch_size, min_batch)]
    if training.steps is None:
        return per_pass * training.epochs
    reps = math.ceil(training.steps / len(per_pass))
    return (per_pass * reps)[: training.steps]
