"""ServerApp: a FedArena aggregator as the strategy; omniscient attacks wrap it server-side.

Run config (``pyproject.toml`` ``[tool.flwr.app.config]``): ``aggregator`` (a
``fedarena.defenses.registry.AGGREGATORS`` name), ``attack`` (a ``POISONING_ATTACKS`` name;
ALIE, IPM, min-max and min-sum run here because they read the honest replies) and
the ``Setup`` fields (``num-clients``, ``rounds``, ``dataset``, ``model``, …).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

import fedarena.defenses.aggregation  # noqa: F401  (registers the aggregators)
from fedarena.attacks.flower import OmniscientAttack
from fedarena.defenses.flower import FedArenaStrategy
from fedarena.fl_core.evaluation import evaluate
from fedarena.fl_core.flower import CLIENT_ID_KEY

from .task import Setup, client_datasets, make_model

OMNISCIENT = frozenset({"alie", "ipm", "min_max", "min_sum"})


def make_server_app(setup: Setup | None = None, aggregator: str = "krum", aggregator_args: dict | None = None,
                    attack: str | None = "sign_flip", attack_args: dict | None = None,
                    on_round: Callable[[int, ArrayRecord], None] | None = None,
                    on_strategy: Callable[[Strategy], None] | None = None) -> ServerApp:
    """A ServerApp for ``setup`` (None: read it from the run config). ``on_round(r, arrays)``
    sees the global model before round 1 (r = 0) and after every round; ``on_strategy``
    receives the strategy before it starts (tests read its per-round records)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = context.run_config
        s = setup if setup is not None else Setup.from_config(dict(cfg))
        name = str(cfg.get("aggregator", aggregator))
        agg_args = json.loads(str(cfg["aggregator-args"])) if "aggregator-args" in cfg else aggregator_args
        att = str(cfg["attack"]) if "attack" in cfg else attack
        att_args = json.loads(str(cfg["attack-args"])) if "attack-args" in cfg else attack_args
        _, test = client_datasets(s)
        model = make_model(s, test)
        strategy: Strategy = FedArenaStrategy(name, model, aggregator_args=agg_args, client_id_key=CLIENT_ID_KEY,
                                              fraction_evaluate=0.0, min_available_nodes=s.num_clients,
                                              min_train_nodes=s.num_clients)
        if att in OMNISCIENT and s.malicious:
            strategy = OmniscientAttack(strategy, att, model, s.malicious_ids, seed=s.seed,
                                        client_id_key=CLIENT_ID_KEY, attack_args=att_args)
        evaluator = make_model(s, test)
        if on_strategy is not None:
            on_strategy(strategy)

        def central(r: int, arrays: ArrayRecord) -> MetricRecord:
            if on_round is not None:
                on_round(r, arrays)
            evaluator.load_state_dict(arrays.to_torch_state_dict())
            acc, loss = evaluate(evaluator, test, 1000)
            return MetricRecord({"accuracy": float(acc), "loss": float(loss)})

        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=s.rounds,
                       train_config=ConfigRecord(), evaluate_fn=central)

    return app


app = make_server_app()
