"""Deep Leakage from Gradients (Zhu et al., NeurIPS 2019) and iDLG (Zhao et al. 2020).

Defaults follow the reference code mit-han-lab/dlg ``main.py``: dummy images and dummy
labels drawn from N(0, 1), the labels softmaxed into the cross-entropy, the squared L2
distance of the gradients summed over layers, ``torch.optim.LBFGS(lr=1)`` with its
defaults (20 inner iterations per step, history 100, no line search) and 300 steps;
no box constraint, no prior. ``idlg`` is the same optimisation with the label taken
analytically from the last layer (iDLG); with a batch, that rule's batch
generalisation (``batch_labels``, default ``bias``) supplies the labels.

When the threat model grants labels they are used; with ``labels="auto"`` (the default)
one image gets iDLG's analytic label and a batch gets DLG's jointly optimised soft labels:
so ``dlg`` at batch 1 with ``labels="auto"`` is iDLG (Zhao et al. 2020), and
``labels="optimize"`` gives the original DLG (labels optimised jointly with the image, as
in Zhu et al. 2019) at any batch size.
Restarts run one after another (L-BFGS keeps per-run curvature history) and the one
with the lowest final matching loss is returned. That loop, stopping a restart at its
first non-finite value (DLG can diverge; its last finite iterate is kept) and the
``Reconstruction`` belong to ``OptimizationAttack``; this module only says how to
initialise (``init_restart``) and how to step (``stepper``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedarena.fl_core.seeding import torch_generator

from ..registry import INVERSION_ATTACKS
from .optimization import Evaluation, OptimizationAttack, OptimizationSettings, Step
from .problem import InversionProblem
from .variables import LOGITS, Pixels, Variables


@dataclass(frozen=True)
class DLGSettings(OptimizationSettings):
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
        if self.max_iter < 1:
            raise ValueError(f"iterations and max_iter must be >= 1, got {self.iterations}, {self.max_iter}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.line_search not in (None, "strong_wolfe"):
            raise ValueError(f"line_search must be None or 'strong_wolfe', got {self.line_search!r}")


@INVERSION_ATTACKS.register("dlg", "Deep Leakage from Gradients: L2 gradient matching with L-BFGS (Zhu et al. 2019). "
                                   "At batch 1 with labels=\"auto\" (the default) it is iDLG (analytic label); "
                                   "labels=\"optimize\" gives the original DLG.")
class DLG(OptimizationAttack):
    """DLG; ``DLG(iterations=300, restarts=1, labels="auto", ...)`` (see ``DLGSettings``)."""

    name = "dlg"
    settings_class: type[DLGSettings] = DLGSettings
    settings: DLGSettings
    forced: dict[str, Any] = {}

    def init_restart(self, problem: InversionProblem, restart: int) -> Variables:
        """Images, then (labels unknown) dummy logits, from N(0, 1) of the restart's stream."""
        gen = torch_generator(self.settings.seed, "inversion", self.name, "restart", restart)
        variables = {"x": torch.randn(problem.shape, generator=gen)}
        if problem.labels is None:
            variables[LOGITS] = torch.randn(problem.shape[0], problem.observation.num_classes, generator=gen)
        return variables

    def stepper(self, problem: InversionProblem, variables: Variables, evaluation: Evaluation) -> Step:
        s = self.settings
        value = evaluation.value
        assert value is not None  # L-BFGS runs each restart on its own (batchable is False)
        optimizer = torch.optim.LBFGS(list(variables.values()), lr=s.lr, max_iter=s.max_iter,
                                      history_size=s.history_size, line_search_fn=s.line_search)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = value()
            loss.backward()
            return loss

        inputs = problem.parametrization.inputs
        boxed = variables[inputs.variable] if s.boxed and isinstance(inputs, Pixels) else None

        def step(_iteration: int) -> torch.Tensor:
            loss = optimizer.step(closure).detach()
            if boxed is not None:
                with torch.no_grad():
                    boxed.clamp_(problem.lower, problem.upper)
            return loss

        return step


@INVERSION_ATTACKS.register("idlg", "iDLG: DLG with the label recovered analytically from the last layer "
                                    "(Zhao et al. 2020)")
class IDLG(DLG):
    """DLG with analytic labels: iDLG's rule for one image, ``batch_labels`` for a batch."""

    name = "idlg"
    forced = {"labels": "auto"}
    defaults = {"batch_labels": "bias"}

    def __init__(self, **settings: Any) -> None:
        if settings.get("batch_labels") == "optimize":
            raise ValueError("idlg recovers labels analytically; batch_labels cannot be 'optimize' "
                             "(use the 'dlg' attack for jointly optimised labels)")
        super().__init__(**settings)
