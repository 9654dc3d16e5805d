"""Defenses: robust aggregation, MUD-HoG, DP and update perturbations, HyperFL.

Importing the package registers every defense in ``fedarena.defenses.registry``.
"""

from . import aggregation  # noqa: F401  (registration side effects)
from . import privacy as _privacy  # noqa: F401  (registration side effects)
from . import protocols as _protocols  # noqa: F401  (registers hyperfl in fedarena.fl_core.protocol.PROTOCOLS)
from .registry import AGGREGATORS, PRIVACY_DEFENSES, ClientDefense

__all__ = ["AGGREGATORS", "PRIVACY_DEFENSES", "ClientDefense"]
