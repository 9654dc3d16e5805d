"""ALIE and IPM with 20 % attackers (Dirichlet α = 0.5) against every aggregator: accuracy table.

MNIST, ``lenet5``, 20 clients of which 4 (20 %) collude; Dirichlet(α = 0.5) label skew.
ALIE (Baruch et al. 2019) sends μ − z·σ of the honest updates with z from n and f
(n = 20, f = 4: z = Φ⁻¹(13/20) ≈ 0.385); IPM (Xie et al. 2019) sends −ε × the honest
mean (ε = 0.1 by default, ``--ipm-epsilon``). Both are omniscient: they read the
round's honest updates through the simulation's hook. Every registered aggregator runs
with its defaults except the ones given the known f = 4 (krum, multi_krum, bulyan,
nnm ∘ median) or β = f/n = 0.2 (trimmed_mean); plus fedavg without attack. Local
training as the foundation FedAvg-MNIST benchmark (SGD lr 0.05, batch 32, 1 epoch),
which reaches ≥ 97 % within 20 rounds without attack. Reported: final test accuracy
(and, for each attack, the drop from the attack-free run). Results are rewritten after
every run.

    python -m fedarena.benchmarks.reproductions.robustness.bench_alie_ipm [--rounds 20] [--clients 20] [--seed 0]
    [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.attacks.poisoning import alie_z
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.tasks.federation import AttackGroup, build_federation, run_federation
from fedarena.benchmarks.harness.units import UnitCache, digest, unit_key
from fedarena.benchmarks.reproductions import RESULTS as REPRO_RESULTS
from fedarena.benchmarks.reproductions import command, run_script
from fedarena.defenses.registry import AGGREGATORS
from fedarena.fl_core import FederationConfig, LocalTraining
from fedarena.fl_core.models import build_model

from .common import fmt, load_mnist, machine_line, today, write_lines

RESULTS = REPRO_RESULTS / "alie_ipm.md"
ATTACKS = ("alie", "ipm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attacker-fraction", type=float, default=0.2)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--ipm-epsilon", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=None, help="seeded subset of the 60,000 training images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--aggregators", nargs="*", default=None, help="default: every registered aggregator")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 rounds on 4,000 training images, three aggregators")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--fresh", action="store_true", help="recompute runs even if cached")
    add_device_option(parser)
    args = parser.parse_args(argv)
    names = args.aggregators or AGGREGATORS.names()
    if args.quick:
        args.rounds, args.train_size = min(args.rounds, 3), args.train_size or 4000
        names = args.aggregators or ["fedavg", "krum", "bulyan"]
    torch.set_num_threads(args.threads)
    f = max(1, round(args.attacker_fraction * args.clients))

    train, test = load_mnist(args.train_size, args.seed)
    partition = {"partition_name": "dirichlet", "partition_params": {"alpha": args.alpha}}
    feds = {"alie": build_federation(train, args.clients, args.seed, [AttackGroup("alie", f)], **partition),
            "ipm": build_federation(train, args.clients, args.seed,
                                    [AttackGroup("ipm", f, {"epsilon": args.ipm_epsilon})], **partition)}
    clean = build_federation(train, args.clients, args.seed, **partition)
    model = build_model("lenet5", train.num_classes, train.input_shape, seed=args.seed).to(args.device)
    local = LocalTraining(lr=args.lr, epochs=args.local_epochs, batch_size=args.batch_size, momentum=args.momentum)
    config = FederationConfig(rounds=args.rounds, local=local, seed=args.seed)
    params = aggregator_params(f, args.clients)

    header = [
        "# ALIE and IPM against every aggregator (MNIST)",
        "",
        f"- command: `{command('fedarena.benchmarks.reproductions.robustness.bench_alie_ipm', argv)}`",
        f"- machine: {machine_line()}",
        f"- date: {today()}",
        f"- federation: {args.clients} clients, {f} colluding attackers ({f / args.clients:.0%}), Dirichlet "
        f"α = {args.alpha}, {len(train)} training images, lenet5, {args.rounds} rounds, all clients every round; "
        f"local SGD lr {args.lr}, momentum {args.momentum}, batch {args.batch_size}, {args.local_epochs} epoch(s); "
        f"seed {args.seed}",
        f"- ALIE z = {alie_z(args.clients, f):.3f} (from n = {args.clients}, f = {f}); IPM ε = {args.ipm_epsilon}",
        "- aggregator parameters: " + "; ".join(f"{k} {v}" for k, v in params.items()) + "; others: defaults",
        "",
    ]
    # Every finished run is cached (keyed by the settings below), so a killed run resumes
    # and aggregator subsets (--aggregators) can run in parallel processes; a last
    # invocation over all of them then only writes the table.
    cache = UnitCache("alie_ipm", fresh=args.fresh)
    setting = digest({k: v for k, v in vars(args).items()
                      if k not in ("threads", "aggregators", "out", "fresh", "device")})

    def run(label: str, fed: Any, aggregator: Any) -> float | None:
        key = unit_key(label, setting)
        hit = cache.get(key)
        if hit is None:
            _, history, seconds = run_federation(model, fed, config, test, aggregator, log=print, label=label)
            hit = cache.put(key, {"accuracy": history.final_accuracy, "seconds": seconds})
        print(f"[{label}] accuracy {fmt(hit['accuracy'], 4)} in {hit['seconds']:.0f} s", flush=True)
        return hit["accuracy"]

    results: dict[tuple[str, str], float | None] = {}
    start = time.perf_counter()
    baseline = run("fedavg, no attack", clean, None)
    for name in names:
        for attack in ATTACKS:
            aggregator = AGGREGATORS.build(name, **params.get(name, {}))
            results[(name, attack)] = run(f"{attack} vs {name}", feds[attack], aggregator)
            write_lines(args.out, header + table(names, results, baseline))
    write_lines(args.out, header + table(names, results, baseline))
    print(f"all runs: {time.perf_counter() - start:.0f} s; wrote {args.out}")
    return 0


def aggregator_params(f: int, n: int) -> dict[str, dict[str, Any]]:
    """The known number of attackers, for the rules that take it."""
    return {"krum": {"f": f}, "multi_krum": {"f": f}, "bulyan": {"f": min(f, (n - 3) // 4)},
            "nnm": {"f": f, "aggregator": "median"}, "trimmed_mean": {"beta": min(f / n, 0.49)}}


def table(names: list[str], results: dict[tuple[str, str], float | None], baseline: float | None) -> list[str]:
    lines = [f"Attack-free fedavg: **{fmt(baseline, 4)}**.", "",
             "| aggregator | ALIE accuracy | Δ vs no attack | IPM accuracy | Δ vs no attack |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name in names:
        cells = [name]
        for attack in ATTACKS:
            acc = results.get((name, attack))
            delta = None if acc is None or baseline is None else acc - baseline
            cells += [fmt(acc, 4) if (name, attack) in results else "pending",
                      fmt(delta, 4) if delta is not None else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


if __name__ == "__main__":
    raise SystemExit(run_script(main))
