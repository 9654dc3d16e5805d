"""A robust aggregator on your own stack of updates.

Aggregators take the ``[n, d]`` stack of client updates (one flat vector per client) and
return the aggregate and the trust each client got, so you can see who was excluded.
Here 16 honest updates and 4 attackers, under IPM (which robust rules stop) and A Little Is
Enough (made to slip past them: the plain mean does best there, as Baruch et al. report);
``poison_stack`` fills the attackers' rows from the honest ones, no simulation needed.

    python examples/robust_aggregation.py
"""

from __future__ import annotations

import argparse

import torch

from fedarena.attacks.poisoning import ALIE, IPM, poison_stack
from fedarena.defenses.aggregation import Krum, TrimmedMean
from fedarena.defenses.registry import AGGREGATORS


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=1000, help="entries per update")
    args = parser.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    true_direction = torch.randn(args.dim, generator=g)
    updates = true_direction + 0.5 * torch.randn(args.clients, args.dim, generator=g)  # your clients' updates
    attackers = list(range(args.attackers))
    honest_mean = updates[args.attackers:].mean(0)
    rules = {"mean": AGGREGATORS.build("fedavg"), "median": AGGREGATORS.build("median"),
             "trimmed mean": TrimmedMean(f=args.attackers), "krum": Krum(f=args.attackers)}

    errors = {}
    for attack in (IPM(epsilon=5.0), ALIE()):  # a crude attack the robust rules stop; one made to slip past them
        attacked = poison_stack(attack, updates, attackers)  # the attackers' rows replaced
        for name, rule in rules.items():
            result = rule(attacked)
            error = float((result.aggregate - honest_mean).norm() / honest_mean.norm())
            errors[f"{type(attack).__name__}/{name}"] = error
            trusted = int(result.trusted[args.attackers:].sum())
            print(f"{type(attack).__name__:>4} {name:>12}: relative error {error:.3f}; trusted "
                  f"{int(result.trusted[:args.attackers].sum())}/{args.attackers} attackers, "
                  f"{trusted}/{args.clients - args.attackers} honest clients")
    return errors


if __name__ == "__main__":
    main()
