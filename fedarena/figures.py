"""FedArena's figures, from one stable place (issue #18).

``reconstruction_grid(truth, {"label": GridRow(images, ...)}, path)``: the private images
above each attack's reconstructions, written to ``path`` (the suffix picks the format);
``loss_curves({"label": trace}, path)``: attack objectives per iteration. The report's
charts (``accuracy_curves``, ``detection_bars``, ``privacy_utility`` of ``Curve``, ``Bars``
and ``Point`` values) return the image bytes.

The implementations live in ``fedarena.benchmarks.figures``; these names are the public
surface a research script should import.
"""

from fedarena.benchmarks.figures.plots import GridRow, loss_curves, reconstruction_grid
from fedarena.benchmarks.figures.report import Bars, Curve, Point, accuracy_curves, detection_bars, privacy_utility

__all__ = ["GridRow", "loss_curves", "reconstruction_grid", "Bars", "Curve", "Point", "accuracy_curves",
           "detection_bars", "privacy_utility"]
