"""One inversion problem built from an ``Observation``: what to match, how to simulate
the client, which labels to use, and the box the images live in.

Every optimisation attack (DLG, Inverting Gradients and its FedAvg form) builds one of
these and then only differs in its optimiser, so label recovery, the simulated client,
the matching loss and the priors exist once. The candidate is a set of named variables
(``variables``); the problem's ``parametrization`` maps them to the client's inputs,
targets, dropout masks and private parameters, and ``matching_of(variables)`` is the
loss of that candidate. ``matching(x, targets)`` is the shortcut for pixels + labels.

Everything lives on the device of ``observation.model``: the box, recovered labels and
the random inputs of the label estimate are moved there (drawn on CPU first, so CPU
numbers do not depend on the device).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from fedarena.fl_core.client import min_batch_size
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.threat import Observation
from fedarena.fl_core.vectors import ParameterLayout

from .base import Assumptions, ResolvedSetting, check_observation, resolve_setting
from .labels import LABEL_METHODS, last_layer, recover_labels
from .losses import GradientMatcher, MatchingLoss
from .priors import BNStatisticsPrior
from .simulate import ClientSimulator, unrolled_batches
from .variables import Parametrization

UpdateMode = Literal["auto", "unroll", "as_gradient"]
LabelChoice = Literal["auto", "optimize", "idlg", "yin", "llg", "bias"]
ProbEstimate = Literal["model", "uniform"]
UpdateTransform = Callable[[Tensor], Tensor]


@dataclass
class InversionProblem:
    """Everything an optimiser needs; ``objective`` is the gradient-matching loss."""

    observation: Observation
    setting: ResolvedSetting
    simulator: ClientSimulator
    matcher: GradientMatcher
    labels: Tensor | None
    label_method: str
    shape: tuple[int, ...]
    lower: Tensor
    upper: Tensor
    bn_prior: BNStatisticsPrior | None
    transform: UpdateTransform | None
    update_mode: str
    notes: list[str]
    parametrization: Parametrization = field(default_factory=Parametrization)

    @property
    def device(self) -> torch.device:
        return self.simulator.w0.device

    def matching(self, x: Tensor, targets: Tensor, functional: bool = False, create_graph: bool = True) -> Tensor:
        """Gradient-matching loss of candidate images ``x`` with ``targets`` (no other unknowns)."""
        update = self.simulator(x, targets, create_graph=create_graph, functional=functional)
        if self.transform is not None:
            update = self.transform(update)
        return self.matcher(update)

    def matching_of(self, variables: Mapping[str, Tensor], functional: bool = False, create_graph: bool = True,
                    hard_labels: bool = False, inputs: Tensor | None = None) -> Tensor:
        """Gradient-matching loss of the candidate the named ``variables`` stand for
        (``hard_labels``: soft labels replaced by their argmax; ``inputs``: the client's
        inputs when the caller already computed them from ``variables``)."""
        p = self.parametrization
        masks = p.masks(variables)
        if masks is not None and self.setting.model_mode != "train":
            raise ValueError(f"dropout masks {sorted(masks)} are optimised but the client's model runs in "
                             f"{self.setting.model_mode!r} mode, where dropout is off; assume model mode 'train'")
        if inputs is None:
            inputs = p.client_inputs(variables)
        update = self.simulator(inputs, p.targets(variables, self.labels, hard_labels),
                                create_graph=create_graph, functional=functional, masks=masks,
                                params=p.parameters(variables))
        if self.transform is not None:
            update = self.transform(update)
        return self.matcher(update)


def build_problem(
    observation: Observation,
    *,
    loss: MatchingLoss,
    assumptions: Assumptions,
    labels: LabelChoice,
    batch_label_method: str,
    update_mode: UpdateMode = "auto",
    update_transform: UpdateTransform | None = None,
    bn_prior: bool = True,
    prob_estimate: ProbEstimate = "model",
    seed: int = 0,
    parametrization: Parametrization | None = None,
) -> InversionProblem:
    """Resolve the threat model's grants and the attacker's assumptions into one problem.

    ``labels="auto"``: granted labels if any, else iDLG for one image and
    ``batch_label_method`` (``bias``/``llg``/``yin``, or ``optimize`` for DLG's joint
    soft labels) for batches; jointly optimised labels when the head is private and the
    upload holds no final layer (HyperFL). ``update_mode``: how a FedAvg delta is matched —
    ``unroll`` the local steps (``auto``), or ``as_gradient`` (the naive baseline that
    matches ``−Δ / (lr·steps)`` with a single full-batch gradient). ``parametrization``:
    how the attack's variables become the client's inputs and model (pixels by default).
    """
    target = check_observation(observation)
    setting = resolve_setting(observation, assumptions)
    notes: list[str] = []
    training = setting.training
    update_kind = observation.update.kind
    if update_mode not in ("auto", "unroll", "as_gradient"):
        raise ValueError(f"update_mode must be 'auto', 'unroll' or 'as_gradient', got {update_mode!r}")
    mode = "gradient" if update_kind == "gradient" else ("as_gradient" if update_mode == "as_gradient" else "unroll")
    gradient_like = target
    if update_kind == "delta":
        example = torch.zeros(1, *observation.input_shape, device=target.device)
        min_batch = min_batch_size(observation.model, replace(training, model_mode=setting.model_mode), example)
        steps = len(unrolled_batches(setting.num_images, training, min_batch))
        gradient_like = -target / (training.lr * steps)
        if mode == "as_gradient":
            target = gradient_like
            training = replace(training, algorithm="fedsgd", batch_size=setting.num_images)
    simulator = ClientSimulator(observation.model, training, setting.model_mode)
    layout = ParameterLayout.of(observation.model)
    matcher = GradientMatcher(target, layout, loss)
    chosen, method = _labels(observation, setting, simulator, labels, batch_label_method, gradient_like,
                             layout, prob_estimate, seed)
    if method == "optimize" and labels == "auto" and batch_label_method != "optimize":
        notes.append("labels optimised jointly: the upload holds no final layer to read them from "
                     "(the classifier head is private)")
    plain_sgd = training.optimizer == "sgd" and not training.momentum and not training.weight_decay
    if update_kind == "delta" and method not in ("known", "optimize") and not plain_sgd:
        notes.append("labels read from −Δ/(lr·steps), which assumes plain SGD; momentum, weight decay "
                     "or Adam distort the label counts")
    c, *spatial = observation.input_shape
    template = torch.zeros(1, c, *[1] * len(spatial), dtype=target.dtype, device=target.device)
    lower, upper = observation.normalization.bounds(template)
    prior = None
    if bn_prior and observation.bn_statistics:  # granted, and the model has BatchNorm layers
        prior = BNStatisticsPrior(observation.model, observation.bn_statistics)
        notes.append("BN-statistics prior on the granted bn_statistics")
    if chosen is not None:
        chosen = chosen.to(simulator.w0.device)
    return InversionProblem(observation, setting, simulator, matcher, chosen, method,
                            (setting.num_images, *observation.input_shape), lower, upper, prior,
                            update_transform, mode, notes, parametrization or Parametrization())


def _labels(observation: Observation, setting: ResolvedSetting, simulator: ClientSimulator, choice: str,
            batch_method: str, gradient_like: Tensor, layout: ParameterLayout, prob_estimate: str,
            seed: int) -> tuple[Tensor | None, str]:
    if choice not in ("auto", "optimize", *LABEL_METHODS):
        raise ValueError(f"labels must be 'auto', 'optimize' or one of {LABEL_METHODS}, got {choice!r}")
    if batch_method not in ("optimize", *LABEL_METHODS):
        raise ValueError(f"batch label method must be 'optimize' or one of {LABEL_METHODS}, got {batch_method!r}")
    n = setting.num_images
    if observation.labels is not None:
        if observation.labels.shape != (n,):
            raise ValueError(f"granted labels have shape {tuple(observation.labels.shape)}, expected ({n},)")
        return observation.labels.clone().long(), "known"
    method = choice
    if choice == "auto":
        method = "idlg" if n == 1 else batch_method
    if method == "optimize":
        return None, "optimize"
    if choice == "auto" and _private_head(observation):  # HyperFL: no final layer in the upload to read
        return None, "optimize"
    layer = last_layer(gradient_like, layout, observation.num_classes)
    probs = None
    if method == "bias" and prob_estimate == "model":
        probs = _expected_probs(simulator, (n, *observation.input_shape), seed)
    return recover_labels(layer, n, method, probs), method  # type: ignore[arg-type]


def _private_head(observation: Observation) -> bool:
    """Whether a private parameter has ``num_classes`` outputs (the classifier head is not uploaded)."""
    own = dict(observation.model.named_parameters())
    return any(own[n].dim() >= 1 and own[n].shape[0] == observation.num_classes for n in observation.private_names)


@torch.no_grad()
def _expected_probs(simulator: ClientSimulator, shape: tuple[int, ...], seed: int) -> Tensor:
    """Mean softmax of the model on random inputs: the attacker's estimate of ``p̄``."""
    gen = torch_generator(seed, "inversion", "expected_probs")
    x = torch.randn(shape, generator=gen).to(simulator.w0.device)
    return simulator.forward(simulator.w0.detach(), x).softmax(dim=1).mean(dim=0)


def describe(problem: InversionProblem) -> dict[str, Any]:
    """Record of the resolved problem for ``Reconstruction.config``."""
    t = problem.simulator.training
    return {"update_mode": problem.update_mode, "simulated_algorithm": t.algorithm, "local_lr": t.lr,
            "local_epochs": t.epochs, "local_steps": t.steps, "local_batch_size": t.batch_size,
            "local_optimizer": t.optimizer, "model_mode": problem.setting.model_mode,
            "num_images": problem.setting.num_images}
