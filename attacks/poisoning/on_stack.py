"""An omniscient model-poisoning attack on a plain ``[n, d]`` stack of updates (issue #18).

A researcher with their own update stack should not have to fill the simulation's
nine-field ``RoundContext``: ``poison_stack`` builds it from the stack and the rows the
attackers hold, with the same generator the simulation gives a single colluding group in
that round (``torch_generator(seed, "update_attack", 0, round)``), so a randomised attack
draws the numbers it would draw inside ``fl_core.Simulation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.simulation import RoundContext, UpdateAttack
from fedarena.fl_core.updates import UpdateKind


def poison_stack(
    attack: UpdateAttack,
    updates: Tensor,
    malicious: Sequence[int],
    *,
    num_samples: Tensor | Sequence[float] | None = None,
    global_params: Tensor | None = None,
    kind: UpdateKind = "delta",
    round: int = 0,
    seed: int = 0,
) -> Tensor:
    """``updates`` (``[n, d]``, every client's benign update) with the ``malicious`` rows
    replaced by what ``attack`` crafts from them and the honest rows (a new tensor).

    ``attack``: any model-poisoning attack (``ALIE()``, ``IPM(epsilon=0.5)``, ``MinMax()``,
    ``MinSum()``, …). ``num_samples``: the attackers' sample counts (ones when None);
    ``global_params``: the round's global weights (zeros when None; only attacks that read
    them need it); ``kind``: what the rows are (``"delta"`` for FedAvg, ``"gradient"``).
    """
    if not isinstance(updates, Tensor) or updates.dim() != 2 or not updates.is_floating_point():
        shape = tuple(updates.shape) if isinstance(updates, Tensor) else type(updates).__name__
        raise ValueError(f"poison_stack: updates must be a float [n, d] stack, got {shape}")
    n, d = updates.shape
    rows = [int(i) for i in malicious]
    if not rows:
        raise ValueError("poison_stack: malicious names no row; there is nothing to craft")
    if len(set(rows)) != len(rows) or not all(0 <= i < n for i in rows):
        raise ValueError(f"poison_stack: malicious must be distinct row indices in [0, {n}), got {rows}")
    if kind not in ("delta", "gradient"):
        raise ValueError(f"poison_stack: kind must be 'delta' or 'gradient', got {kind!r}")
    counts = torch.ones(len(rows)) if num_samples is None else torch.as_tensor(num_samples, dtype=torch.float32)
    if counts.shape != (len(rows),):
        raise ValueError(f"poison_stack: num_samples must hold one count per malicious row ({len(rows)}), "
                         f"got shape {tuple(counts.shape)}")
    params = updates.new_zeros(d) if global_params is None else global_params
    if params.shape != (d,):
        raise ValueError(f"poison_stack: global_params must be a [{d}] vector, got {tuple(params.shape)}")
    attacked = set(rows)
    honest = updates[[i for i in range(n) if i not in attacked]]
    ctx = RoundContext(round=round, honest=honest, own=updates[rows], client_ids=rows,
                       num_samples=counts.to(updates.device), num_clients=n, global_params=params, kind=kind,
                       generator=torch_generator(seed, "update_attack", 0, round))
    crafted = attack.craft(ctx)
    if crafted.shape != ctx.own.shape:
        raise ValueError(f"poison_stack: {type(attack).__name__} crafted updates of shape {tuple(crafted.shape)}, "
                         f"expected {tuple(ctx.own.shape)}")
    out = updates.clone()
    out[rows] = crafted.to(out.dtype)
    return out
