"""Round time of FedArena's Krum strategy vs Flower's own FedAvg, in one simulation run.

One ServerApp drives both strategies on the same Grid, interleaved (FedAvg round, Krum
round, FedAvg round, …), every round from the same initial model and the same clients
(FedArena's ``train_reply``, ``malicious`` sign flippers), so the two see identical work
on the client side and the ratio isolates what the strategy costs. Reported: median
wall time of a whole round (``Strategy.start`` with one round) and of ``aggregate_train``
alone, per strategy.

    cd examples/flower_app && python bench_overhead.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), str(HERE), os.environ.get("PYTHONPATH", "")])

from fedarena_flower.client_app import make_client_app  # noqa: E402
from fedarena_flower.task import Setup, client_datasets, make_model  # noqa: E402
from flwr.app import ArrayRecord, Context  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg, Strategy  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

import defenses.aggregation  # noqa: E402, F401
from defenses.flower import FedArenaStrategy  # noqa: E402
from fl_core.flower import CLIENT_ID_KEY  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dataset", default="auto")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--samples-per-client", type=int, default=300)
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
        for _ in range(args.reps):
            for name, strategy in strategies.items():
                start = time.perf_counter()
                strategy.start(grid=grid, initial_arrays=initial, num_rounds=1)
                results[name]["round"].append(time.perf_counter() - start)

    run_simulation(app, make_client_app(setup, attack="sign_flip"), num_supernodes=setup.num_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}})
    summary = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    summary["ratio_round"] = summary["fedarena_krum"]["round"] / summary["flower_fedavg"]["round"]
    summary["ratio_aggregate"] = summary["fedarena_krum"]["aggregate"] / summary["flower_fedavg"]["aggregate"]
    summary["setup"] = {"reps": args.reps, "dataset": args.dataset, "model": args.model,
                        "samples_per_client": args.samples_per_client, "clients": setup.num_clients}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
