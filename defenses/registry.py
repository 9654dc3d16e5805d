"""Registries of defenses, by the names suites use.

``AGGREGATORS``: name → ``fedarena.fl_core.aggregation.Aggregator`` subclass (robust aggregation,
MUD-HoG). ``PRIVACY_DEFENSES``: name → factory returning a ``ClientDefense`` (DP-SGD,
client-level DP, update perturbations), i.e. what a defense changes on the client side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedarena.fl_core.aggregation import Aggregator
from fedarena.fl_core.client import LocalTrainer
from fedarena.fl_core.registry import Registry
from fedarena.fl_core.simulation import UpdateTransform

AGGREGATORS: Registry = Registry("aggregator")
PRIVACY_DEFENSES: Registry = Registry("privacy defense")


@dataclass
class ClientDefense:
    """What a privacy defense installs: a local trainer (DP-SGD), transforms of the
    upload (noise, clipping, pruning…) and/or a server-side aggregator (central DP).

    A part that spends privacy budget is a ``fedarena.defenses.privacy.Accountant``; the ε of the
    whole defense is ``fedarena.defenses.privacy.defense_epsilon(defense)`` (add/remove adjacency)
    and ``fedarena.defenses.privacy.defense_epsilons(defense)`` per adjacency."""

    trainer: LocalTrainer | None = None
    transforms: list[UpdateTransform] = field(default_factory=list)
    aggregator: Aggregator | None = None
