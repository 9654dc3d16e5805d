"""Inverting Gradients (Geiping et al., NeurIPS 2020), for FedSGD gradients and FedAvg deltas.

Objective: ``1 − cos(∇̂, ∇)`` over all layers (paper Eq. 4; inversefed ``cost_fn='sim'``)
+ ``tv_weight · TV(x)`` (+ ``bn_weight`` · BN-statistics prior when the threat model
grants BN statistics), minimised by Adam on the *sign* of the image gradient, images
boxed to the normalised [0, 1] range after every step, learning rate × 0.1 at 3/8, 5/8
and 7/8 of the iterations, images initialised from N(0, 1); among the restarts the one
with the lowest final gradient-matching loss (without priors, inversefed's
``scoring_choice='loss'``) is returned — never a ground-truth comparison.

Defaults, and where they come from (they differ between sources):

========================  ==========  ==========================================
setting                   ours        source / why
========================  ==========  ==========================================
lr                        0.1         inversefed ``reconstruct_image.py`` ("ours"),
                                      breaching ``invertinggradients.yaml``
iterations                4000        inversefed "ours" (its ``DEFAULT_CONFIG`` says
                                      8000 at lr 0.01, breaching 24 000); the
                                      acceptance runs use 2000 and 8000
tv_weight                 0.1         breaching's 0.2 under its half-size TV, i.e.
                                      0.1 in inversefed's TV, inside the issue's
                                      0.1–0.2; inversefed's CLI default 1e-4 is
                                      for trained ImageNet-scale models
restarts                  1           inversefed CLI and breaching default 1
                                      (``DEFAULT_CONFIG`` 128 is not CPU-feasible)
loss                      cosine      global cosine, both references
signed, boxed, lr decay   yes         all references
bn_weight                 0.01        our choice (no cosine-loss reference value);
                                      0 switches the prior off
========================  ==========  ==========================================

FedAvg (paper section 5): a delta is matched by unrolling the client's local steps
(``ClientSimulator``), with the granted ``LocalTraining`` or ``assumed_training``;
``update_mode="as_gradient"`` instead treats ``−Δ`` as one gradient (the baseline).

Restarts run batched with ``torch.func.vmap`` (one call computes every restart's
gradient-matching loss and image gradient; Adam is elementwise, so one optimiser over
the stacked restarts equals one per restart). vmap cannot run a model that writes
buffers during the forward (BatchNorm in train mode) and is not used with jointly
optimised labels or the BN prior; those cases, and any model vmap rejects, run the
restarts one after another (``batched_restarts="auto"`` decides, ``"never"`` forces it).
On this 2-core CPU the batched restarts were not cheaper: 0.66–1.91× the per-restart
cost of sequential ones, median 1.47× (``benchmarks/results/ig_speed_w64_b1.md``, a loaded
machine; the convolutions take the same time either way). One call per layer for all
restarts is meant for accelerators, where it keeps the device busy; that is not measured
here (no GPU was available).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fl_core.seeding import torch_generator
from fl_core.threat import Observation

from ..registry import INVERSION_ATTACKS
from .base import CommonSettings, InversionAttack, Reconstruction, build_settings
from .priors import total_variation
from .problem import InversionProblem, build_problem, describe


@dataclass(frozen=True)
class IGSettings(CommonSettings):
    """Inverting Gradients' settings; see the module docstring for each default's source."""

    iterations: int = 4000
    lr: float = 0.1
    tv_weight: float = 0.1
    bn_weight: float = 0.01
    loss: str = "cosine"
    batch_labels: str = "bias"
    signed: bool = True
    boxed: bool = True
    lr_decay: bool = True
    batched_restarts: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batched_restarts not in ("auto", "never"):
            raise ValueError(f"batched_restarts must be 'auto' or 'never', got {self.batched_restarts!r}")


@INVERSION_ATTACKS.register("inverting_gradients",
                            "Inverting Gradients: cosine matching + TV, signed Adam, boxed (Geiping et al. 2020)")
class InvertingGradients(InversionAttack):
    """IG; ``InvertingGradients(iterations=2000, restarts=4, tv_weight=0.1, ...)``."""

    name = "inverting_gradients"
    settings_class: type[IGSettings] = IGSettings  # lets the harness check suite params up front
    forced: dict[str, Any] = {}

    def __init__(self, **settings: Any) -> None:
        self.settings: IGSettings = build_settings(self.settings_class, self.name, {**settings, **self.forced})

    def reconstruct(self, observation: Observation) -> Reconstruction:
        s = self.settings
        start = time.perf_counter()
        problem = build_problem(observation, loss=s.loss, assumptions=s.assumptions,  # type: ignore[arg-type]
                                labels=s.labels, batch_label_method=s.batch_labels,  # type: ignore[arg-type]
                                update_mode=s.update_mode, update_transform=s.update_transform,  # type: ignore[arg-type]
                                bn_prior=s.bn_weight > 0, prob_estimate=s.prob_estimate,  # type: ignore[arg-type]
                                seed=s.seed)
        notes = list(problem.notes)
        init = self._init(problem)
        result = None
        why_not = self._why_not_batched(problem) if s.restarts > 1 else "one restart"
        if s.restarts > 1 and why_not:
            notes.append(f"{s.restarts} restarts run one after another: {why_not}")
        if not why_not:
            try:
                result = self._optimise_batched(problem, init)
                notes.append(f"{s.restarts} restarts batched with torch.func.vmap")
            except RuntimeError as exc:  # a model vmap cannot run: fall back, say why
                notes.append(f"vmap over restarts failed ({str(exc).splitlines()[0][:120]}); ran sequentially")
        if result is None:
            runs = [self._optimise_one(problem, init[r]) for r in range(s.restarts)]
            images = torch.stack([r[0] for r in runs])
            labels = torch.stack([r[1] for r in runs])
            traces = torch.stack([r[2] for r in runs])
            result = (images, labels, traces)
        images, labels, traces = result
        scores = [self._score(problem, images[r], labels[r]) for r in range(s.restarts)]
        best = min(range(s.restarts), key=lambda r: scores[r] if math.isfinite(scores[r]) else math.inf)
        return Reconstruction(
            attack=self.name, images=images[best], labels=labels[best], loss_trace=traces[best].tolist(),
            wall_time=time.perf_counter() - start, threat_model=observation.threat_model.flags(),
            restarts=s.restarts, chosen_restart=best, restart_losses=scores,
            label_method=problem.label_method, config={**s.record(), **describe(problem)},
            assumed=problem.setting.assumed, notes=notes)

    # -- pieces -------------------------------------------------------------------------

    def _init(self, problem: InversionProblem) -> Tensor:
        s = self.settings
        gen = torch_generator(s.seed, "inversion", self.name, "init")
        return torch.randn((s.restarts, *problem.shape), generator=gen)

    def _why_not_batched(self, problem: InversionProblem) -> str:
        """Empty when the restarts can run under vmap, else the reason they cannot."""
        if self.settings.batched_restarts == "never":
            return "batched_restarts='never'"
        if problem.labels is None:
            return "labels are optimised jointly"
        if problem.bn_prior is not None:
            return "the BN-statistics prior collects statistics through forward hooks"
        model = problem.simulator.model
        if problem.setting.model_mode == "train" and any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return "BatchNorm in train mode writes its running statistics during the forward"
        return ""

    def _objective(self, problem: InversionProblem, functional: bool) -> Callable[[Tensor, Tensor], Tensor]:
        s = self.settings

        def objective(x: Tensor, targets: Tensor) -> Tensor:
            loss = problem.matching(x, targets, functional=functional)
            if s.tv_weight > 0:
                loss = loss + s.tv_weight * total_variation(x)
            if problem.bn_prior is not None and s.bn_weight > 0:
                loss = loss + s.bn_weight * problem.bn_prior(x)
            return loss

        return objective

    def _optimizer(self, params: list[Tensor]) -> tuple[torch.optim.Optimizer, Any]:
        s = self.settings
        optimizer = torch.optim.Adam(params, lr=s.lr)
        milestones = [round(s.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)] if s.lr_decay else []
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
        return optimizer, scheduler

    def _optimise_one(self, problem: InversionProblem, init: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One restart with plain autograd (the fastest path for a single run)."""
        s = self.settings
        x = init.clone().requires_grad_(True)
        logits = None
        params = [x]
        if problem.labels is None:
            gen = torch_generator(s.seed, "inversion", self.name, "labels")
            logits = torch.randn(problem.shape[0], problem.observation.num_classes, generator=gen)
            logits.requires_grad_(True)
            params.append(logits)
        optimizer, scheduler = self._optimizer(params)
        objective = self._objective(problem, functional=False)
        trace = torch.empty(s.iterations)
        lower, upper = problem.lower, problem.upper
        for it in range(s.iterations):
            targets = problem.labels if logits is None else F.softmax(logits, dim=-1)
            loss = objective(x, targets)  # type: ignore[arg-type]
            grads = torch.autograd.grad(loss, params)
            x.grad = grads[0].sign_() if s.signed else grads[0]
            if logits is not None:
                logits.grad = grads[1]
            optimizer.step()
            scheduler.step()
            if s.boxed:
                with torch.no_grad():
                    x.clamp_(lower, upper)
            trace[it] = loss.detach()
        labels = problem.labels if logits is None else logits.detach().argmax(dim=1)
        return x.detach(), labels.clone(), trace  # type: ignore[union-attr]

    def _optimise_batched(self, problem: InversionProblem, init: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """All restarts at once: ``vmap`` over the per-restart objective and its x-gradient."""
        s = self.settings
        labels = problem.labels
        assert labels is not None
        objective = self._objective(problem, functional=True)
        step = torch.func.vmap(torch.func.grad_and_value(lambda x: objective(x, labels)), randomness="different")
        x = init.clone()
        optimizer, scheduler = self._optimizer([x])
        trace = torch.empty(s.restarts, s.iterations)
        lower, upper = problem.lower, problem.upper
        for it in range(s.iterations):
            grad, loss = step(x)
            x.grad = grad.sign_() if s.signed else grad
            optimizer.step()
            scheduler.step()
            if s.boxed:
                with torch.no_grad():
                    x.clamp_(lower, upper)
            trace[:, it] = loss.detach()
        return x.detach(), labels.expand(s.restarts, -1).clone(), trace

    def _score(self, problem: InversionProblem, images: Tensor, labels: Tensor) -> float:
        value = float(problem.matching(images, labels, create_graph=False).detach())
        return value if math.isfinite(value) else math.inf


@INVERSION_ATTACKS.register("inverting_gradients_fedavg",
                            "Inverting Gradients on FedAvg deltas: unrolled local steps (Geiping et al. 2020 sec. 5)")
class InvertingGradientsFedAvg(InvertingGradients):
    """IG that always unrolls the client's local steps when the update is a delta."""

    name = "inverting_gradients_fedavg"
    forced = {"update_mode": "unroll"}
