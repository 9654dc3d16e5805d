"""Deep Leakage from Gradients (Zhu et al., NeurIPS 2019) and iDLG (Zhao et al. 2020).

Defaults follow the reference code mit-han-lab/dlg ``main.py``: dummy images and dummy
labels drawn from N(0, 1), the labels softmaxed into the cross-entropy, the squared L2
distance of the gradients summed over layers, ``torch.optim.LBFGS(lr=1)`` with its
defaults (20 inner iterations per step, history 100, no line search) and 300 steps;
no box constraint, no prior. ``idlg`` is the same optimisation with the label taken
analytically from the last layer (iDLG); with a batch, that rule's batch
generalisation (``batch_labels``, default ``bias``) supplies the labels.

When the threat model grants labels they are used; with ``labels="auto"`` one image
gets iDLG's analytic label and a batch gets DLG's jointly optimised soft labels.
Restarts run one after another (L-BFGS keeps per-run curvature history) and the one
with the lowest final matching loss is returned.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fl_core.seeding import torch_generator
from fl_core.threat import Observation

from ..registry import INVERSION_ATTACKS
from .base import CommonSettings, InversionAttack, Reconstruction, build_settings
from .priors import total_variation
from .problem import InversionProblem, build_problem, describe


@dataclass(frozen=True)
class DLGSettings(CommonSettings):
    """DLG's defaults (mit-han-lab/dlg); ``iterations`` counts L-BFGS steps."""

    iterations: int = 300
    lr: float = 1.0
    max_iter: int = 20
    history_size: int = 100
    line_search: str | None = None
    batch_labels: str = "optimize"
    loss: str = "l2"
    boxed: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1 or self.max_iter < 1:
            raise ValueError(f"iterations and max_iter must be >= 1, got {self.iterations}, {self.max_iter}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.line_search not in (None, "strong_wolfe"):
            raise ValueError(f"line_search must be None or 'strong_wolfe', got {self.line_search!r}")


@INVERSION_ATTACKS.register("dlg", "Deep Leakage from Gradients: L2 gradient matching with L-BFGS (Zhu et al. 2019)")
class DLG(InversionAttack):
    """DLG; ``DLG(iterations=300, restarts=1, labels="auto", ...)`` (see ``DLGSettings``)."""

    name = "dlg"
    settings_class: type[DLGSettings] = DLGSettings
    forced: dict[str, Any] = {}

    def __init__(self, **settings: Any) -> None:
        self.settings: DLGSettings = build_settings(self.settings_class, self.name, {**settings, **self.forced})

    def reconstruct(self, observation: Observation) -> Reconstruction:
        s = self.settings
        start = time.perf_counter()
        problem = build_problem(observation, loss=s.loss, assumptions=s.assumptions,  # type: ignore[arg-type]
                                labels=s.labels, batch_label_method=s.batch_labels,  # type: ignore[arg-type]
                                update_mode=s.update_mode, update_transform=s.update_transform,  # type: ignore[arg-type]
                                bn_prior=s.bn_weight > 0, prob_estimate=s.prob_estimate,  # type: ignore[arg-type]
                                seed=s.seed)
        runs = [self._run(problem, r) for r in range(s.restarts)]
        scores = [run[3] for run in runs]
        best = min(range(len(runs)), key=lambda r: scores[r] if math.isfinite(scores[r]) else math.inf)
        images, labels, trace, _ = runs[best]
        notes = list(problem.notes)
        if not math.isfinite(scores[best]):
            notes.append("every restart diverged (non-finite matching loss)")
        return Reconstruction(
            attack=self.name, images=images, labels=labels, loss_trace=trace,
            wall_time=time.perf_counter() - start, threat_model=observation.threat_model.flags(),
            restarts=s.restarts, chosen_restart=best, restart_losses=scores,
            label_method=problem.label_method, config={**s.record(), **describe(problem)},
            assumed=problem.setting.assumed, notes=notes)

    def _run(self, problem: InversionProblem, restart: int) -> tuple[Tensor, Tensor, list[float], float]:
        s = self.settings
        gen = torch_generator(s.seed, "inversion", self.name, "restart", restart)
        x = torch.randn(problem.shape, generator=gen).requires_grad_(True)
        params = [x]
        logits = None
        if problem.labels is None:
            logits = torch.randn(problem.shape[0], problem.observation.num_classes, generator=gen).requires_grad_(True)
            params.append(logits)
        optimizer = torch.optim.LBFGS(params, lr=s.lr, max_iter=s.max_iter, history_size=s.history_size,
                                      line_search_fn=s.line_search)

        def targets() -> Tensor:
            return problem.labels if logits is None else F.softmax(logits, dim=-1)  # type: ignore[return-value]

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = problem.matching(x, targets())
            if s.tv_weight > 0:
                loss = loss + s.tv_weight * total_variation(x)
            if problem.bn_prior is not None and s.bn_weight > 0:
                loss = loss + s.bn_weight * problem.bn_prior(x)
            loss.backward()
            return loss

        trace: list[float] = []
        last_good = [p.detach().clone() for p in params]
        for _ in range(s.iterations):
            value = float(optimizer.step(closure).detach())
            if s.boxed:
                with torch.no_grad():
                    x.clamp_(problem.lower, problem.upper)
            if not (math.isfinite(value) and all(torch.isfinite(p).all() for p in params)):
                with torch.no_grad():  # DLG can diverge; keep the last finite iterate
                    for p, good in zip(params, last_good, strict=True):
                        p.copy_(good)
                break
            trace.append(value)
            for p, good in zip(params, last_good, strict=True):
                good.copy_(p.detach())
        final_targets = targets().detach()
        score = float(problem.matching(x.detach(), final_targets, create_graph=False).detach())
        labels = final_targets if final_targets.dim() == 1 else final_targets.argmax(dim=1)
        return x.detach(), labels.long(), trace, score


@INVERSION_ATTACKS.register("idlg", "iDLG: DLG with the label recovered analytically from the last layer "
                                    "(Zhao et al. 2020)")
class IDLG(DLG):
    """DLG with analytic labels: iDLG's rule for one image, ``batch_labels`` for a batch."""

    name = "idlg"
    forced = {"labels": "auto"}

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("batch_labels", "bias")
        if settings.get("batch_labels") == "optimize":
            raise ValueError("idlg recovers labels analytically; batch_labels cannot be 'optimize' "
                             "(use the 'dlg' attack for jointly optimised labels)")
        super().__init__(**settings)
