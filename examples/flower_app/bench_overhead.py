"""Round time of FedArena's Krum strategy vs Flower's own FedAvg, in one simulation run.

One ServerApp drives both strategies on the same Grid, interleaved in pairs whose order
alternates (FedAvg then Krum, Krum then FedAvg, …) so drift in the machine's load falls on
both; every round starts from the same initial model and the same clients (FedArena's
``train_reply``, ``malicious`` sign flippers), so the two see identical work on the client
side and the ratio isolates what the strategy costs. Reported: per pair, the ratio of the
Krum round to its FedAvg partner (a whole round, ``Strategy.start`` with one round, and
``aggregate_train`` alone); the median ratio and its spread (quartiles, min, max) over the
pairs; written to ``benchmarks/results/flower_overhead.md`` (``--out``).

    cd examples/flower_app && python bench_overhead.py --reps 21
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), str(HERE), os.environ.get("PYTHONPATH", "")])

from fedarena_flower.client_app import make_client_app  # noqa: E402
from fedarena_flower.task import Setup, client_datasets, dataset_name, make_model  # noqa: E402
from flwr.app import ArrayRecord, Context  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg, Strategy  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

import fedarena.defenses.aggregation  # noqa: E402, F401
from fedarena.defenses.flower import FedArenaStrategy  # noqa: E402
from fedarena.fl_core.flower import CLIENT_ID_KEY  # noqa: E402


def timed(strategy: Strategy, sink: list[float]) -> Strategy:
    """Record the wall time of every ``aggregate_train`` call of ``strategy`` in ``sink``."""
    inner = strategy.aggregate_train

    def aggregate_train(server_round, replies):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        out = inner(server_round, replies)
        sink.append(time.perf_counter() - start)
        return out

    strategy.aggregate_train = aggregate_train  # type: ignore[method-assign]
    return strategy


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles and range of ``values``."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": q2, "q1": q1, "q3": q3, "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21, help="pairs of rounds (one FedAvg, one Krum)")
    parser.add_argument("--dataset", default="auto")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--samples-per-client", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "benchmarks" / "results",
                        help="folder for flower_overhead.md ('-': print only)")
    args = parser.parse_args()
    setup = Setup(dataset=args.dataset, model=args.model, samples_per_client=args.samples_per_client)
    _, test = client_datasets(setup)
    results: dict[str, dict[str, list[float]]] = {"flower_fedavg": {"round": [], "aggregate": []},
                                                  "fedarena_krum": {"round": [], "aggregate": []}}
    app = ServerApp()

    @app.main()
    def server(grid: Grid, context: Context) -> None:
        model = make_model(setup, test)
        initial = ArrayRecord(model.state_dict())
        kw = dict(fraction_evaluate=0.0, min_available_nodes=setup.num_clients, min_train_nodes=setup.num_clients)
        strategies = {
            "flower_fedavg": timed(FedAvg(**kw), results["flower_fedavg"]["aggregate"]),
            "fedarena_krum": timed(FedArenaStrategy("krum", model, client_id_key=CLIENT_ID_KEY, **kw),
                                   results["fedarena_krum"]["aggregate"]),
        }
        for strategy in strategies.values():  # warm-up round each (imports, Ray actor start)
            strategy.start(grid=grid, initial_arrays=initial, num_rounds=1)
        for r in results.values():
            r["aggregate"].clear()
        names = list(strategies)
        for rep in range(args.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                strategies[name].start(grid=grid, initial_arrays=initial, num_rounds=1)
                results[name]["round"].append(time.perf_counter() - start)

    load_before = os.getloadavg()
    run_simulation(app, make_client_app(setup, attack="sign_flip"), num_supernodes=setup.num_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}})
    load_after = os.getloadavg()
    ours, theirs = results["fedarena_krum"], results["flower_fedavg"]
    summary = {
        "ratio_round": spread([a / b for a, b in zip(ours["round"], theirs["round"], strict=True)]),
        "ratio_aggregate": spread([a / b for a, b in zip(ours["aggregate"], theirs["aggregate"], strict=True)]),
        "extra_round_ms": spread([1e3 * (a - b) for a, b in zip(ours["round"], theirs["round"], strict=True)]),
        "seconds": {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()},
        "ratio_of_median_rounds": statistics.median(ours["round"]) / statistics.median(theirs["round"]),
        "setup": {"reps": args.reps, "dataset": dataset_name(setup), "model": args.model,
                  "samples_per_client": args.samples_per_client, "clients": setup.num_clients},
    }
    print(json.dumps(summary, indent=1))
    if str(args.out) != "-":
        path = args.out / "flower_overhead.md"
        path.write_text(report(summary, sys.argv[1:], load_before, load_after))
        print(f"wrote {path}")


def report(summary: dict, argv: list[str], load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    import flwr
    import torch

    def row(name: str, key: str, unit: str = "×", scale: str = ".3f") -> str:
        s = summary[key]
        return (f"| {name} | {s['median']:{scale}}{unit} | {s['q1']:{scale}}{unit} – {s['q3']:{scale}}{unit} | "
                f"{s['min']:{scale}}{unit} – {s['max']:{scale}}{unit} |")

    sec, st = summary["seconds"], summary["setup"]
    met = summary["ratio_round"]["median"] <= 1.1
    return "\n".join([
        "# Flower: round overhead of FedArena's Krum strategy over Flower's FedAvg", "",
        f"- command: `cd examples/flower_app && python {' '.join(['bench_overhead.py', *argv])}`",
        f"- machine: {os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, flwr "
        f"{flwr.__version__}, Flower simulation engine (Ray, 1 client actor)",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{', '.join(f'{x:.2f}' for x in load_after)} (a shared machine: other jobs ran meanwhile)",
        f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')}", "",
        f"{st['clients']} clients × {st['samples_per_client']} images ({st['dataset']}), {st['model']}, 1 local "
        f"epoch, 2 sign flippers; {st['reps']} pairs of one-round runs (FedAvg, Krum) from the same initial model, "
        "order alternating per pair, after one warm-up round each. Ratio = Krum round / its FedAvg partner.", "",
        "| per pair | median | quartiles | range |", "| --- | ---: | ---: | ---: |",
        row("round time ratio", "ratio_round"),
        row("extra round time (Krum − FedAvg)", "extra_round_ms", " ms", ".1f"),
        row("`aggregate_train` time ratio", "ratio_aggregate"), "",
        f"Median round: FedAvg {sec['flower_fedavg']['round'] * 1e3:.1f} ms, Krum "
        f"{sec['fedarena_krum']['round'] * 1e3:.1f} ms; median `aggregate_train`: FedAvg "
        f"{sec['flower_fedavg']['aggregate'] * 1e3:.1f} ms, Krum "
        f"{sec['fedarena_krum']['aggregate'] * 1e3:.1f} ms (Krum's own math included: pairwise distances, "
        f"FedArena's upload validation); ratio of the median rounds {summary['ratio_of_median_rounds']:.3f}×.", "",
        f"Target ≤ 1.1× (median round ratio): **{'met' if met else 'not met'}** "
        f"({summary['ratio_round']['median']:.3f}×).", ""])


if __name__ == "__main__":
    main()
