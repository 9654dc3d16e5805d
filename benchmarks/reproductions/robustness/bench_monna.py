"""MoNNA (Farhadkhani et al., ICML 2023): client momentum 0.99 vs 0 under four attacks, three rules, MNIST.

The paper's MNIST setting as far as a shared CPU allows: 26 clients of which f = 5 are
Byzantine, Dirichlet(α = 1) label skew, FedSGD (one gradient of a batch of 25 per client
per step), each client's Polyak momentum ``m ← β·m + (1 − β)·g`` kept across steps
(``fedarena.fl_core.protocol.ClientMomentum``; β = 0.99 is MoNNA's, β = 0 plain D-SGD), learning
rate 0.75 with the reference's hyperbolic decay ``0.75 / (⌊t/50⌋ + 1)``. Attacks (on the
honest clients' uploads, i.e. their momentums): ALIE (μ − zσ, z by the paper's formula),
IPM (−ε × honest mean), sign flip (−honest mean), label flip (y → 9 − y; the five clients
train on flipped labels and run the same momentum). Rules: NNA = ``nnm ∘ fedavg`` (every
upload replaced by the mean of its n − f nearest uploads, then averaged), trimmed mean
(f = 5 trimmed at each end), geometric median (RFA); plus attack-free rows (fedavg too).
Reported: final and best test accuracy over the evaluations. Results are rewritten after
every run; finished runs are cached (``UnitCache``), so a killed run resumes.

Deviations from the authors' code (LPD-EPFL/robust-collaborative-learning,
``reproduce.py`` + ``peerToPeer.py``) are listed in the table's header (``DEVIATIONS``).

    python -m fedarena.benchmarks.reproductions.robustness.bench_monna [--steps 200] [--seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.attacks.poisoning import alie_z
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.tasks.federation import AttackGroup, Federation, build_federation
from fedarena.benchmarks.harness.units import UnitCache, digest, unit_key
from fedarena.benchmarks.reproductions import RESULTS as REPRO_RESULTS
from fedarena.benchmarks.reproductions import command, run_script
from fedarena.defenses.registry import AGGREGATORS
from fedarena.fl_core import Client, FederationConfig, ImageDataset, LocalTraining, Simulation
from fedarena.fl_core.aggregation import Aggregator
from fedarena.fl_core.models import build_model
from fedarena.fl_core.protocol import ClientMomentum

from .common import fmt, load_mnist, machine_line, today, write_lines

RESULTS = REPRO_RESULTS / "monna_mnist.md"
ATTACKS = ("alie", "ipm", "sign_flip", "label_flip")
ATTACK_TITLES = {None: "no attack", "alie": "ALIE", "ipm": "IPM", "sign_flip": "sign flip", "label_flip": "label flip"}
RULES = ("nna", "trimmed_mean", "geometric_median")
RULE_TITLES = {"nna": "NNA (nnm ∘ fedavg)", "trimmed_mean": "trimmed mean", "geometric_median": "geometric median",
               "fedavg": "fedavg"}
BETAS = (0.99, 0.0)
DEVIATIONS = [
    "server-based, not peer-to-peer: the authors run MoNNA on a P2P graph (every honest worker keeps its own "
    "model, takes its half step θ_i − γ·m_i and averages the n − f vectors nearest to its own; each receives "
    "n − 2f random honest vectors plus the f Byzantine ones). Here one server aggregates all n = 26 momentums "
    "and steps the one model (θ ← θ − γ·rule(m)); with equal models the half steps differ only by γ·m_i, so "
    "the rules see the momentums up to a shift and scale they are equivariant to. A server has no own vector "
    "to centre NNA on, so NNA is NNM's mixing (each upload → mean of its n − f nearest) followed by the "
    "plain mean (Allouah et al. 2023's server form of the same step)",
    "attacks act on the uploads (momentums), the server-side reading; the P2P code attacks the half-step "
    "parameter vectors, where sign flip (−mean θ) and IPM lie far from every honest model",
    "ALIE and IPM use fixed factors (ALIE z by Baruch et al.'s formula, IPM ε given); the reference's "
    "`little`/`empire` line-search the factor (16 evaluations) to maximise the deviation of the aggregate",
    "label-flipping clients train on their own (Dirichlet) data with flipped labels and keep a momentum like "
    "everyone; the reference's Byzantine vector is the mean of the honest workers' flipped gradients, "
    "without momentum",
    "the Dirichlet split is over all 26 clients (the reference splits over the 21 honest workers only)",
    "model `lenet5` (60 k parameters) instead of the reference's `simples-conv` (≈ 430 k); no L2 "
    "regularisation (reference 1e-4); cross-entropy on logits (= NLL on log-softmax)",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="FedSGD steps (the paper: 600)")
    parser.add_argument("--clients", type=int, default=26)
    parser.add_argument("--byzantine", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=1.0, help="Dirichlet α")
    parser.add_argument("--lr", type=float, default=0.75)
    parser.add_argument("--lr-decay", type=int, default=50,
                        help="hyperbolic half-decay time and update period in steps (0: constant lr)")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--ipm-epsilon", type=float, default=0.1)
    parser.add_argument("--betas", type=float, nargs="*", default=list(BETAS))
    parser.add_argument("--attacks", nargs="*", default=None, choices=[*ATTACKS, "none"],
                        help="only these rows (none: the attack-free ones); default all. Subsets can run in "
                             "parallel processes (shared cache); a last full invocation writes the whole table")
    parser.add_argument("--rules", nargs="*", default=None, choices=["fedavg", *RULES], help="only these rules")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--train-size", type=int, default=None, help="seeded subset of the 60,000 training images")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 steps on 4,000 training images")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--fresh", action="store_true", help="recompute runs even if cached")
    add_device_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.train_size, args.eval_every = min(args.steps, 20), args.train_size or 4000, 10
    torch.set_num_threads(args.threads)
    f, n = args.byzantine, args.clients

    train, test = load_mnist(args.train_size, args.seed)
    part = {"partition_name": "dirichlet", "partition_params": {"alpha": args.alpha}}
    groups = {"alie": AttackGroup("alie", f), "ipm": AttackGroup("ipm", f, {"epsilon": args.ipm_epsilon}),
              "sign_flip": AttackGroup("sign_flip", f),
              "label_flip": AttackGroup("label_flip", f, {"pairs": [[k, 9 - k] for k in range(10)]})}
    feds: dict[str | None, Federation] = {a: build_federation(train, n, args.seed, [g], **part)
                                          for a, g in groups.items()}
    feds[None] = build_federation(train, n, args.seed, **part)
    model = build_model(args.model, train.num_classes, train.input_shape, seed=args.seed).to(args.device)
    local = LocalTraining(algorithm="fedsgd", lr=args.lr, batch_size=args.batch_size)
    config = FederationConfig(rounds=args.steps, local=local, seed=args.seed, eval_every=args.eval_every)

    header = [
        "# MoNNA: client momentum vs none, under attack (MNIST)",
        "",
        f"- command: `{command('fedarena.benchmarks.reproductions.robustness.bench_monna', argv)}`",
        f"- machine: {machine_line()}",
        f"- date: {today()}",
        f"- federation: {n} clients, f = {f} Byzantine, Dirichlet α = {args.alpha}, {len(train)} training images, "
        f"{args.model}; FedSGD, batch {args.batch_size}, {args.steps} steps (the paper: 600), all clients every "
        f"step; lr {args.lr}" + (f" / (⌊t/{args.lr_decay}⌋ + 1)" if args.lr_decay > 0 else " (constant)")
        + f"; client momentum β ∈ {{{', '.join(f'{b:g}' for b in args.betas)}}} (m ← βm + (1 − β)g, m₀ = 0); "
        f"seed {args.seed}; test accuracy on the 10,000 test images every {args.eval_every} steps",
        f"- attacks: ALIE z = {alie_z(n, f):.3f} (paper formula, n = {n}, f = {f}); IPM ε = {args.ipm_epsilon}; "
        "sign flip −1 × honest mean; label flip y → 9 − y (all classes)",
        f"- rules: NNA = nnm(f = {f}) ∘ fedavg; trimmed_mean(f = {f}); geometric_median (ν = 1e-6, 5 Weiszfeld "
        "passes, the RFA code's defaults)",
        "- budget: ≈ 60 CPU-minutes at 1 thread for the whole table (hence the steps, model and single seed)",
        "- deviations from the authors' code:",
        *[f"  - {d}" for d in DEVIATIONS],
        "",
    ]
    cache = UnitCache("monna", fresh=args.fresh)
    setting = digest({k: v for k, v in vars(args).items()
                      if k not in ("threads", "out", "fresh", "device", "betas", "attacks", "rules")})

    def run(beta: float, attack: str | None, rule: str) -> dict[str, Any]:
        label = f"beta {beta:g}, {ATTACK_TITLES[attack]}, {rule}"
        key = unit_key(label, setting)
        hit = cache.get(key)
        if hit is None:
            accs, seconds = train_run(model, feds[attack], config, test, build_rule(rule, f), beta, args.lr_decay,
                                      label)
            hit = cache.put(key, {"final": accs[-1], "best": max(accs), "seconds": seconds})
        print(f"[{label}] final {fmt(hit['final'], 4)} best {fmt(hit['best'], 4)} in {hit['seconds']:.0f} s",
              flush=True)
        return hit

    results: dict[tuple[float, str | None, str], dict[str, Any]] = {}
    start = time.perf_counter()
    # attacked cells first, the robust rules' attack-free rows last (the table is usable if cut short)
    plan = [(None, "fedavg"), (None, "nna")] + [(a, r) for a in ATTACKS for r in RULES] + [(None, r) for r in RULES[1:]]
    wanted = None if args.attacks is None else {None if a == "none" else a for a in args.attacks}
    plan = [(a, r) for a, r in plan if (wanted is None or a in wanted) and (args.rules is None or r in args.rules)]
    for attack, rule in plan:
        for beta in args.betas:
            results[(beta, attack, rule)] = run(beta, attack, rule)
            write_lines(args.out, header + table(args.betas, results))
    write_lines(args.out, header + table(args.betas, results) + verdict(args.betas, results))
    print(f"all runs: {time.perf_counter() - start:.0f} s; wrote {args.out}")
    return 0


def build_rule(rule: str, f: int) -> Aggregator:
    """The table's rules with the known f (NNA: NNM's mixing, then the plain mean)."""
    if rule == "nna":
        return AGGREGATORS.build("nnm", aggregator="fedavg", f=f)
    if rule == "trimmed_mean":
        return AGGREGATORS.build("trimmed_mean", f=f)
    return AGGREGATORS.build(rule)


def lr_at(step: int, lr: float, decay: int) -> float:
    """The reference's schedule: lr / (⌊t/decay⌋ + 1), updated every ``decay`` steps (0: constant)."""
    return lr if decay <= 0 else lr / (step // decay + 1)


def train_run(model: torch.nn.Module, fed: Federation, config: FederationConfig, test: ImageDataset,
              aggregator: Aggregator, beta: float, decay: int, label: str) -> tuple[list[float], float]:
    """One federation under ``ClientMomentum(beta)``; the test accuracies at each evaluation, seconds.

    FedSGD's gradient does not depend on the lr, which only scales the server's step
    (w − lr·agg), so the schedule is the round's ``config.local.lr``."""
    clients = [Client(c.client_id, c.data, c.role) for c in fed.clients]
    sim = Simulation(copy.deepcopy(model), clients, config, test, aggregator, adversaries=fed.adversaries,
                     protocol=ClientMomentum(beta), progress=False)
    accs: list[float] = []
    start = time.perf_counter()
    for r in range(config.rounds):
        sim.config = dataclasses.replace(config, local=dataclasses.replace(config.local,
                                                                           lr=lr_at(r, config.local.lr, decay)))
        record = sim.run_round(r)
        sim.history.rounds.append(record)
        if record.accuracy is not None:
            accs.append(record.accuracy)
            print(f"[{label}] step {r + 1}/{config.rounds}: accuracy {record.accuracy:.4f}", flush=True)
    return accs, time.perf_counter() - start


def table(betas: list[float], results: dict[tuple[float, str | None, str], dict[str, Any]]) -> list[str]:
    head = " | ".join(f"β = {b:g} final | β = {b:g} best" for b in betas)
    lines = ["Test accuracy (final, and best over the evaluations); `pending`: not run yet.", "",
             f"| attack | rule | {head} |", "| --- | --- |" + " ---: | ---: |" * len(betas)]
    for attack in (None, *ATTACKS):
        for rule in ((["fedavg"] if attack is None else []) + list(RULES)):
            cells = [ATTACK_TITLES[attack], RULE_TITLES[rule]]
            for b in betas:
                hit = results.get((b, attack, rule))
                cells += ["pending", "pending"] if hit is None else [fmt(hit["final"], 4), fmt(hit["best"], 4)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def verdict(betas: list[float], results: dict[tuple[float, str | None, str], dict[str, Any]]) -> list[str]:
    """Whether momentum helps in these numbers: attacked (attack, rule) cells where β_max beats β = 0."""
    if len(betas) < 2 or 0.0 not in betas:
        return []
    hi = max(betas)
    cells = [(a, r) for a in ATTACKS for r in RULES if (hi, a, r) in results and (0.0, a, r) in results]
    if not cells:
        return []
    gains = {c: results[(hi, *c)]["final"] - results[(0.0, *c)]["final"] for c in cells}
    better = [c for c, g in gains.items() if g > 0.01]
    worse = [c for c, g in gains.items() if g < -0.01]
    mean_gain = sum(gains.values()) / len(gains)
    lines = ["## Does momentum improve robustness here?", "",
             f"Final accuracy with β = {hi:g} minus β = 0, per attacked cell: "
             + "; ".join(f"{ATTACK_TITLES[a]} / {RULE_TITLES[r]} {gains[(a, r)]:+.3f}" for a, r in cells) + ".",
             "",
             f"β = {hi:g} is more than 1 point better in {len(better)} of {len(cells)} attacked cells, more than 1 "
             f"point worse in {len(worse)}; mean change {mean_gain:+.3f}."]
    return lines + [""]


if __name__ == "__main__":
    raise SystemExit(run_script(main))
