"""Robust aggregation rules (DESIGN: ``Aggregator``), registered in ``AGGREGATORS``.

Every rule subclasses ``fedarena.fl_core.aggregation.Aggregator``: it receives only finite rows
(the base class rejects the others) and returns the aggregate plus per-client trust.
Importing this package registers ``fedavg`` (fl_core's FedAvg), ``median``,
``trimmed_mean``, ``krum``, ``multi_krum``, ``bulyan``, ``geometric_median``,
``centered_clipping``, ``norm_clipping``, ``nnm``, ``foolsgold`` and ``mud_hog``
(``defenses/mud_hog.py``, imported here so that ``import defenses`` registers it).
"""

from fedarena.fl_core.aggregation import FedAvg

from .. import mud_hog as _mud_hog  # noqa: F401  (registration side effect)
from ..registry import AGGREGATORS
from .clipping import CenteredClipping, NormClipping
from .coordinate import CoordinateMedian, TrimmedMean, coordinate_median, coordinate_sort
from .foolsgold import FoolsGold
from .geometric_median import GeometricMedian
from .krum import Bulyan, Krum, MultiKrum
from .nnm import NNM

AGGREGATORS.add("fedavg", FedAvg, "Sample-weighted mean (McMahan et al., 2017); no robustness.")

__all__ = [
    "FedAvg", "CoordinateMedian", "TrimmedMean", "Krum", "MultiKrum", "Bulyan", "GeometricMedian",
    "CenteredClipping", "NormClipping", "NNM", "FoolsGold", "coordinate_median", "coordinate_sort",
]
