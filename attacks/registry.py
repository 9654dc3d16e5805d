"""Registries of attacks, by the names suites use.

``INVERSION_ATTACKS``: name → class whose instances have
``reconstruct(observation) -> Reconstruction``.
``POISONING_ATTACKS``: name → class whose instances are either a data attack
(``poison(data, generator)``) or a model-poisoning attack (``craft(ctx)``), see
``fedarena.fl_core.simulation``.
"""

from fedarena.fl_core.registry import Registry

INVERSION_ATTACKS: Registry = Registry("inversion attack")
POISONING_ATTACKS: Registry = Registry("poisoning attack")
