"""HyperFL's accuracy (Guo et al., AAAI 2025, Table 2 setting) against FedAvg, FedAvg with
its head fine-tuned locally, and local-only training: the mean over clients of each
client's model on its own test split, per round.

Fashion-MNIST (``--dataset fashion_mnist``) over ``--clients`` clients with the ``noniid_s``
partition (600 training and 300 test images per client, 20 % IID + 80 % from a dominant class
triplet, the paper's personalised-FL split), or the CIFAR-10 subset (``--dataset cifar10``:
4,000 training and 1,000 test images; 150 and 20 per client, the most noniid_s allows 20
clients, see ``PER_CLIENT``); every method
trains the reference's CNN for the dataset (``ReferenceCNN``: ``CNN_FMNIST``, ``CifarCNN``):
HyperFL generates its feature extractor from the shared hypernetwork
(``HyperFL`` protocol, the reference's two-phase local round), the others train it
directly with the hypernetwork phase's schedule (``REFERENCE_TRAINING``: SGD lr 0.02,
momentum 0.5, weight decay 5e-4, batch 50, 5 epochs). ``fedavg_ft`` is FedAvg's global
model with its head (``fc2``) fine-tuned for one epoch on each client (HyperFL's head
phase settings), evaluated on that client's split; it is not a federation of its own.
The cost lines are the bytes one client uploads per round (the server's shared layout ×
4 bytes: HyperFL's hypernetwork, FedAvg's whole network) and the wall time per round.

With ``--dp-sigma σ`` every method trains with record-level DP-SGD on the client (σ, clip
``--dp-clip`` C, δ 1e-5; or ``--dp-epsilon ε``: each method's σ planned so that its own
rounds × steps spend ε, the comparison at equal privacy): FedAvg and local-only through
Opacus (``DPSGD``), HyperFL's two phases on DP-SGD steps (``PrivateHyperFLRound``: embedding
and head privatised too); the table gains each method's ε after every round and goes to
``hyperfl_accuracy_dp.md`` (``hyperfl_accuracy_dp_eps<ε>.md``). FedAvg's head fine-tuning is
left out there (it would be a further, separately accounted DP-SGD pass on each client's data).

Each (method, round range) is a cached unit (``UnitCache``, with the federation's state
at its end), so a killed or extended run resumes at the first missing range of
``--chunk`` rounds. Writes ``benchmarks/results/hyperfl_accuracy.md`` and a per-round
accuracy figure in ``benchmarks/results/figures/`` (PNG and PDF); ``hyperfl_accuracy_cifar10.md`` for CIFAR-10.

    python -m fedarena.benchmarks.reproductions.protocols.hyperfl_accuracy [--dataset fashion_mnist]
        [--clients 20] [--rounds 50] [--methods fedavg local hyperfl] [--chunk 5] [--threads 1] [--device cpu]
        [--dp-sigma 1.0 | --dp-epsilon 15] [--dp-clip 1.0] [--fresh]
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedarena import defenses  # noqa: F401  (registers hyperfl)
from fedarena.benchmarks.figures.report import Curve, accuracy_figure
from fedarena.benchmarks.figures.style import save_figure
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.units import UnitCache, digest, unit_key
from fedarena.benchmarks.reproductions import RESULTS as REPRO_RESULTS
from fedarena.benchmarks.reproductions import command, run_script
from fedarena.benchmarks.reproductions.robustness.common import fmt, machine_line, today, write_lines
from fedarena.defenses.privacy import DPSGD
from fedarena.defenses.protocols import REFERENCE_TRAINING, HyperFL, ReferenceCNN, build_hyperfl_net, hyperfl_sizes
from fedarena.fl_core import Client, FederationConfig, ImageDataset, LocalTraining, Simulation, load_dataset, partition
from fedarena.fl_core.client import GlobalState, train_client
from fedarena.fl_core.evaluation import evaluate
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.vectors import model_to_vector

RESULTS = REPRO_RESULTS / "hyperfl_accuracy.md"
METHODS = ("fedavg", "local", "hyperfl")
LABELS = {"fedavg": "FedAvg", "fedavg_ft": "FedAvg + local head fine-tuning", "local": "local only",
          "hyperfl": "HyperFL"}
#: HyperFL's head phase settings, used for FedAvg's head fine-tuning.
HEAD = LocalTraining(lr=0.1, epochs=1, batch_size=50, momentum=0.5, weight_decay=5e-4)
#: per dataset: training and test images per client (None: the split's size / clients). The CIFAR-10
#: subset (4,000 / 1,000 images, ~400 / ~100 per class) cannot give 20 noniid_s clients 200 / 50: each
#: triplet's classes run out; 150 / 20 are the largest multiples of 5 the partition allows for 20 clients.
PER_CLIENT: dict[str, tuple[int | None, int | None]] = {"fashion_mnist": (600, 300), "cifar10": (150, 20)}
TITLES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10 subset"}


@dataclass
class Federation:
    clients: list[Client]
    tests: dict[int, ImageDataset]
    seed: int
    device: torch.device
    input_shape: tuple[int, ...] = (1, 28, 28)
    sizes: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def target(self) -> ReferenceCNN:
        return target(self.seed, self.input_shape)


def build_data(clients: int, seed: int, device: torch.device, dataset: str = "fashion_mnist") -> Federation:
    train, test = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    n_train, n_test = (given if given is not None else len(split) // clients
                       for given, split in zip(PER_CLIENT[dataset], (train, test), strict=True))
    tr = partition("noniid_s", train.labels, clients, seed, local_size=n_train)
    te = partition("noniid_s", test.labels, clients, seed, local_size=n_test)
    return Federation([Client(i, train.subset(tr[i]).to(device)) for i in range(clients)],
                      {i: test.subset(te[i]).to(device) for i in range(clients)}, seed, device,
                      tuple(train.input_shape), (n_train, n_test))


def target(seed: int, input_shape: tuple[int, ...] = (1, 28, 28)) -> ReferenceCNN:
    """The reference's CNN for the input shape (FMNIST's for 1 channel, CIFAR's for 3), the
    same initialisation for every method and client."""
    torch.manual_seed(seed)
    return ReferenceCNN(10, input_shape)


class Method:
    """One method's federation, stepped round by round; ``state``/``restore`` carry it
    across cached round ranges (everything a later round depends on, the DP accountants'
    histories included). ``dp``: the clients train with this DP-SGD trainer (None: honest)."""

    def __init__(self, fed: Federation, dp: DPSGD | None = None) -> None:
        self.fed, self.dp = fed, dp
        self.trainer = train_client if dp is None else dp

    def _privacy(self) -> dict[str, float]:
        if self.dp is None:
            return {}
        sigma = self.dp.noise_multiplier_of(self.fed.clients[0].client_id)
        return {"epsilon": self.dp.epsilon(), **({} if sigma is None else {"sigma": sigma})}

    def _dp_state(self) -> dict[str, Any]:
        return {} if self.dp is None else {"dp": self.dp.state_dict()}

    def _restore_dp(self, state: dict[str, Any]) -> None:
        if self.dp is not None:
            self.dp.load_state_dict(state["dp"])


class SimulationMethod(Method):
    """FedAvg or HyperFL through ``Simulation`` (all clients every round)."""

    def __init__(self, fed: Federation, rounds: int, hyperfl: bool, dp: DPSGD | None = None) -> None:
        super().__init__(fed, dp)
        model = build_hyperfl_net(fed.target(), seed=fed.seed) if hyperfl else fed.target()
        self.sizes = hyperfl_sizes(model) if hyperfl else None
        cfg = FederationConfig(rounds=rounds, seed=fed.seed, local=REFERENCE_TRAINING)
        self.sim = Simulation(model.to(fed.device), fed.clients, cfg, test_set=fed.tests,
                              protocol=HyperFL() if hyperfl else None, trainer=self.trainer, progress=False)
        self.fine_tune = not hyperfl and dp is None

    def round(self, r: int) -> dict[str, float]:
        rec = self.sim.run_round(r)
        server = self.sim.server  # what one client uploads: the shared layout, in the state's dtype
        out = {"acc": float(rec.accuracy), "seconds": rec.seconds,  # type: ignore[arg-type]
               "upload_bytes": server.layout.dim * server.state.params.element_size(), **self._privacy()}
        if self.fine_tune:
            out["acc_ft"] = sum(evaluate(self._fine_tuned(c, r), self.fed.tests[c.client_id])[0]
                                for c in self.fed.clients) / len(self.fed.clients)
        return out

    def _fine_tuned(self, client: Client, r: int) -> torch.nn.Module:
        m = copy.deepcopy(self.sim.model)
        for n, p in m.named_parameters():
            p.requires_grad_(n.startswith("fc2"))
        train_client(m, GlobalState(model_to_vector(m)), client.client_id, client.data, HEAD,
                     torch_generator(self.fed.seed, "ft", client.client_id, r))
        return m

    def state(self) -> dict[str, Any]:
        server = self.sim.server
        return {"model": server.model.state_dict(), "params": server.state.params, "buffers": server.state.buffers,
                "clients": {cid: kept.values for cid, kept in self.sim.client_states.items()}, **self._dp_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.sim.server.model.load_state_dict(state["model"])
        self.sim.server.state = GlobalState(state["params"], state["buffers"])
        for cid, values in state["clients"].items():
            self.sim.client_state(cid).values.update(values)
        self._restore_dp(state)


class LocalOnly(Method):
    """Every client trains its own copy of the target on its data, nothing shared."""

    def __init__(self, fed: Federation, dp: DPSGD | None = None) -> None:
        super().__init__(fed, dp)
        self.worker = fed.target().to(fed.device)
        self.params = {c.client_id: GlobalState(model_to_vector(fed.target()).to(fed.device))
                       for c in fed.clients}

    def round(self, r: int) -> dict[str, float]:
        start = time.perf_counter()
        total = 0.0
        for c in self.fed.clients:
            upd, _ = self.trainer(self.worker, self.params[c.client_id], c.client_id, c.data, REFERENCE_TRAINING,
                                  torch_generator(self.fed.seed, "client", c.client_id, "round", r))
            self.params[c.client_id] = GlobalState(self.params[c.client_id].params + upd.vector)
            total += evaluate(self.worker, self.fed.tests[c.client_id])[0]
        return {"acc": total / len(self.fed.clients), "seconds": time.perf_counter() - start, "upload_bytes": 0,
                **self._privacy()}

    def state(self) -> dict[str, Any]:
        return {"params": {cid: s.params for cid, s in self.params.items()}, **self._dp_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.params = {cid: GlobalState(p) for cid, p in state["params"].items()}
        self._restore_dp(state)


@dataclass(frozen=True)
class DPSetting:
    """DP-SGD on every client: clip C and either σ or a target ε over the run's rounds."""

    clip: float = 1.0
    sigma: float | None = None
    epsilon: float | None = None

    def trainer(self, rounds: int) -> DPSGD:
        if self.epsilon is not None:
            return DPSGD(target_epsilon=self.epsilon, planned_rounds=rounds, max_grad_norm=self.clip)
        return DPSGD(noise_multiplier=self.sigma, max_grad_norm=self.clip)


def build_method(name: str, fed: Federation, rounds: int, dp: DPSetting | None = None) -> Method:
    """``name``'s federation; ``dp`` gives it its own DP-SGD trainer (accountants per method)."""
    trainer = None if dp is None else dp.trainer(rounds)
    if name == "local":
        return LocalOnly(fed, trainer)
    return SimulationMethod(fed, rounds, hyperfl=name == "hyperfl", dp=trainer)


def ranges(rounds: int, chunk: int) -> list[tuple[int, int]]:
    """Round ranges [a, b) of ``chunk`` rounds (the last one shorter)."""
    return [(a, min(a + chunk, rounds)) for a in range(0, rounds, chunk)]


def run_method(name: str, fed: Federation, args: argparse.Namespace, cache: UnitCache,
               setting: str) -> list[dict[str, float]]:
    """Per-round results of ``name`` for rounds 1..``args.rounds``, from cached ranges where
    present; computing resumes from the state stored with the last cached range."""
    rows: list[dict[str, float]] = []
    method: Method | None = None
    previous: str | None = None
    for a, b in ranges(args.rounds, args.chunk):
        key = unit_key(f"{name} rounds {a + 1}-{b}", setting)
        cached = cache.get(key)
        if cached is not None:
            rows.extend(cached)
            previous, method = key, None
            print(f"[{name}] rounds {a + 1}-{b}: cached", flush=True)
            continue
        if method is None:
            method = build_method(name, fed, args.rounds, dp_setting(args))
            if previous is not None:
                state = cache.get_tensors(previous + ".state", map_location=fed.device)
                if state is None:
                    raise RuntimeError(f"cached range {previous!r} has no stored state to resume from; "
                                       "re-run with --fresh")
                method.restore(state)
        out = []
        for r in range(a, b):
            out.append(method.round(r))
            print(f"[{name}] round {r + 1}/{args.rounds}: accuracy {out[-1]['acc']:.4f} "
                  f"({out[-1]['seconds']:.0f} s)", flush=True)
        cache.put_tensors(key + ".state", method.state())
        cache.put(key, out)
        rows.extend(out)
        previous = key
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=tuple(PER_CLIENT), default="fashion_mnist")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--chunk", type=int, default=5, help="rounds per cached unit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--dp-sigma", type=float, default=None,
                        help="train every method with DP-SGD on the client at this noise multiplier")
    parser.add_argument("--dp-epsilon", type=float, default=None,
                        help="train every method with DP-SGD, its sigma planned to spend this epsilon over --rounds")
    parser.add_argument("--dp-clip", type=float, default=1.0, help="DP-SGD's per-sample clipping norm C")
    parser.add_argument("--fresh", action="store_true", help="recompute every range even if cached")
    add_device_option(parser)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.chunk < 1:
        parser.error("--clients, --rounds and --chunk must be >= 1")
    if args.dp_sigma is not None and args.dp_epsilon is not None:
        parser.error("give --dp-sigma or --dp-epsilon, not both")
    if not ((args.dp_sigma is None or args.dp_sigma >= 0) and (args.dp_epsilon is None or args.dp_epsilon > 0)
            and args.dp_clip > 0):
        parser.error("--dp-sigma must be >= 0, --dp-epsilon and --dp-clip > 0")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.out is None:
        suffix = ("" if args.dataset == "fashion_mnist" else f"_{args.dataset}") + (
            "" if args.dp_sigma is None and args.dp_epsilon is None else "_dp") + (
            "" if args.dp_epsilon is None else f"_eps{args.dp_epsilon:g}")
        args.out = RESULTS.with_name(f"{RESULTS.stem}{suffix}.md")
    fed = build_data(args.clients, args.seed, device, args.dataset)
    setting = digest({"clients": args.clients, "seed": args.seed, "chunk": args.chunk, "device": device.type,
                      **({} if args.dataset == "fashion_mnist" else {"dataset": args.dataset}),
                      **({} if args.dp_sigma is None else {"dp": [float(args.dp_sigma), float(args.dp_clip)]}),
                      **({} if args.dp_epsilon is None else {"dp_epsilon": [float(args.dp_epsilon),
                                                                              float(args.dp_clip)]})})
    results: dict[str, list[dict[str, float]]] = {}
    start = time.perf_counter()
    with UnitCache("hyperfl_accuracy", fresh=args.fresh) as cache:
        for name in args.methods:
            results[name] = run_method(name, fed, args, cache, setting)
    sizes = hyperfl_sizes(build_hyperfl_net(fed.target(), seed=args.seed))
    figure = args.out.parent / "figures" / f"{args.out.stem}.png"  # results/*.png are not committed
    figure.parent.mkdir(parents=True, exist_ok=True)
    save_figure(accuracy_figure(_curves(results), f"{TITLES[args.dataset]}, noniid_s, {args.clients} clients"),
                figure, formats=("png", "pdf"))  # whole-round ticks; the PDF for a paper
    write_lines(args.out, report(results, args, argv, sizes, figure, fed.sizes))
    print(f"all methods: {time.perf_counter() - start:.0f} s; wrote {args.out} and {figure}")
    return 0


def dp_setting(args: argparse.Namespace) -> DPSetting | None:
    """The run's DP-SGD, or None without DP."""
    if args.dp_sigma is None and args.dp_epsilon is None:
        return None
    return DPSetting(float(args.dp_clip), args.dp_sigma, args.dp_epsilon)


def _curves(results: dict[str, list[dict[str, float]]]) -> list[Curve]:
    curves = []
    for name, rows in results.items():
        for key, label in (("acc", LABELS[name]), ("acc_ft", LABELS["fedavg_ft"])):
            if rows and key in rows[0]:
                accs = [row[key] for row in rows]
                curves.append(Curve(label, list(range(1, len(accs) + 1)), accs, [0.0] * len(accs)))
    return curves


def _noise_words(dp: DPSetting, results: dict[str, list[dict[str, float]]], rounds: int) -> str:
    if dp.epsilon is None:
        return f"noise multiplier σ = {dp.sigma:g}"
    planned = ", ".join(f"{LABELS[name]} {rows[0]['sigma']:.3f}" for name, rows in results.items()
                        if rows and "sigma" in rows[0])
    return (f"each method's noise multiplier planned (Opacus' search over its own steps per round × "
            f"{rounds} rounds) to spend ε = {dp.epsilon:g}: σ = {planned}")


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace, argv: list[str] | None,
           sizes: Any, figure: Path, per_client: tuple[int, int]) -> list[str]:
    rounds = args.rounds
    network = "FMNIST CNN" if args.dataset == "fashion_mnist" else "CIFAR-10 CNN"
    dp = dp_setting(args)
    title = ("# HyperFL vs FedAvg, FedAvg + head fine-tuning, local-only: mean local test accuracy" if dp is None else
             "# HyperFL vs FedAvg and local-only, each with DP-SGD on the client: mean local test accuracy and ε")
    lines = [
        title,
        "",
        f"- command: `{command('fedarena.benchmarks.reproductions.protocols.hyperfl_accuracy', argv)}`",
        f"- machine: {machine_line()}; device {args.device}",
        f"- date: {today()}",
        f"- federation: {TITLES[args.dataset]}, {args.clients} clients, noniid_s ({per_client[0]} train / "
        f"{per_client[1]} test images per client), all clients every round, {rounds} round(s), seed {args.seed}; "
        f"target network the reference's {network} for every method; local schedule SGD lr 0.02, momentum 0.5, "
        "weight decay 5e-4, batch 50, 5 epochs (HyperFL's hypernetwork phase; its head phase 1 epoch at lr 0.1)",
        f"- HyperFL upload: the hypernetwork, {sizes.hypernetwork:,} parameters, {sizes.upload_ratio:.1f}× "
        f"FedAvg's {sizes.target:,}",
        f"- accuracy: mean over clients of each client's model on its own test split; figure "
        f"`figures/{figure.name}`",
        *([] if dp is None else [
            f"- DP-SGD on every client: {_noise_words(dp, results, rounds)}, per-sample clip C = {dp.clip:g}, Poisson "
            "batches at q = 1/⌈n/50⌉, δ = 1e-5, RDP accountant, add/remove-one-record adjacency; FedAvg and "
            "local-only through Opacus, HyperFL's head and hypernetwork phases on DP-SGD steps (embedding and "
            "head privatised); ε is each method's worst client after that round (HyperFL runs its head phase "
            "too, so it takes more steps per round: at the same σ it spends more ε); no head fine-tuning "
            "baseline (it would be another DP-SGD pass)"]),
        "",
        "| method | " + " | ".join(f"round {r + 1}" for r in range(rounds)) + " | seconds per round |",
        "| --- | " + " | ".join("---" for _ in range(rounds)) + " | --- |",
    ]
    for name, rows in results.items():
        secs = sum(row["seconds"] for row in rows) / len(rows)
        lines.append(f"| {LABELS[name]} | " + " | ".join(fmt(row["acc"], 4) for row in rows) + f" | {secs:.0f} |")
        if rows and "epsilon" in rows[0]:
            lines.append(f"| ε, {LABELS[name]} | " + " | ".join(fmt(row["epsilon"], 2) for row in rows) + " | |")
        if rows and "acc_ft" in rows[0]:
            lines.append(f"| {LABELS['fedavg_ft']} | " + " | ".join(fmt(row["acc_ft"], 4) for row in rows)
                         + " | (FedAvg's, plus the fine-tuning) |")
    lines += ["", "Cost per round (wall time on the machine above, mean over the rounds computed in the run that "
              "cached them; bytes as float32):", "",
              "| method | bytes uploaded per client per round | × FedAvg's | wall seconds per round | "
              "seconds per client per round |", "| --- | --- | --- | --- | --- |"]
    base = next((rows[0]["upload_bytes"] for name, rows in results.items() if name == "fedavg" and rows), None)
    for name, rows in results.items():
        up = rows[0].get("upload_bytes", float("nan"))
        secs = sum(row["seconds"] for row in rows) / len(rows)
        ratio = f"{up / base:.1f}" if base else "n/a"
        lines.append(f"| {LABELS[name]} | {up:,.0f} | {ratio} | {secs:.1f} | {secs / args.clients:.2f} |")
    return lines + [""]


if __name__ == "__main__":
    raise SystemExit(run_script(main))
