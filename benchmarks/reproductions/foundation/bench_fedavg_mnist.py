"""Foundation benchmark: FedAvg on MNIST (accuracy) and the cost of one round (speed).

Accuracy: ``lenet5``, 20 clients, Dirichlet(α = 0.5) label skew, FedAvg, 20 rounds;
the issue asks for ≥ 97 % test accuracy within 20 rounds.
Speed: one FedAvg round of 100 clients × 600 images (``lenet5``, 1 local epoch, batch
32, SGD) in FedArena beside a plain sequential PyTorch loop over the same clients (a
fresh model per client, load the global weights, train, average the state dicts),
both timed in this one run, so the ratio is meaningful on a shared machine.

    python -m fedarena.benchmarks.reproductions.foundation.bench_fedavg_mnist [--part both|accuracy|speed] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fedarena.benchmarks.harness.atomic import write_atomic
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.reproductions import RESULTS, command
from fedarena.fl_core import Client, FederationConfig, LocalTraining, Simulation
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model
from fedarena.fl_core.partition import partition


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-repeats", type=int, default=5)
    parser.add_argument("--part", choices=("accuracy", "speed", "both"), default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for fedavg_mnist*.md")
    add_device_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    header = [
        f"- command: `{command('fedarena.benchmarks.reproductions.foundation.bench_fedavg_mnist', argv)}`",
        f"- machine: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{platform.processor() or platform.machine()}",
        f"- date: {dt.date.today().isoformat()}",
        "",
    ]
    if args.part in ("accuracy", "both"):
        write(args.out / "fedavg_mnist.md", ["# FedAvg on MNIST: accuracy", "", *header,
                                             *accuracy_run(train, test, args)])
    if args.part in ("speed", "both"):
        write(args.out / "fedavg_round_speed.md", ["# FedAvg round cost: FedArena vs a plain loop", "", *header,
                                                   *speed_run(train, args.speed_repeats, args.seed)])
    return 0


def write(path: Path, lines: list[str]) -> None:
    """Atomically: a table is either complete or absent."""
    write_atomic(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


def accuracy_run(train, test, args) -> list[str]:
    parts = partition("dirichlet", train.labels, args.clients, args.seed, alpha=args.alpha)
    clients = [Client(i, train.subset(idx)) for i, idx in enumerate(parts)]
    model = build_model("lenet5", 10, train.input_shape, seed=args.seed).to(args.device)
    local = LocalTraining(lr=args.lr, epochs=args.local_epochs, batch_size=32)
    cfg = FederationConfig(rounds=args.rounds, local=local, seed=args.seed)
    sim = Simulation(model, clients, cfg, test, progress=True)
    start = time.perf_counter()
    history = sim.run()
    seconds = time.perf_counter() - start
    for r in history.rounds:
        print(f"round {r.round + 1:2d}: accuracy {r.accuracy:.4f}  ({r.seconds:.1f} s)")
    best = max(history.accuracies)
    first97 = next((r.round + 1 for r in history.rounds if r.accuracy and r.accuracy >= 0.97), None)
    sizes = [len(p) for p in parts]
    return [
        f"## Accuracy: lenet5, {args.clients} clients, Dirichlet α = {args.alpha}, FedAvg",
        "",
        f"Local training: SGD lr {args.lr}, {args.local_epochs} epoch(s), batch 32; all clients every round; "
        f"client sizes {min(sizes)}–{max(sizes)}; seed {args.seed}.",
        "",
        "| round | test accuracy |",
        "| ---: | ---: |",
        *[f"| {r.round + 1} | {r.accuracy:.4f} |" for r in history.rounds],
        "",
        f"Final {history.final_accuracy:.4f}, best {best:.4f}; first round ≥ 97 %: {first97}; "
        f"total {seconds:.0f} s ({seconds / args.rounds:.1f} s per round).",
        "",
    ]


def speed_run(train, repeats: int, seed: int) -> list[str]:
    n_clients, per_client = 100, 600
    idx = torch.arange(n_clients * per_client).view(n_clients, per_client)
    clients = [Client(i, train.subset(idx[i])) for i in range(n_clients)]
    local = LocalTraining(lr=0.01, epochs=1, batch_size=32)
    model = build_model("lenet5", 10, train.input_shape, seed=seed)
    sim = Simulation(copy.deepcopy(model), clients, FederationConfig(rounds=repeats + 1, local=local, seed=seed),
                     progress=False)
    sim.run_round(0)  # warm-up of both, untimed: a federation runs many rounds
    plain_round(model, clients, local, 0)
    fedarena, plain = [], []
    for rep in range(repeats):
        # alternate which goes first, so drifting machine load does not favour one side
        order = ("fedarena", "plain") if rep % 2 == 0 else ("plain", "fedarena")
        for which in order:
            start = time.perf_counter()
            if which == "fedarena":
                sim.run_round(rep + 1)
            else:
                plain_round(model, clients, local, rep + 1)
            (fedarena if which == "fedarena" else plain).append(time.perf_counter() - start)
        print(f"speed repeat {rep}: fedarena {fedarena[-1]:.2f} s, plain loop {plain[-1]:.2f} s")
    f, p = min(fedarena), min(plain)
    fm, pm = statistics.median(fedarena), statistics.median(plain)
    return [
        f"## Speed: one FedAvg round, {n_clients} clients × {per_client} images, lenet5, 1 epoch, batch 32, SGD",
        "",
        f"{repeats} timed rounds of each after one untimed warm-up round of each, measured in this run, "
        "alternating which goes first.",
        "",
        "| implementation | best s per round | median s per round |",
        "| --- | ---: | ---: |",
        f"| FedArena `Simulation.run_round` | {f:.2f} | {fm:.2f} |",
        f"| plain sequential PyTorch loop (fresh model per client, load_state_dict, average state dicts) "
        f"| {p:.2f} | {pm:.2f} |",
        "",
        f"Ratio FedArena / plain loop: best **{f / p:.3f}**, median **{fm / pm:.3f}** (issue: ≤ 1).",
        "",
    ]


def plain_round(global_model, clients, local: LocalTraining, seed: int) -> dict[str, torch.Tensor]:
    """The reference loop the issue compares against, written the usual way."""
    gen = torch.Generator().manual_seed(seed)
    global_state = global_model.state_dict()
    total = sum(len(c.data) for c in clients)
    avg = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in global_state.items()}
    for client in clients:
        model = build_model("lenet5", 10, client.data.input_shape)
        model.load_state_dict(global_state)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=local.lr)
        x, y = client.data.normalized(), client.data.labels
        for batch in torch.randperm(len(y), generator=gen).split(local.batch_size):
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
        weight = len(client.data) / total
        for k, v in model.state_dict().items():
            avg[k] += weight * v.float()
    return avg


if __name__ == "__main__":
    raise SystemExit(main())
