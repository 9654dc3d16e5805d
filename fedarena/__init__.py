"""FedArena's one import namespace: ``fedarena.attacks``, ``fedarena.defenses``,
``fedarena.fl_core``, ``fedarena.benchmarks``, and the public ``fedarena.metrics`` and
``fedarena.figures``.

Why one namespace: installed as four top-level packages, FedArena would take the names
``attacks``, ``defenses``, ``fl_core`` and ``benchmarks`` from every research script, and
a script's own ``attacks.py`` would shadow it (or be shadowed). FedArena's own code imports
only ``fedarena.*`` names, so a user's modules of those names are never touched.

The repository keeps its folders at the top (``attacks/`` beside ``fedarena/``). A wheel
or an editable install maps them under ``fedarena`` (``setup.py``); run from a checkout
(the repository root first on ``sys.path``, as ``python -m`` and the tests have it), the
finder below serves exactly those four names from the folders beside this one. Nothing
is imported here, so ``import fedarena`` stays instant.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

PACKAGES = ("attacks", "defenses", "fl_core", "benchmarks")

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``fedarena.<package>`` in the checkout's ``<package>/`` folder (and nothing else:
    its subpackages are found through the package's own ``__path__``)."""

    names = frozenset(f"{__name__}.{p}" for p in PACKAGES)

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 (the finder protocol)
        if fullname not in self.names:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [_ROOT])


def _in_checkout() -> bool:
    """The four packages are folders beside ``fedarena/`` (not inside it, as in a wheel)."""
    return not os.path.isdir(os.path.join(_HERE, "fl_core")) and all(
        os.path.isfile(os.path.join(_ROOT, p, "__init__.py")) for p in PACKAGES)


# First on ``sys.meta_path``: an installed FedArena's finder (an editable install of another
# checkout, or a wheel) must never serve this checkout's subpackages from elsewhere.
if _in_checkout() and not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _CheckoutFinder())
