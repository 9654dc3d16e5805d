"""Gradient inversion: rebuild a client's private batch from what it uploads.

Importing this package registers ``dlg``, ``idlg``, ``inverting_gradients``,
``inverting_gradients_fedavg``, ``dropout_inversion`` and its baselines
``inverting_gradients_random_masks`` / ``inverting_gradients_informed``,
``generator_latent`` and ``gifd`` in
``fedarena.attacks.registry.INVERSION_ATTACKS``. Shared blocks live once each: ``losses``
(gradient matching), ``priors`` (TV, BN statistics, image norm, and the ``REGULARISERS``
registry), ``labels`` (analytic label recovery), ``simulate`` (the differentiable
client), ``problem`` (an ``Observation`` resolved into what to optimise), ``variables``
(named unknowns and the parametrization that maps them to the client's inputs and
model), ``optimization`` (``OptimizationAttack``, the one base that owns restarts, vmap
batching, non-finite stopping, selection by the attack's own loss and the
``Reconstruction``), ``generators`` (pretrained split generators as image priors) and
``gifd`` (the generator-prior attacks).

Adding an attack with a new unknown is one module plus a registry entry: subclass an
attack (or ``OptimizationAttack``), add the unknown to the variables in ``init`` under
a name the parametrization understands (``mask.<site>`` for a dropout site's masks,
``param.<name>`` for a private parameter, or a generator's latent through
``Parametrization(GeneratorInputs(...))``), and say how to step. For example, images
and dropout masks optimised together (the idea of Dropout Inversion)::

    @INVERSION_ATTACKS.register("my_dropout_inversion", "IG with the dropout masks as unknowns")
    class MyDropoutInversion(InvertingGradients):
        name = "my_dropout_inversion"

        def init(self, problem):
            variables = super().init(problem)  # {"x": [restarts, B, C, H, W]}
            x0 = variables["x"][0].to(problem.device)
            for site, shape in problem.simulator.mask_shapes(x0, problem.labels).items():
                variables[f"mask.{site}"] = torch.ones(self.settings.restarts, *shape)
            return variables

        def stepper(self, problem, variables, evaluation):
            step = super().stepper(problem, variables, evaluation)

            def masked(iteration):
                loss = step(iteration)
                with torch.no_grad():
                    for name, value in variables.items():
                        if name.startswith("mask."):
                            value.clamp_(0, 1)
                return loss

            return masked

``docs/adding_an_attack.md`` walks through it, with a mask prior and a generator latent.
"""

from .base import Assumptions, InversionAttack, Reconstruction
from .dlg import DLG, IDLG
from .dropout_inversion import DropoutInversion, InvertingGradientsInformed, InvertingGradientsRandomMasks
from .generators import GENERATORS, SplitGenerator, build_generator
from .gifd import GIFD, GeneratorLatent, Stage
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
    "InputMap", "Parametrization", "Pixels", "Variables", "split_generator", "DropoutInversion",
    "InvertingGradientsInformed", "InvertingGradientsRandomMasks", "GENERATORS", "SplitGenerator",
    "build_generator", "GIFD", "GeneratorLatent", "Stage",
]
