"""Parallel clients: one FedAvg round of 100 clients × 600 MNIST images (``lenet5``, 1 local
epoch, batch 32, SGD) with 1 client worker (in process) and with ``--workers`` client worker
processes, both at 1 torch thread per worker, measured in this one run; the global models
after the rounds must be identical (issue 19's target: ≤ 0.6× the one-worker time).

Worker start-up (spawning, sending the model and each worker's clients' data once) is
timed apart from the rounds: a federation pays it once, then every round reuses it.

    python -m fedarena.benchmarks.reproductions.foundation.bench_parallel_clients [--rounds 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import time
from pathlib import Path

import torch

from fedarena.benchmarks.harness.atomic import write_atomic
from fedarena.benchmarks.reproductions import RESULTS, command
from fedarena.fl_core import Client, FederationConfig, LocalTraining, Simulation, model_to_vector
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for parallel_clients.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = load_dataset("mnist", "train")
    n_clients, per_client = 100, 600
    idx = torch.arange(n_clients * per_client).view(n_clients, per_client)
    clients = [Client(i, train.subset(idx[i])) for i in range(n_clients)]
    local = LocalTraining(lr=0.01, epochs=1, batch_size=32)
    load_before = os.getloadavg()
    rows, models = [], []
    for workers in (1, args.workers):
        model = build_model("lenet5", 10, train.input_shape, seed=args.seed)
        sim = Simulation(model, clients, FederationConfig(rounds=args.rounds, local=local, seed=args.seed),
                         progress=False, client_workers=workers, client_threads=1)
        start = time.perf_counter()
        if workers > 1:
            sim.start_workers()
        startup = time.perf_counter() - start
        cpu_before = _cpu_seconds()
        start = time.perf_counter()
        sim.run()  # closes (joins) the workers, so their CPU time is counted below
        wall = time.perf_counter() - start
        cores = (_cpu_seconds() - cpu_before) / wall  # includes the workers' start-up in process import
        seconds = wall / args.rounds
        rows.append((workers, startup, seconds, cores))
        models.append(model_to_vector(sim.model))
        print(f"{workers} client worker(s): start-up {startup:.2f} s, {seconds:.2f} s per round, "
              f"{cores:.2f} cores obtained")
    identical = torch.equal(models[0], models[1])
    ratio = rows[1][2] / rows[0][2]
    load_after = os.getloadavg()
    lines = [
        "# Parallel clients: one FedAvg round, 1 vs N client worker processes", "",
        f"- command: `{command('fedarena.benchmarks.reproductions.foundation.bench_parallel_clients', argv)}`",
        f"- machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, 1 torch thread per worker",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)} (a shared machine: other jobs ran meanwhile)",
        f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')}", "",
        f"{n_clients} clients × {per_client} MNIST images, lenet5, 1 local epoch, batch 32, SGD lr 0.01; "
        f"{args.rounds} round(s) each, seed {args.seed}.", "",
        "CPU cores obtained = CPU seconds of this process and its workers during the rounds / wall "
        "seconds: how much of the cores the shared machine gave the federation (the workers' CPU seconds "
        "include their start-up, torch import and data, so the N-worker figure is an upper bound).", "",
        "| client workers | start-up s | s per round | vs 1 worker | CPU cores obtained |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *[f"| {w} | {'—' if w == 1 else f'{s:.2f}'} | {t:.2f} | {t / rows[0][2]:.2f}× | {c:.2f} |"
          for w, s, t, c in rows], "",
        f"Global models after the round(s) identical: **{identical}**. Target ≤ 0.6×: "
        f"**{'met' if ratio <= 0.6 else 'not met'}** ({ratio:.2f}×).", "",
    ]
    write_atomic(args.out / "parallel_clients.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'parallel_clients.md'}")
    return 0 if identical else 1


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished (joined) children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    raise SystemExit(main())
