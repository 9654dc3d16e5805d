"""Dropout sites whose masks are under the caller's control (DESIGN: determinism).

``nn.Dropout`` draws its masks from the global RNG and keeps no record of them. A
client that trains with dropout computes its update through a random sub-network, so
for reproducibility and for attacks that treat the masks as unknowns (Dropout
Inversion, Scheliga et al. 2023) every model builds its dropout layers as
``DropoutSite``: an ``nn.Dropout`` that, inside ``dropout_masks(...)``,

- draws its masks from a given ``torch.Generator`` (the client's own stream), and/or
- replays masks it is given (the attacker's optimisation variables, or the true masks
  for an oracle), in call order per site (one mask per forward: one per local step),
- records the masks it used (ground-truth side only: ``PrivateData.dropout_masks``).

Outside that context, or in eval mode, or at rate 0, a site is exactly ``nn.Dropout``.
A mask multiplies the input and is rescaled by ``1 / (1 − p)`` as ``nn.Dropout`` does;
given masks may be continuous (DIA optimises them in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

MaskRecord = dict[str, list[Tensor]]


@dataclass
class _MaskSource:
    generator: torch.Generator | None
    given: Mapping[str, Sequence[Tensor]] | None
    record: MaskRecord | None
    calls: dict[str, int] = field(default_factory=dict)
    active: bool = True

    def __deepcopy__(self, memo: dict[int, object]) -> _MaskSource:
        # A model copied inside the block (DP-SGD trains an Opacus copy of the worker) is
        # the same client's model: it draws from the same generator into the same record.
        return self

    def mask(self, site: str, x: Tensor, keep: float) -> Tensor:
        call = self.calls.get(site, 0)
        self.calls[site] = call + 1
        if self.given is not None and site in self.given:
            masks = self.given[site]
            if call >= len(masks):
                raise ValueError(f"dropout site {site!r} is called {call + 1} times but {len(masks)} masks were given")
            mask = masks[call]
        elif self.generator is not None:
            mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator)
        else:
            mask = torch.empty_like(x).bernoulli_(keep)
        if self.record is not None:
            self.record.setdefault(site, []).append(mask.detach())
        return mask


class DropoutSite(nn.Dropout):
    """``nn.Dropout`` whose masks ``dropout_masks`` can draw from a generator, replay and record."""

    _source: _MaskSource | None = None
    _site: str = ""

    def forward(self, x: Tensor) -> Tensor:
        source = self._source
        if source is None or not source.active or not self.training or self.p == 0:
            return super().forward(x)
        keep = 1.0 - self.p
        return x * source.mask(self._site, x, keep) / keep


@contextmanager
def dropout_masks(
    model: nn.Module,
    *,
    generator: torch.Generator | None = None,
    given: Mapping[str, Sequence[Tensor]] | None = None,
    record: bool = False,
) -> Iterator[MaskRecord]:
    """Within the block, ``model``'s dropout sites draw from ``generator`` (sites absent
    from ``given``) or replay ``given[site][k]`` on their k-th call; yields the record
    ``{site: [mask per call]}``, filled when ``record`` is True.

    A site that is not a ``DropoutSite`` (a plain ``nn.Dropout`` in a user's model) is an
    error when a generator or masks are requested: its masks would silently come from
    the global RNG.
    """
    plain = [n for n, m in model.named_modules()
             if isinstance(m, nn.modules.dropout._DropoutNd) and not isinstance(m, DropoutSite) and m.p > 0]
    if plain:
        raise TypeError(f"dropout layers {plain} are plain torch dropout modules; build them as "
                        "fedarena.fl_core.models.dropout.DropoutSite so their masks can be seeded and recorded")
    sites = [(n, m) for n, m in model.named_modules() if isinstance(m, DropoutSite)]
    unknown = sorted(set(given or {}) - {n for n, _ in sites})
    if unknown:
        raise ValueError(f"masks given for unknown dropout sites {unknown}; the model's sites are "
                         f"{[n for n, _ in sites]}")
    out: MaskRecord = {}
    source = _MaskSource(generator, given, out if record else None)
    previous = [(m, m._source, m._site) for _, m in sites]
    for name, module in sites:
        module._source, module._site = source, name
    try:
        yield out
    finally:
        source.active = False  # copies made inside the block fall back to plain nn.Dropout
        for module, old, site in previous:
            module._source, module._site = old, site
