"""Every registry a suite may name, in one place: the harness wires components by name only.

A new attack, defense, dataset or model becomes usable in suites (and visible in
``fedarena list``) by being a registry entry; nothing here needs to change.
Registries are imported lazily so that ``fedarena --version`` stays instant and a
test can build a ``Components`` from its own tiny registries.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from fedarena.fl_core.registry import Registry

# Registry attribute -> (module to import for registration side effects, module holding it, name).
_SOURCES: dict[str, tuple[str, str, str]] = {
    "datasets": ("fedarena.fl_core.datasets", "fedarena.fl_core.datasets", "DATASETS"),
    "models": ("fedarena.fl_core.models", "fedarena.fl_core.models", "MODELS"),
    "partitioners": ("fedarena.fl_core.partition", "fedarena.fl_core.partition", "PARTITIONERS"),
    "corruptions": ("fedarena.fl_core.corruptions", "fedarena.fl_core.corruptions", "CORRUPTIONS"),
    "inversion_attacks": ("fedarena.attacks", "fedarena.attacks.registry", "INVERSION_ATTACKS"),
    "poisoning_attacks": ("fedarena.attacks", "fedarena.attacks.registry", "POISONING_ATTACKS"),
    "privacy_defenses": ("fedarena.defenses", "fedarena.defenses.registry", "PRIVACY_DEFENSES"),
    "aggregators": ("fedarena.defenses", "fedarena.defenses.registry", "AGGREGATORS"),
    # fedarena.defenses.protocols registers hyperfl
    "protocols": ("fedarena.defenses", "fedarena.fl_core.protocol", "PROTOCOLS"),
}


@dataclass(frozen=True)
class Components:
    """The registries a suite is validated against and its runs are built from."""

    datasets: Registry
    models: Registry
    partitioners: Registry
    corruptions: Registry
    inversion_attacks: Registry
    poisoning_attacks: Registry
    privacy_defenses: Registry
    aggregators: Registry
    protocols: Registry


@cache
def default_components() -> Components:
    """The real registries, with every package imported so all entries are registered."""
    regs = {}
    for attr, (package, module, name) in _SOURCES.items():
        importlib.import_module(package)
        regs[attr] = getattr(importlib.import_module(module), name)
    return Components(**regs)
