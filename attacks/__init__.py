"""Attacks on federated learning: gradient inversion (privacy) and poisoning (robustness).

Importing the package registers every attack in ``fedarena.attacks.registry``.
"""

from . import inversion, poisoning  # noqa: F401  (registration side effects)
from .registry import INVERSION_ATTACKS, POISONING_ATTACKS

__all__ = ["INVERSION_ATTACKS", "POISONING_ATTACKS"]
