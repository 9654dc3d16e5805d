"""Poisoning attacks and defenses inside your own federated training loop.

A plain PyTorch FedAvg loop over scikit-learn's digits (10 clients, one local epoch each),
with FedArena dropped in at the two places a researcher needs it: the attackers replace
their updates with an omniscient attack (``poison_stack``: IPM, ALIE, min-max, min-sum …
on the round's ``[n, d]`` stack), and the server combines the stack with a robust rule
(here coordinate median) after every client clipped its own update (``apply_defense``).

    python examples/poisoning_in_your_loop.py --rounds 10
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from fedarena.attacks.poisoning import IPM, poison_stack
from fedarena.defenses.aggregation import CoordinateMedian
from fedarena.defenses.privacy import apply_defense, clipping
from fedarena.fl_core import FedAvg
from fedarena.fl_core.vectors import model_to_vector, vector_to_model


def local_delta(model: nn.Module, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
    """One client's round: one epoch of SGD from the global weights; returns w_after − w_before."""
    vector_to_model(start, model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(0, len(x), 16):
        optimizer.zero_grad()
        F.cross_entropy(model(x[i:i + 16]), y[i:i + 16]).backward()
        optimizer.step()
    return model_to_vector(model) - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--attackers", type=int, default=3)
    args = parser.parse_args(argv)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    shards = train.chunk(args.clients)
    attackers = list(range(args.attackers))

    accuracy = {}
    for rule_name, rule in {"mean": FedAvg(), "median": CoordinateMedian()}.items():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        weights = model_to_vector(model)
        for r in range(args.rounds):
            updates = torch.stack([local_delta(model, weights, x[s], y[s], lr=0.1) for s in shards])
            updates = poison_stack(IPM(epsilon=3.0), updates, attackers, round=r)  # the attackers' uploads
            updates = apply_defense(clipping(max_norm=5.0), updates, round=r)  # every client clips its own
            weights = weights + rule(updates).aggregate
        vector_to_model(weights, model)
        with torch.no_grad():
            accuracy[rule_name] = float((model(x[test]).argmax(1) == y[test]).float().mean())
        print(f"{rule_name:>6} under IPM ({args.attackers}/{args.clients} attackers): "
              f"test accuracy {accuracy[rule_name]:.3f} after {args.rounds} rounds")
    return accuracy


if __name__ == "__main__":
    main()
