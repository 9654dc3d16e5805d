"""Defenses: robust aggregation, MUD-HoG, DP and update perturbations, HyperFL.

Importing the package registers every defense in ``defenses.registry``.
"""

from . import aggregation  # noqa: F401  (registration side effects)
from . import privacy as _privacy  # noqa: F401  (registration side effects)
from .registry import AGGREGATORS, PRIVACY_DEFENSES, ClientDefense

__all__ = ["AGGREGATORS", "PRIVACY_DEFENSES", "ClientDefense"]
