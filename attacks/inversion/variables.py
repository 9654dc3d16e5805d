"""An attack's unknowns as named optimisation variables, and the parametrization that
turns them into what the simulated client computes with (DESIGN: unknowns are
optimisation variables — one mechanism, many attacks).

Variables are a ``dict[str, Tensor]``; their names say what they stand for:

- the input variable of the ``InputMap`` (``"x"`` for pixels, ``"z"`` for a generator's
  latent, or the features at a generator's split point): the client's inputs;
- ``"logits"``: jointly optimised soft labels (DLG), softmaxed into the cross-entropy;
- ``"mask.<site>"``: the dropout masks of the model's ``DropoutSite`` named ``<site>``,
  shape ``[steps, *mask]`` — entry ``k`` is replayed on the site's ``k``-th forward,
  i.e. in local step ``k`` (``fedarena.fl_core.models.dropout.dropout_masks(model, given=...)``);
- ``"param.<name>"``: a parameter of the client's model the server does not know (a
  private embedding or head), passed as a ``torch.func.functional_call`` state
  override. Such a parameter is not part of the shared update: the simulated update
  has zeros in its slots when it is also a trainable parameter of the layout, and it
  stays fixed over unrolled local steps. A protocol's private parameters
  (``Observation.private_names``: HyperFL's embedding and head, frozen in the observed
  model, whose forward is the hypernetwork chain) become such variables in
  ``OptimizationAttack`` unless an oracle grant gives their values, which then enter as
  ``Parametrization.given_parameters``.

Anything else is free for the attack's own use (read by its regularisers or its
step), and is ignored by the simulated client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

Variables = dict[str, Tensor]
LOGITS = "logits"
MASK_PREFIX = "mask."
PARAM_PREFIX = "param."


class InputMap:
    """Variables → the client's input batch (in the model's normalised input space)."""

    variable: str = "x"

    def __call__(self, variables: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Pixels(InputMap):
    """The identity: the variable *is* the image batch (DLG, Inverting Gradients)."""

    variable: str = "x"

    def __call__(self, variables: Mapping[str, Tensor]) -> Tensor:
        return variables[self.variable]


@dataclass(frozen=True)
class GeneratorInputs(InputMap):
    """``output(tail(v))``: images from a generator run from its latent (``tail`` the whole
    generator) or from an intermediate layer's features (``tail`` the part after the
    split point, see ``split_generator``), as GIFD optimises first the latent, then the
    features. ``output`` maps the generator's range into the model's input space
    (e.g. ``[-1, 1]`` → normalised pixels); identity when None. The generator's own
    parameters are never optimised here (freeze them with ``requires_grad_(False)``)."""

    tail: nn.Module
    variable: str = "z"
    output: Callable[[Tensor], Tensor] | None = None

    def __call__(self, variables: Mapping[str, Tensor]) -> Tensor:
        images = self.tail(variables[self.variable])
        return images if self.output is None else self.output(images)


def split_generator(generator: nn.Sequential, at: int | str) -> tuple[nn.Sequential, nn.Sequential]:
    """``(head, tail)`` with ``tail(head(z)) == generator(z)``: ``head`` runs the children
    before the split point (a child's index or name), ``tail`` the rest. ``head(z)``
    gives the features to initialise a feature variable from a latent."""
    if not isinstance(generator, nn.Sequential):
        raise TypeError(f"split_generator needs an nn.Sequential generator (its children in call order), "
                        f"got {type(generator).__name__}; pass the head and tail modules yourself instead")
    names = [name for name, _ in generator.named_children()]
    if isinstance(at, str):
        if at not in names:
            raise ValueError(f"unknown split point {at!r}; the generator's children are {names}")
        index = names.index(at)
    else:
        index = at
    if not 0 <= index <= len(names):
        raise ValueError(f"split point {at} is outside the generator's {len(names)} children")
    return generator[:index], generator[index:]


@dataclass(frozen=True)
class Parametrization:
    """Named variables → (a) the client's inputs and targets, (b) the unknown parts of its
    model (dropout masks, private parameters), by the naming rules of this module."""

    inputs: InputMap = field(default_factory=Pixels)
    #: fixed masks ``{site: [mask per local step]}`` for sites without a ``mask.<site>``
    #: variable: the true masks of an explicitly granted oracle (well-informed IG)
    given_masks: Mapping[str, Sequence[Tensor]] | None = None
    #: fixed private parameters ``{name: value}`` for those without a ``param.<name>``
    #: variable: the true values of an oracle grant (HyperFL's embedding / head known)
    given_parameters: Mapping[str, Tensor] | None = None

    def client_inputs(self, variables: Mapping[str, Tensor]) -> Tensor:
        return self.inputs(variables)

    def targets(self, variables: Mapping[str, Tensor], labels: Tensor | None, hard: bool = False) -> Tensor:
        """The cross-entropy targets: known/recovered ``labels``, else the soft labels
        ``softmax(logits)`` (their argmax with ``hard``)."""
        if labels is not None:
            return labels
        if LOGITS not in variables:
            raise ValueError("labels are optimised but the variables hold no 'logits'")
        logits = variables[LOGITS]
        return logits.argmax(dim=-1) if hard else F.softmax(logits, dim=-1)

    def masks(self, variables: Mapping[str, Tensor]) -> dict[str, list[Tensor]] | None:
        """``{site: [mask per local step]}`` for ``dropout_masks(given=...)``, or None."""
        out = {site: list(masks) for site, masks in (self.given_masks or {}).items()}
        out.update({name[len(MASK_PREFIX):]: list(value.unbind(0)) for name, value in variables.items()
                    if name.startswith(MASK_PREFIX)})
        return out or None

    def parameters(self, variables: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        """``{parameter name: value}`` overrides of the client's model, or None."""
        out = dict(self.given_parameters or {})
        out.update({name[len(PARAM_PREFIX):]: value for name, value in variables.items()
                    if name.startswith(PARAM_PREFIX)})
        return out or None
