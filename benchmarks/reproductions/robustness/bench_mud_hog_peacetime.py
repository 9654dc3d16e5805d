"""MUD-HoG with nobody attacking: how many honest client-rounds it throws away (issue 13, defect 5).

Attack-free federations (digits and MNIST; IID and Dirichlet α = 0.5; 10, 20 and 40
clients; seeds 0 and 1), every client honest, 10 rounds of FedAvg (MLP, SGD lr 0.1,
batch 16, 1 local epoch: the issue's digits setting, used for MNIST too) under
``mud_hog`` with its defaults (warm-up 3 rounds), once with the gap-statistic null test
(``gap_references=20``, the default) and once without (``gap_references=None``: the
authors' rules, every split accepted). Reported per federation: the share of honest
client-rounds given weight 0 (over all 10 rounds, and over the 7 detection rounds after
the warm-up), and the share halved as unreliable (``unreliable_weight`` 0.5). Target:
≤ 5 % excluded. Results are rewritten after every run; finished runs are cached.

    python -m fedarena.benchmarks.reproductions.robustness.bench_mud_hog_peacetime [--rounds 10] [--mnist-size 8000]
    [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.tasks.federation import build_federation, run_federation
from fedarena.benchmarks.harness.units import UnitCache, digest, unit_key
from fedarena.benchmarks.reproductions import RESULTS as REPRO_RESULTS
from fedarena.benchmarks.reproductions import command, run_script
from fedarena.defenses.mud_hog import UNRELIABLE, MudHoG
from fedarena.fl_core import FederationConfig, History, ImageDataset, LocalTraining
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model

from .common import fmt, load_mnist, machine_line, today, write_lines

RESULTS = REPRO_RESULTS / "mud_hog_peacetime.md"
DATASETS = ("digits", "mnist")
PARTITIONS = ("iid", "dirichlet")
GAP_SETTINGS: tuple[int | None, ...] = (20, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, nargs="*", default=[10, 20, 40])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet α of the non-IID federations")
    parser.add_argument("--mnist-size", type=int, default=8000, help="seeded subset of MNIST's 60,000 images")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--quick", action="store_true", help="smoke run: digits, 10 clients, seed 0, 5 rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--fresh", action="store_true", help="recompute runs even if cached")
    add_device_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.clients, args.seeds, args.datasets = min(args.rounds, 5), [10], [0], ["digits"]
    torch.set_num_threads(args.threads)
    warmup = MudHoG().warmup_rounds
    local = LocalTraining(lr=args.lr, batch_size=args.batch_size)

    header = [
        "# MUD-HoG in peacetime: honest clients excluded with nobody attacking",
        "",
        f"- command: `{command('fedarena.benchmarks.reproductions.robustness.bench_mud_hog_peacetime', argv)}`",
        f"- machine: {machine_line()}",
        f"- date: {today()}",
        f"- federations: every client honest; digits (scikit-learn, 1,437 training images) and MNIST "
        f"({args.mnist_size} seeded training images); IID and Dirichlet α = {args.alpha}; clients "
        f"{', '.join(map(str, args.clients))}; seeds {', '.join(map(str, args.seeds))}; {args.rounds} rounds "
        f"(modest, for the budget of ≈ 20 CPU-minutes), all clients every round; mlp, local SGD lr {args.lr}, "
        f"batch {args.batch_size}, 1 epoch",
        f"- mud_hog defaults (warm-up {warmup} rounds, window 3, confirm 2, DBSCAN eps 0.5 / min_samples 5, "
        "unreliable weight 0.5), with the gap test (gap_references = 20, the default) and without it "
        "(gap_references = None: the authors' rules)",
        f"- excluded: honest client-rounds with weight 0, over all {args.rounds} rounds and over the "
        f"{args.rounds - warmup} detection rounds after the warm-up; halved: client-rounds with weight × 0.5 "
        "(confirmed unreliable). Target: ≤ 5 % excluded.",
        "",
    ]
    cache = UnitCache("mud_hog_peacetime", fresh=args.fresh)
    setting = digest({k: v for k, v in vars(args).items()
                      if k in ("rounds", "alpha", "mnist_size", "lr", "batch_size")})
    plan = [(ds, part, n, seed) for ds in args.datasets for part in PARTITIONS for n in args.clients
            for seed in args.seeds]
    data: dict[tuple[str, int], tuple[ImageDataset, ImageDataset]] = {}
    results: dict[tuple[str, str, int, int, int | None], dict[str, Any]] = {}
    start = time.perf_counter()
    for ds, part, n, seed in plan:
        for gap in GAP_SETTINGS:
            label = f"{ds}, {part}, {n} clients, seed {seed}, gap_references {gap}"
            key = unit_key(label, setting)
            hit = cache.get(key)
            if hit is None:
                if (ds, seed) not in data:
                    data[(ds, seed)] = _load(ds, args.mnist_size, seed)
                train, test = data[(ds, seed)]
                part_args = {"partition_name": part, "partition_params": {"alpha": args.alpha} if part != "iid" else {}}
                fed = build_federation(train, n, seed, **part_args)
                model = build_model("mlp", train.num_classes, train.input_shape, seed=seed).to(args.device)
                config = FederationConfig(rounds=args.rounds, local=local, seed=seed, eval_every=args.rounds)
                _, history, seconds = run_federation(model, fed, config, test, MudHoG(seed=seed, gap_references=gap))
                hit = cache.put(key, {**exclusion_rates(history, warmup), "accuracy": history.final_accuracy,
                                      "seconds": seconds})
            results[(ds, part, n, seed, gap)] = hit
            print(f"[{label}] excluded {hit['excluded']:.3f} (detection rounds {hit['excluded_detection']:.3f}), "
                  f"halved {hit['halved']:.3f}, accuracy {fmt(hit['accuracy'], 4)} in {hit['seconds']:.0f} s",
                  flush=True)
            write_lines(args.out, header + table(plan, results) + summary(results))
    print(f"all runs: {time.perf_counter() - start:.0f} s; wrote {args.out}")
    return 0


def _load(name: str, mnist_size: int, seed: int) -> tuple[ImageDataset, ImageDataset]:
    if name == "digits":
        return load_dataset("digits", "train"), load_dataset("digits", "test")
    return load_mnist(mnist_size, seed)


def exclusion_rates(history: History, warmup: int) -> dict[str, float]:
    """Shares of honest client-rounds with weight 0 (all rounds; after the warm-up) and halved as unreliable."""
    def share(records: list[Any], hit: Any) -> float:
        pairs = [(r, cid) for r in records for cid in r.clients if history.roles.get(cid) == "honest"]
        return sum(hit(r, cid) for r, cid in pairs) / len(pairs) if pairs else 0.0

    def zero(r: Any, cid: int) -> bool:
        return cid in r.rejected or float(r.weights.get(cid, 0.0)) <= 0.0

    def halved(r: Any, cid: int) -> bool:
        return not zero(r, cid) and r.info.get("flags", {}).get(cid) == UNRELIABLE

    return {"excluded": share(history.rounds, zero), "excluded_detection": share(history.rounds[warmup:], zero),
            "halved": share(history.rounds, halved)}


def table(plan: list[tuple[str, str, int, int]], results: dict[tuple[Any, ...], dict[str, Any]]) -> list[str]:
    lines = ["| dataset | partition | clients | seed | excluded, gap test | after warm-up | halved | "
             "excluded, no gap test (authors') | after warm-up | halved |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for ds, part, n, seed in plan:
        cells = [ds, "IID" if part == "iid" else "Dirichlet 0.5", str(n), str(seed)]
        for gap in GAP_SETTINGS:
            hit = results.get((ds, part, n, seed, gap))
            cells += (["pending"] * 3 if hit is None else
                      [f"{100 * hit['excluded']:.1f} %", f"{100 * hit['excluded_detection']:.1f} %",
                       f"{100 * hit['halved']:.1f} %"])
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def summary(results: dict[tuple[Any, ...], dict[str, Any]]) -> list[str]:
    lines = []
    for gap in GAP_SETTINGS:
        rows = [v for k, v in results.items() if k[-1] == gap]
        if not rows:
            continue
        ex = [r["excluded"] for r in rows]
        over = sum(e > 0.05 for e in ex)
        name = "with the gap test" if gap is not None else "without the gap test (the authors' rules)"
        lines.append(f"- {name}: excluded {100 * min(ex):.1f}–{100 * max(ex):.1f} % of honest client-rounds "
                     f"(mean {100 * sum(ex) / len(ex):.1f} %) over {len(rows)} federations; above the 5 % target "
                     f"in {over}.")
    return lines + [""] if lines else []


if __name__ == "__main__":
    raise SystemExit(run_script(main))
