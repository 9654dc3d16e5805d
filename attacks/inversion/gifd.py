"""Generator-prior gradient inversion: ``generator_latent`` (latent search only) and ``gifd``.

**generator_latent** (GGL, Li et al. CVPR 2022; the first stage of GIAS, Jeon et al. NeurIPS
2021 — here gradient-based, as GIAS and GIFD do it, not GGL's black-box CMA-ES): the images
are ``to_model_input(G(z))`` of a pretrained, frozen generator (``fedarena.attacks.inversion.generators``)
and only the latent ``z`` is optimised, by Adam under the cosine lr ramp below, each image's
latent rescaled after every step to the l2 norm it started with. Several restarts, the one
with the lowest own matching loss returned.

**gifd** (Fang et al., "GIFD: A Generative Gradient Inversion Method with Feature Domain
Optimization", ICCV 2023): stage 0 is the latent search above; stages 1…K then optimise the
generator's intermediate feature at each split point in order (``SplitGenerator.split_points``
after ``"latent"``), initialised from the previous stage's output carried forward to that
point (``SplitGenerator.advance``), with the deviation from that initialisation projected
after every step onto an l1 ball (``project_l1_ball``) of radius ``r_k = r_1 + (k − 1) Δr``.
Every stage's output is scored by the matching loss (no priors) and the best *stage* is
returned — by loss, never by position.

Facts from the reference (ffhibnese/GIFD_Gradient_Inversion_Attack, read, not copied), and
where FedArena differs:

- Objective: cosine gradient matching + ``1e-4`` TV + ``1e-6`` image L2, both on the
  client's inputs (here: the normalised images the model sees). ``topk`` keeps only the
  entries of the largest observed magnitudes in the matching (for sparsified/pruned
  gradients): the simulated update is multiplied by that 0/1 mask, which for the cosine is
  the cosine restricted to the support.
- lr per stage: ``get_lr(t, lr, rampdown=0.75, rampup=0.05)`` with ``t = iteration /
  iterations`` of the stage, reimplemented from its description (the StyleGAN projector's
  ramp): ``lr · min(1, t / rampup) · (½ − ½ cos(π · min(1, (1 − t) / rampdown)))`` — a
  linear warm-up over the first 5 %, then a half-cosine decay to 0 over the last 75 %.
  The first step (``t = 0``) therefore has lr 0, as in the reference.
- Latent sphere: the reference's ``SphericalOptimizer`` renormalises after every step to
  the *initial* norm, taken over dims ≥ 2 (per style vector of a StyleGAN ``[N, 18, 512]``
  latent). A DCGAN latent ``[N, 100, 1, 1]`` or an MLP one ``[N, 64]`` has no such
  structure (over dims ≥ 2 the norm would be per entry, leaving only signs free), so the
  norm is taken per image over ``latent_shape``.
- l1 radii: the reference's (StyleGAN2: hundreds to thousands in absolute l1 units) fit
  its feature sizes only. A DCGAN's block features (8192–32768 entries per 64×64 face) and
  the MNIST MLP's (256) differ in size and scale, so radii are *relative* by default: the
  radius of stage ``k`` for an image is ``(radius + (k − 1) · radius_step) · ‖f₀‖₁`` with
  ``f₀`` that image's feature at the stage's start — a fraction of the feature's own l1
  norm, which is scale-free across layers and architectures (defaults 0.1 and 0.1: the
  first feature stage may move 10 % of the feature's mass, the next 20 %, …).
  ``absolute_radius=True`` takes the numbers as l1 radii instead, as the reference does.
  The projection of the deviation ``d`` is ``s · P_r(d / s)`` with ``s = ‖f₀‖₁``, which
  equals the projection onto the ball of radius ``r · s`` (Euclidean projection commutes
  with scaling) and needs no per-image radius tensor (no host sync).
- Restarts: the reference keeps the *last* restart's image (``choose_optimal`` compares
  nothing); here stage 0 returns the restart of lowest matching loss (``OptimizationAttack``)
  and the feature stages continue from it.
- FedAvg: the reference's FedAvg path does not run; here the problem's ``ClientSimulator``
  unrolls the local steps as for every other attack (``update_mode``).
- Labels: analytic recovery as for the other attacks (iDLG for one image, ``batch_labels``
  for batches); jointly optimised labels are not supported (the reference recovers them).

Defaults, from the reference's ``configs_stylegan2.yml`` unless said: lr 0.1 in every stage
(its ``lr_io``; its plain latent search for GIAS uses ``lr`` 0.03 — one lr here for both
attacks, so ``generator_latent`` is exactly GIFD's stage 0), 4 restarts, 1000 iterations per
stage (``steps``), TV 1e-4 and image norm 1e-6, cosine matching (its ``sim_cmpr0``). Its l1
radii are r1 = 2000, Δr = 1000 (absolute) for StyleGAN2 features; it also projects the
StyleGAN latent and noise inputs onto l1 balls, which DCGAN and MLP generators do not have
(no noise inputs; the latent stays on its sphere). The CPU benchmarks set smaller budgets
and say so.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.threat import Observation

from ..registry import INVERSION_ATTACKS
from .base import Reconstruction
from .generators import SplitGenerator, build_generator
from .l1_ball import project_l1_ball
from .optimization import Evaluation, OptimizationAttack, OptimizationSettings, Run, Step
from .problem import InversionProblem, describe
from .variables import GeneratorInputs, Parametrization, Variables

LATENT = "latent"
# torch.optim.Adam's defaults (the reference uses them: betas (0.9, 0.999), eps 1e-8)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def adam_update(params: list[Tensor], grads: list[Tensor], moments: list[Tensor], squares: list[Tensor],
                steps: list[int], lr: float) -> None:
    """One ``torch.optim.Adam`` step (default betas and eps, no weight decay) on ``params`` in
    place; ``moments``/``squares`` are its ``exp_avg``/``exp_avg_sq`` state and ``steps`` its
    per-tensor step counts (incremented here). Call it under ``torch.no_grad()``.

    The arithmetic of torch's single-tensor Adam (``torch.optim.adam._single_tensor_adam``,
    what ``torch.optim.Adam`` runs on CPU; its CUDA ``foreach`` path applies the same
    per-element formulas), op for op: ``lerp_``, ``mul_`` + ``addcmul_``, ``sqrt`` / ``div`` /
    ``add_``, ``addcdiv_``, with the bias corrections in Python floats. Only the step count
    differs: a Python int here, where torch's functional ``adam`` increments a step tensor and
    reads it back (two more ops, one a ``.item()``) behind a dispatch wrapper — on latents and
    features this small, run after the objective's large kernels, that is a third of the
    update's cost (issue 16's speed bound; ~60 µs of ~170 µs per iteration on the digits
    setting). ``tests/test_gifd.py`` checks it bit for bit against ``torch.optim.Adam``."""
    beta1, beta2 = ADAM_BETAS
    for i, (param, grad, exp_avg, exp_avg_sq) in enumerate(zip(params, grads, moments, squares, strict=True)):
        steps[i] += 1
        step = float(steps[i])
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
        param.addcdiv_(exp_avg, denom, value=-step_size)


def ramp_lr(t: float, lr: float, rampdown: float = 0.75, rampup: float = 0.05) -> float:
    """The reference's ``get_lr``: warm-up over ``t < rampup``, half-cosine decay over the last
    ``rampdown`` of the stage; ``t`` in [0, 1] is the fraction of the stage's iterations done."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def topk_mask(target: Tensor, fraction: float) -> Tensor:
    """0/1 mask of the ``ceil(fraction · D)`` entries of largest ``|target|`` (ties by index)."""
    k = max(1, math.ceil(fraction * target.numel()))
    mask = torch.zeros_like(target)
    mask[target.abs().topk(k).indices] = 1
    return mask


class _Tail(nn.Module):
    """``generator.tail(·, split)`` as a module, the ``tail`` of ``GeneratorInputs``."""

    def __init__(self, generator: SplitGenerator, split: str) -> None:
        super().__init__()
        self.generator, self.split = generator, split

    def forward(self, feature: Tensor) -> Tensor:
        return self.generator.tail(feature, self.split)


@dataclass(frozen=True)
class GeneratorLatentSettings(OptimizationSettings):
    """Latent search settings; see the module docstring for each default's source."""

    generator: str = "mnist_gan"
    data_root: str | None = None
    iterations: int = 1000
    restarts: int = 4
    lr: float = 0.1
    lr_rampdown: float = 0.75
    lr_rampup: float = 0.05
    loss: str = "cosine"
    tv_weight: float = 1e-4
    l2_weight: float = 1e-6
    topk: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (0 <= self.lr_rampdown <= 1 and 0 <= self.lr_rampup <= 1):
            raise ValueError(f"lr_rampdown and lr_rampup must lie in [0, 1], got {self.lr_rampdown}, "
                             f"{self.lr_rampup}")
        if self.topk is not None and not 0 < self.topk <= 1:
            raise ValueError(f"topk must be a fraction in (0, 1] (or None), got {self.topk}")
        if self.labels == "optimize" or self.batch_labels == "optimize":
            raise ValueError("generator-prior attacks recover labels analytically; labels='optimize' "
                             "is not supported")


@dataclass(frozen=True)
class GIFDSettings(GeneratorLatentSettings):
    """GIFD: the latent search's settings plus the feature stages'."""

    feature_iterations: int = 1000
    stages: int | None = None
    radius: float = 0.1
    radius_step: float = 0.1
    absolute_radius: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feature_iterations < 1:
            raise ValueError(f"feature_iterations must be >= 1, got {self.feature_iterations}")
        if self.stages is not None and self.stages < 0:
            raise ValueError(f"stages must be >= 0 (or None: every split point), got {self.stages}")
        if not (math.isfinite(self.radius) and math.isfinite(self.radius_step)) or self.radius < 0 \
                or self.radius_step < 0:
            raise ValueError(f"radius and radius_step must be finite and >= 0, got {self.radius}, "
                             f"{self.radius_step}")


@dataclass
class Stage:
    """One GIFD stage's outcome: the split point optimised (``"latent"`` for stage 0), its
    matching loss (the selection score), its images in the model's input space, its final
    variables and objective trace, and the l1 radius factor (None for the latent)."""

    split: str
    loss: float
    images: Tensor
    variables: Variables
    trace: list[float]
    stopped: int | None
    radius: float | None


@INVERSION_ATTACKS.register("generator_latent",
                            "latent search through a pretrained generator (GGL / GIAS stage 1), Adam on the sphere")
class GeneratorLatent(OptimizationAttack):
    """``GeneratorLatent(generator="mnist_gan", iterations=500, restarts=4)``."""

    name = "generator_latent"
    settings_class: type[GeneratorLatentSettings] = GeneratorLatentSettings
    settings: GeneratorLatentSettings
    forced: dict[str, Any] = {}
    regularisers = ("tv", "l2")
    batchable = False

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._generators: dict[torch.device, SplitGenerator] = {}

    def generator(self, device: torch.device) -> SplitGenerator:
        """The named generator on ``device`` (loaded once; frozen, eval mode)."""
        if device not in self._generators:
            g = build_generator(self.settings.generator, root=self.settings.data_root)
            self._generators[device] = g.to(device)
        return self._generators[device]

    def inputs(self, observation: Observation, split: str) -> GeneratorInputs:
        """Images from the feature at ``split`` (the variable of that name), mapped to the model."""
        g = self.generator(next(observation.model.parameters()).device)  # the problem's device
        norm, shape = observation.normalization, observation.input_shape

        def output(images: Tensor) -> Tensor:
            return g.to_model_input(images, norm, shape)

        return GeneratorInputs(_Tail(g, split), split, output)

    def parametrization(self, observation: Observation) -> Parametrization:
        return Parametrization(self.inputs(observation, LATENT))

    def build(self, observation: Observation) -> InversionProblem:
        problem = super().build(observation)
        if self.settings.topk is None:
            return problem
        mask = topk_mask(problem.matcher.target, self.settings.topk)
        inner = problem.transform

        def masked(update: Tensor) -> Tensor:
            return (update if inner is None else inner(update)) * mask

        return replace(problem, transform=masked,
                       notes=[*problem.notes, f"matching on the top {self.settings.topk:g} of the observed entries"])

    def init(self, problem: InversionProblem) -> Variables:
        """Every restart's latents ``[restarts, B, *latent_shape]`` from N(0, 1), one CPU stream
        shared by ``generator_latent`` and ``gifd`` (so GIFD's stage 0 is the latent search)."""
        s = self.settings
        g = self.generator(problem.device)
        gen = torch_generator(s.seed, "inversion", "generator_latent", "init")
        return {LATENT: torch.randn((s.restarts, problem.shape[0], *g.latent_shape), generator=gen)}

    def stepper(self, problem: InversionProblem, variables: Variables, evaluation: Evaluation) -> Step:
        """Adam under the cosine ramp, then the stage's constraint on its variable.

        The update is ``torch.optim.Adam``'s arithmetic on its own state (``adam_update``), not
        the optimiser object: on latents and features this small its per-step wrapper (hooks,
        profiler range, param-group and state bookkeeping, ``.grad`` assignment, the step
        tensor) cost as much as the update (issue 16's speed bound). Bit-identical iterates."""
        s = self.settings
        leaves = list(variables.values())
        moments = [torch.zeros_like(v, memory_format=torch.preserve_format) for v in leaves]
        squares = [torch.zeros_like(v, memory_format=torch.preserve_format) for v in leaves]
        counts = [0 for _ in leaves]  # Adam's ``state["step"]``
        name = problem.parametrization.inputs.variable
        value = variables[name]
        constrain = self.constraint(problem, name, value.detach().clone())
        total = s.iterations

        def step(iteration: int) -> Tensor:
            lr = ramp_lr(iteration / total, s.lr, s.lr_rampdown, s.lr_rampup)
            loss, grads = evaluation.value_and_grad()
            with torch.no_grad():
                adam_update(leaves, [grads[key] for key in variables], moments, squares, counts, lr)
                value.copy_(constrain(value))
            return loss.detach()

        return step

    def constraint(self, problem: InversionProblem, name: str, start: Tensor) -> Callable[[Tensor], Tensor]:
        """The latent's: back onto each image's initial l2 sphere (norm over ``latent_shape``)."""
        if name != LATENT:
            raise ValueError(f"{self.name} optimises only the latent, not {name!r}")
        radius = start.flatten(1).norm(dim=1)
        shape, tiny = (-1, *[1] * (start.dim() - 1)), torch.finfo(start.dtype).tiny

        def to_sphere(z: Tensor) -> Tensor:
            norm = torch.linalg.vector_norm(z.flatten(1), dim=1)  # = .norm(dim=1), without its Python dispatch
            return z * (radius / norm.clamp(min=tiny)).reshape(shape)

        return to_sphere


@INVERSION_ATTACKS.register("gifd",
                            "GIFD: latent search, then the generator's features in growing l1 balls (Fang et al. 2023)")
class GIFD(GeneratorLatent):
    """``GIFD(generator="dcgan_faces64", iterations=500, feature_iterations=250, radius=0.1)``."""

    name = "gifd"
    settings_class: type[GIFDSettings] = GIFDSettings
    settings: GIFDSettings

    def feature_splits(self, generator: SplitGenerator) -> list[str]:
        """The split points stages 1…K optimise, in order."""
        splits = [p for p in generator.split_points if p != LATENT]
        k = self.settings.stages
        if k is not None and k > len(splits):
            raise ValueError(f"stages={k} but generator {self.settings.generator!r} has only {len(splits)} "
                             f"feature split points ({', '.join(splits)})")
        return splits if k is None else splits[:k]

    def radius_factor(self, stage: int) -> float:
        """``r_k = radius + (k − 1) · radius_step`` for feature stage ``k`` ≥ 1."""
        return self.settings.radius + (stage - 1) * self.settings.radius_step

    def constraint(self, problem: InversionProblem, name: str, start: Tensor) -> Callable[[Tensor], Tensor]:
        """The latent's sphere in stage 0; the l1 ball of feature stage ``k`` around ``start``."""
        if name == LATENT:
            return super().constraint(problem, name, start)
        stage = self.feature_splits(self.generator(problem.device)).index(name) + 1
        r = self.radius_factor(stage)
        if self.settings.absolute_radius:
            return lambda f: start + project_l1_ball(f - start, r)
        scale = start.flatten(1).abs().sum(dim=1).clamp(min=torch.finfo(start.dtype).tiny)
        scale = scale.reshape(-1, *[1] * (start.dim() - 1))
        return lambda f: start + scale * project_l1_ball((f - start) / scale, r)

    def radius_of(self, stage: int, start: Tensor) -> Tensor:
        """Each image's l1 radius in feature stage ``stage`` starting from features ``start``."""
        r = self.radius_factor(stage)
        if self.settings.absolute_radius:
            return torch.full((start.shape[0],), r, dtype=start.dtype, device=start.device)
        return r * start.flatten(1).abs().sum(dim=1)

    def stage_problem(self, problem: InversionProblem, split: str) -> InversionProblem:
        """``problem`` with the feature at ``split`` as the client's input variable."""
        return replace(problem, parametrization=Parametrization(self.inputs(problem.observation, split)))

    def feature_stage(self) -> GIFD:
        """This attack with ``iterations = feature_iterations``: the loop of ``optimise`` and the
        stepper's lr ramp read ``settings.iterations``, so a feature stage runs on this copy."""
        staged = copy.copy(self)
        staged.settings = replace(self.settings, iterations=self.settings.feature_iterations)
        return staged

    def reconstruct(self, observation: Observation) -> Reconstruction:
        return self.reconstruct_stages(observation)[0]

    def reconstruct_stages(self, observation: Observation) -> tuple[Reconstruction, list[Stage]]:
        """The ``Reconstruction`` of the best stage and every stage's outcome, in order.

        ``restart_losses``/``chosen_restart`` are stage 0's restarts; ``loss_trace`` is stage 0's
        chosen restart followed by every feature stage's objective; ``config`` records the
        chosen stage and every stage's matching loss; ``variables`` are the chosen stage's."""
        s = self.settings
        start = time.perf_counter()
        problem = self.build(observation)
        notes = list(problem.notes)
        runs, scores, best = self.best_restart(problem, notes)
        stages = [self._stage(problem, LATENT, runs[best], scores[best], None)]
        g = self.generator(problem.device)
        staged = self.feature_stage()
        previous, feature = LATENT, runs[best].variables[LATENT]
        for k, split in enumerate(self.feature_splits(g), start=1):
            with torch.no_grad():
                feature = g.advance(feature, previous, split)
            stage_problem = self.stage_problem(problem, split)
            run = staged.optimise(stage_problem, {split: feature})
            if run.stopped is not None:
                notes.append(f"stage {split} stopped at iteration {run.stopped}: non-finite value "
                             f"(kept its last finite iterate)")
            stages.append(self._stage(stage_problem, split, run, self.score(stage_problem, run.variables),
                                      self.radius_factor(k)))
            previous, feature = split, run.variables[split]
        chosen = min(range(len(stages)), key=lambda i: stages[i].loss)
        if not math.isfinite(stages[chosen].loss):
            notes.append("every stage diverged (non-finite matching loss)")
        notes.append(f"stage {stages[chosen].split!r} returned (lowest matching loss of "
                     f"{', '.join(f'{st.split} {st.loss:.4g}' for st in stages)})")
        with torch.no_grad():
            labels = problem.parametrization.targets({}, problem.labels, hard=True).long()
        best_stage = stages[chosen]
        trace = [v for st in stages for v in st.trace]
        config = {**s.record(), **describe(problem), "chosen_stage": best_stage.split,
                  "stage_losses": {st.split: st.loss for st in stages}}
        rec = Reconstruction(
            attack=self.name, images=best_stage.images, labels=labels, loss_trace=trace,
            wall_time=time.perf_counter() - start, threat_model=observation.threat_model.flags(),
            restarts=s.restarts, chosen_restart=best, restart_losses=scores,
            label_method=problem.label_method, config=config, assumed=problem.setting.assumed,
            notes=notes, variables=dict(best_stage.variables))
        return rec, stages

    @staticmethod
    def _stage(problem: InversionProblem, split: str, run: Run, loss: float, radius: float | None) -> Stage:
        with torch.no_grad():
            images = problem.parametrization.client_inputs(run.variables).detach()
        return Stage(split, loss, images, dict(run.variables), run.trace, run.stopped, radius)
