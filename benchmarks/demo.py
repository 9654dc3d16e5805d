"""``make demo``: FedAvg on digits round by round, then the ``quick`` suite and its report.

1. A short FedAvg federation on scikit-learn's digits (10 IID clients, ``mlp``, 1 local
   epoch of SGD per round), its test accuracy printed after every round: >= 90 % within
   a few rounds, no data files needed.
2. ``benchmarks/suites/quick.yaml`` (embedded data only: inversion attacks with and
   without defenses, poisoning against FedAvg and robust aggregators) run into
   ``runs/demo`` with one worker process per core (finished runs are kept, so a second
   ``make demo`` only writes the report again), then ``report.md`` / ``report.html``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fedarena.fl_core import Client, FederationConfig, LocalTraining, Simulation
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model
from fedarena.fl_core.partition import partition


def digits_fedavg(rounds: int = 15, num_clients: int = 10, seed: int = 0, verbose: bool = True) -> list[float]:
    """Run FedAvg on digits with IID clients; return the test accuracy after every round."""
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    parts = partition("iid", train.labels, num_clients, seed)
    clients = [Client(i, train.subset(idx)) for i, idx in enumerate(parts)]
    model = build_model("mlp", train.num_classes, train.input_shape, seed=seed, hidden=(128,))
    local = LocalTraining(algorithm="fedavg", lr=0.1, epochs=1, batch_size=16, momentum=0.5)
    sim = Simulation(model, clients, FederationConfig(rounds=rounds, local=local, seed=seed), test, progress=False)
    accuracies = []
    for r in range(rounds):
        record = sim.run_round(r)
        sim.history.rounds.append(record)
        accuracies.append(float(record.accuracy))
        if verbose:
            print(f"round {r + 1:2d}/{rounds}  test accuracy {record.accuracy:6.2%}  ({record.seconds:.2f} s)",
                  flush=True)
    return accuracies


def run_quick_suite(out: Path, workers: int, progress: bool = True) -> Path:
    """Run the shipped ``quick`` suite into ``out`` and write its report; returns report.html."""
    from fedarena.benchmarks.harness.report import write_report
    from fedarena.benchmarks.harness.runner import ProvenanceError, run_suite
    from fedarena.benchmarks.harness.suite import load_suite
    from fedarena.benchmarks.harness.suites import resolve_suite_path

    suite = load_suite(resolve_suite_path("quick"))
    try:
        summary = run_suite(suite, out, workers=workers, progress=progress)
    except ProvenanceError as exc:  # the demo's own folder, from an earlier checkout: recompute it
        print(f"{exc}\nrecomputing the demo's runs (as with --fresh)")
        summary = run_suite(suite, out, workers=workers, progress=progress, fresh=True)
    print(f"suite quick: {summary.ok} runs done now, {summary.skipped} already done, {summary.failed} failed "
          f"(of {summary.planned})")
    paths = write_report(out)
    print(f"report: {paths.markdown}")
    print(f"report: {paths.html}")
    return paths.html


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedarena.benchmarks.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="FedAvg rounds on digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder of the quick suite")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--fedavg-only", action="store_true", help="only the digits FedAvg printout")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"FedAvg on scikit-learn digits: 10 IID clients, mlp, {args.rounds} rounds")
    acc = digits_fedavg(args.rounds, seed=args.seed)
    print(f"final test accuracy {acc[-1]:.2%} in {time.perf_counter() - start:.1f} s\n")
    if args.fedavg_only:
        return 0
    print(f"quick suite -> {args.out} ({args.workers} worker{'s' if args.workers > 1 else ''})")
    run_quick_suite(args.out, args.workers)
    print(f"demo done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
