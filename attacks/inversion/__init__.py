"""Gradient inversion: rebuild a client's private batch from what it uploads.

Importing this package registers ``dlg``, ``idlg``, ``inverting_gradients`` and
``inverting_gradients_fedavg`` in ``attacks.registry.INVERSION_ATTACKS``. Shared blocks
live once each: ``losses`` (gradient matching), ``priors`` (TV, BN statistics),
``labels`` (analytic label recovery), ``simulate`` (the differentiable client),
``problem`` (an ``Observation`` resolved into what to optimise).
"""

from .base import Assumptions, InversionAttack, Reconstruction
from .dlg import DLG, IDLG
from .inverting_gradients import InvertingGradients, InvertingGradientsFedAvg
from .labels import LABEL_METHODS, last_layer, recover_labels
from .losses import GradientMatcher
from .optimization import Evaluation, OptimizationAttack, OptimizationSettings, Run, Step
from .priors import REGULARISERS, BNStatisticsPrior, Regulariser, image_l2, total_variation
from .simulate import ClientSimulator
from .variables import GeneratorInputs, InputMap, Parametrization, Pixels, Variables, split_generator

__all__ = [
    "Assumptions", "InversionAttack", "Reconstruction", "DLG", "IDLG", "InvertingGradients",
    "InvertingGradientsFedAvg", "LABEL_METHODS", "last_layer", "recover_labels", "GradientMatcher",
    "BNStatisticsPrior", "total_variation", "ClientSimulator", "Evaluation", "OptimizationAttack",
    "OptimizationSettings", "Run", "Step", "REGULARISERS", "Regulariser", "image_l2", "GeneratorInputs",
    "InputMap", "Parametrization", "Pixels", "Variables", "split_generator",
]
