"""``OptimizationAttack``: the one base of the optimisation-based inversion attacks.

An attack is a set of named variables (``variables``), a parametrization that turns them
into the client's inputs and model, an initialisation per restart and an optimiser
step. Everything else lives here once: building the ``InversionProblem``; the
objective ``matching + Σ weight · regulariser`` (``priors.REGULARISERS``, weights from
the settings, summed in the order the attack lists them, after the matching loss);
restarts, one after another or batched with ``torch.func.vmap``; stopping a restart at
its first non-finite value and keeping its last finite iterate; choosing the restart
by the attack's own final matching loss (without priors; non-finite counts as +inf;
never ground truth); and assembling the ``Reconstruction``.

A subclass says how to initialise (``init``, or ``init_restart`` per restart) and how
to step (``stepper``); optionally which parametrization (``parametrization``), which
regularisers (``regularisers``), and whether its restarts may be batched
(``batchable``). Variables are drawn from seeded CPU generators and moved to the
device of ``observation.model``, so CPU results do not depend on where the attack runs.

A protocol's private parameters (``Observation.private_names``: HyperFL's embedding and
head) are unknowns of every such attack, with no attack code of their own: granted ones
(``embedding_known`` / ``head_known``) enter the parametrization as fixed values, the
others become ``param.<name>`` variables (``private_init``) that the attack's own step
optimises beside the images, and the simulated client runs the observed model (for
HyperFL its forward is hypernetwork(embedding) → generated weights + head → logits)
with them as ``functional_call`` overrides.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
import typing
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from fedarena.fl_core.seeding import derive_seed, torch_generator
from fedarena.fl_core.threat import Observation

from .base import CommonSettings, InversionAttack, Reconstruction, build_settings
from .priors import REGULARISERS, Regulariser, Term
from .problem import InversionProblem, build_problem, describe
from .variables import PARAM_PREFIX, Parametrization, Variables

Objective = Callable[[Mapping[str, Tensor]], Tensor]
Step = Callable[[int], Tensor]


@dataclass(frozen=True)
class OptimizationSettings(CommonSettings):
    """``CommonSettings`` plus the number of optimiser iterations per restart."""

    iterations: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")


@dataclass
class Evaluation:
    """What a step may evaluate at the current ``variables`` (the optimised leaves; stacked
    over restarts when batched): ``value()`` the objective with its graph (sequential
    runs only, e.g. an L-BFGS closure), ``value_and_grad()`` the objective and its
    gradient per variable (both paths)."""

    variables: Variables
    value: Callable[[], Tensor] | None
    value_and_grad: Callable[[], tuple[Tensor, Variables]]


@dataclass
class Run:
    """One restart's outcome: final variables (detached), objective per iteration, and the
    iteration a non-finite value stopped it at (None: ran to the end)."""

    variables: Variables
    trace: list[float]
    stopped: int | None = None


def settings_signature(settings_class: type, defaults: dict[str, Any], forced: dict[str, Any]) -> inspect.Signature:
    """The keyword-only signature of an attack configured by ``settings_class``: one
    parameter per field (its annotation, and its default unless ``defaults`` overrides it),
    except the fields the attack ``forced`` (those are not the caller's to choose)."""
    try:
        hints = typing.get_type_hints(settings_class)
    except Exception:  # an unresolvable forward reference: show the annotation as written
        hints = {}
    params = []
    for f in fields(settings_class):
        if f.name in forced:
            continue
        default = f.default
        if default is dataclasses.MISSING:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(f.name, f.type),
                                        default=defaults.get(f.name, default)))
    return inspect.Signature(params, return_annotation=None)


class OptimizationAttack(InversionAttack):
    """Base of DLG, Inverting Gradients and every attack that optimises its unknowns."""

    name = "optimization"
    settings_class: type[OptimizationSettings] = OptimizationSettings
    settings: OptimizationSettings
    forced: dict[str, Any] = {}
    #: objective terms after the matching loss, in this order (names in REGULARISERS or entries)
    regularisers: tuple[str | Regulariser, ...] = ("tv", "bn", "l2")
    #: restarts may share one vmap-batched optimiser (elementwise optimisers only)
    batchable: bool = False
    #: labels in the selection score when they are optimised: the soft labels the attack
    #: optimised, or the hard labels it returns
    score_labels: Literal["soft", "hard"] = "soft"

    #: defaults that differ from ``settings_class``'s for this attack (applied when not passed)
    defaults: dict[str, Any] = {}

    def __init__(self, **settings: Any) -> None:
        self.settings = build_settings(self.settings_class, self.name,
                                       {**self.defaults, **settings, **self.forced})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # ``**settings`` hides every option from help() and IDEs: publish the settings
        # dataclass's fields as the class's keyword-only signature instead.
        super().__init_subclass__(**kwargs)
        cls.__signature__ = settings_signature(cls.settings_class, cls.defaults, cls.forced)

    # -- what a subclass says ---------------------------------------------------------------

    def parametrization(self, observation: Observation) -> Parametrization:
        """How the variables become the client's inputs and model (pixels by default)."""
        return Parametrization()

    def init(self, problem: InversionProblem) -> Variables:
        """Every restart's initial variables, stacked: ``{name: [restarts, ...]}`` on CPU."""
        runs = [self.init_restart(problem, r) for r in range(self.settings.restarts)]
        return {name: torch.stack([run[name] for run in runs]) for name in runs[0]}

    def init_restart(self, problem: InversionProblem, restart: int) -> Variables:
        """One restart's initial variables (override this or ``init``)."""
        raise NotImplementedError(f"{type(self).__name__} must define init or init_restart")

    @abstractmethod
    def stepper(self, problem: InversionProblem, variables: Variables, evaluation: Evaluation) -> Step:
        """``step(iteration)``: one optimiser iteration on ``variables`` (in place); returns
        the objective before the step (one value per restart when batched)."""

    # -- what the base owns -----------------------------------------------------------------

    def build(self, observation: Observation) -> InversionProblem:
        """The problem this attack's settings and parametrization make of ``observation``."""
        s = self.settings
        parametrization = self.parametrization(observation)
        granted = observation.private_parameters
        if granted:  # oracle grants: the client's true private parameters, fixed
            device = next(observation.model.parameters()).device
            parametrization = replace(parametrization, given_parameters={
                **{name: value.to(device) for name, value in granted.items()},
                **(parametrization.given_parameters or {})})
        return build_problem(observation, loss=s.loss, assumptions=s.assumptions, labels=s.labels,
                             batch_label_method=s.batch_labels, update_mode=s.update_mode,
                             update_transform=s.update_transform, bn_prior=s.bn_weight > 0,
                             prob_estimate=s.prob_estimate, seed=s.seed, parametrization=parametrization)

    def private_init(self, problem: InversionProblem) -> Variables:
        """``{param.<name>: [restarts, *shape]}`` for every private parameter the observation
        names and no grant fixes: one draw per restart from the parameter's own initial
        distribution (``initial_draw``), on CPU. The attacker does not know the client's
        values; the server model's copies (the public initialisation) are not used."""
        problem_obs = problem.observation
        given = problem.parametrization.given_parameters or {}
        out: Variables = {}
        for name in problem_obs.private_names:
            if name in given:
                continue
            draws = [initial_draw(problem_obs.model, name, derive_seed(self.settings.seed, "inversion", self.name,
                                                                         "private", name, r))
                     for r in range(self.settings.restarts)]
            out[PARAM_PREFIX + name] = torch.stack(draws)
        return out

    def reconstruct(self, observation: Observation) -> Reconstruction:
        s = self.settings
        start = time.perf_counter()
        problem = self.build(observation)
        notes = list(problem.notes)
        runs, scores, best = self.best_restart(problem, notes)
        if not math.isfinite(scores[best]):
            notes.append("every restart diverged (non-finite matching loss)")
        chosen = runs[best].variables
        with torch.no_grad():
            images = problem.parametrization.client_inputs(chosen).detach()
            labels = problem.parametrization.targets(chosen, problem.labels, hard=True).long()
        return Reconstruction(
            attack=self.name, images=images, labels=labels, loss_trace=runs[best].trace,
            wall_time=time.perf_counter() - start, threat_model=observation.threat_model.flags(),
            restarts=s.restarts, chosen_restart=best, restart_losses=scores,
            label_method=problem.label_method, config={**s.record(), **describe(problem)},
            assumed=problem.setting.assumed, notes=notes, variables=dict(chosen))

    def best_restart(self, problem: InversionProblem, notes: list[str]) -> tuple[list[Run], list[float], int]:
        """Run the restarts, score each by the attack's own matching loss, and pick the lowest
        (non-finite = +inf); a restart stopped by a non-finite value is noted."""
        runs = self.run_restarts(problem, notes)
        scores = [self.score(problem, run.variables) for run in runs]
        best = min(range(len(runs)), key=lambda r: scores[r])
        for r, run in enumerate(runs):
            if run.stopped is not None:
                notes.append(f"restart {r} stopped at iteration {run.stopped}: non-finite value "
                             f"(kept its last finite iterate)")
        return runs, scores, best

    def objective(self, problem: InversionProblem, functional: bool = False) -> Objective:
        """``matching + Σ weight · term`` over the attack's regularisers with weight > 0."""
        terms = self._terms(problem)
        inputs_of = problem.parametrization.client_inputs

        def objective(variables: Mapping[str, Tensor]) -> Tensor:
            inputs = inputs_of(variables)
            loss = problem.matching_of(variables, functional=functional, inputs=inputs)
            for weight, term in terms:
                loss = loss + weight * term(variables, inputs)
            return loss

        return objective

    def score(self, problem: InversionProblem, variables: Mapping[str, Tensor]) -> float:
        """The final matching loss that chooses a restart (non-finite → +inf)."""
        value = float(problem.matching_of(variables, create_graph=False,
                                          hard_labels=self.score_labels == "hard").detach())
        return value if math.isfinite(value) else math.inf

    def why_not_batched(self, problem: InversionProblem) -> str:
        """Empty when the restarts can run under vmap, else the reason they cannot."""
        if not self.batchable:
            return f"{self.name}'s optimiser keeps per-run state"
        if problem.labels is None:
            return "labels are optimised jointly"
        if problem.bn_prior is not None:
            return "the BN-statistics prior collects statistics through forward hooks"
        model = problem.simulator.model
        if problem.setting.model_mode == "train" and any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return "BatchNorm in train mode writes its running statistics during the forward"
        return ""

    def run_restarts(self, problem: InversionProblem, notes: list[str]) -> list[Run]:
        """Every restart, batched under vmap when possible, else one after another."""
        restarts = self.settings.restarts
        device = problem.device
        init = {name: value.to(device) for name, value in {**self.private_init(problem), **self.init(problem)}.items()}
        why_not = self.why_not_batched(problem) if restarts > 1 else "one restart"
        if restarts > 1 and why_not and self.batchable:
            notes.append(f"{restarts} restarts run one after another: {why_not}")
        if not why_not:
            try:
                runs = self.optimise_batched(problem, init)
                notes.append(f"{restarts} restarts batched with torch.func.vmap")
                return runs
            except RuntimeError as exc:  # a model vmap cannot run: fall back, say why
                notes.append(f"vmap over restarts failed ({str(exc).splitlines()[0][:120]}); ran sequentially")
        return [self.optimise(problem, {name: value[r] for name, value in init.items()}) for r in range(restarts)]

    def optimise(self, problem: InversionProblem, init: Mapping[str, Tensor]) -> Run:
        """One restart with plain autograd, stopped at its first non-finite value."""
        variables = {name: value.clone().requires_grad_(True) for name, value in init.items()}
        leaves = list(variables.values())
        objective = self.objective(problem, functional=False)

        def value() -> Tensor:
            return objective(variables)

        def value_and_grad() -> tuple[Tensor, Variables]:
            loss = value()
            grads = torch.autograd.grad(loss, leaves)
            return loss, dict(zip(variables, grads, strict=True))

        step = self.stepper(problem, variables, Evaluation(variables, value, value_and_grad))
        trace: list[float] = []
        last_good = [v.detach().clone() for v in leaves]
        stopped = None
        for it in range(self.settings.iterations):
            loss = float(step(it))
            if not (math.isfinite(loss) and all(torch.isfinite(v).all() for v in leaves)):
                with torch.no_grad():  # an iterate can diverge; keep the last finite one
                    for v, good in zip(leaves, last_good, strict=True):
                        v.copy_(good)
                stopped = it
                break
            trace.append(loss)
            for v, good in zip(leaves, last_good, strict=True):
                good.copy_(v.detach())
        return Run({name: v.detach() for name, v in variables.items()}, trace, stopped)

    def optimise_batched(self, problem: InversionProblem, init: Mapping[str, Tensor]) -> list[Run]:
        """All restarts at once: ``vmap`` over the per-restart objective and its gradient;
        a restart that turns non-finite is frozen at its last finite iterate."""
        restarts = self.settings.restarts
        variables = {name: value.clone() for name, value in init.items()}
        leaves = list(variables.values())
        grad_and_value = torch.func.vmap(torch.func.grad_and_value(self.objective(problem, functional=True)),
                                         randomness="different")

        def value_and_grad() -> tuple[Tensor, Variables]:
            grads, loss = grad_and_value(variables)
            return loss, grads

        step = self.stepper(problem, variables, Evaluation(variables, None, value_and_grad))
        traces: list[list[float]] = [[] for _ in range(restarts)]
        stopped: list[int | None] = [None] * restarts
        last_good = [v.detach().clone() for v in leaves]
        for it in range(self.settings.iterations):
            losses = step(it).detach()
            finite = torch.isfinite(losses)
            for v in leaves:
                finite = finite & torch.isfinite(v.detach().reshape(restarts, -1)).all(dim=1)
            for r, (ok, loss) in enumerate(zip(finite.tolist(), losses.tolist(), strict=True)):
                if stopped[r] is not None:
                    continue
                if ok:
                    traces[r].append(loss)
                else:
                    stopped[r] = it
            if any(r is not None for r in stopped):
                keep = torch.tensor([r is None for r in stopped], device=losses.device)
                with torch.no_grad():
                    for v, good in zip(leaves, last_good, strict=True):
                        v.copy_(torch.where(keep.reshape(-1, *[1] * (v.dim() - 1)), v, good))
            for v, good in zip(leaves, last_good, strict=True):
                good.copy_(v.detach())
        return [Run({name: v[r].detach().clone() for name, v in variables.items()}, traces[r], stopped[r])
                for r in range(restarts)]

    def _terms(self, problem: InversionProblem) -> list[tuple[float, Term]]:
        out: list[tuple[float, Term]] = []
        for entry in self.regularisers:
            regulariser = REGULARISERS.get(entry) if isinstance(entry, str) else entry
            if not hasattr(self.settings, regulariser.weight):
                raise ValueError(f"{self.name}: regulariser {regulariser.name!r} takes its weight from the "
                                 f"setting {regulariser.weight!r}, which {type(self.settings).__name__} lacks")
            weight = getattr(self.settings, regulariser.weight)
            if weight == 0:
                continue
            term = regulariser.build(problem)
            if term is not None:
                out.append((weight, term))
        return out


def initial_draw(model: nn.Module, name: str, seed: int) -> Tensor:
    """A fresh draw of parameter ``name`` of ``model`` from its initial distribution, on CPU:
    its module's ``reset_parameters`` (``nn.Linear``'s Kaiming-uniform, ``nn.Conv2d``'s, …)
    run on a CPU copy under ``seed``; N(0, 1) for a parameter no such module owns (HyperFL's
    embedding: ``nn.Embedding``'s init in the reference). Global RNG untouched."""
    module_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(module_name)
    own = dict(owner.named_parameters(recurse=False))
    if leaf not in own:
        raise ValueError(f"{name!r} is not a parameter of the model")
    if callable(getattr(owner, "reset_parameters", None)):
        clone = copy.deepcopy(owner).to("cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            clone.reset_parameters()  # type: ignore[operator]
        return getattr(clone, leaf).detach().clone()
    return torch.randn(own[leaf].shape, generator=torch_generator(seed), dtype=own[leaf].dtype)
