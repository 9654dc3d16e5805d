"""Privacy–utility table (issue 5): inversion attacks and FedAvg accuracy under each privacy defense.

Privacy: CIFAR-10 test images 0–3, one image per client, batch 1, FedSGD (the client
uploads one gradient of its one image at the initial model; DP-SGD's Poisson sampling
has rate 1 here, so the image is always used). The attacked client computes that
gradient with its model in eval mode, the setting of the Inverting Gradients paper and
of FedArena's IG benchmark (``benchmarks/reproductions/inversion/ig_cifar.py``); the mode matters
only for the ConvNet's BatchNorm, which DP-SGD replaces by GroupNorm. In train mode,
BatchNorm at batch 1 normalises with the one image's own statistics and IG-16 reached
only 11.6 dB undefended in a first run of this table (``--client-model-mode train``).

Two attacks sized for a 2-core CPU: DLG on the sigmoid LeNet (its defaults: 300 L-BFGS
steps, label by iDLG) and Inverting Gradients on the IG ConvNet of width 16 (1,000
iterations, its other defaults). DLG runs L-BFGS with the strong-Wolfe line search:
without it (the reference code's setting) L-BFGS at lr 1 diverged on image 0 of this
LeNet (PSNR 5.7 undefended), with it DLG is near-perfect undefended (PSNR 37.8), which
the issue presumes. The attacked upload goes through the defense exactly as in a
federation and the attack receives an ``Observation``: the harness's privacy task code
does both (``fedarena.benchmarks.harness.tasks.privacy.attacked_uploads`` and ``invert_upload``:
a one-round ``Simulation`` with an observer, ``make_observation``, the attack by registry
name, ``score_privacy``); this script only lays out the clients (client i holds image i).
Naive attacker everywhere; adaptive attacker (the defense's ``attacker_view`` as the
attack's ``update_transform``) for the deterministic transforms (clipping, pruning,
quantization). Scores are means over the images; PSNR also gets the median and
interquartile range over the images (``fedarena.benchmarks.metrics.privacy.summarize_psnr``), and an
exact reconstruction (infinite PSNR, cached as null) is counted apart from the mean, never
silently dropped.

Utility: FedAvg on MNIST, ``lenet5``, 20 IID clients, 20 rounds, every client every
round, 1 local epoch of SGD (lr 0.05, batch 64), with the same defense installed;
test accuracy after the last round. ε (δ = 1e-5) for the DP rows: the worst client of
the MNIST federation (RDP accountant over all its steps) and the attacked upload (one
full-batch step). Privacy and utility come from different datasets and models (issue 5's
design): a row sets side by side what one defense setting does to each, it is not a
trade-off measured on one model, and the table says so. Data-size warnings (a data root
holding a CIFAR-10 or MNIST subset) are listed under the table.

    python -m fedarena.benchmarks.reproductions.privacy_utility.table [--quick] [--rows none,pruning_10] [--threads 2]

``--quick`` checks the whole pipeline in minutes (1 image, few attack iterations, 2
MNIST rounds on 10 % of the data); its numbers say nothing about the defenses.

Every finished unit (one row's MNIST run; one attack on one image in one attacker mode)
is cached in the unit store (``fedarena.benchmarks.harness.units``: ``runs/bench_cache/results.sqlite``,
benchmark ``privacy_utility``), keyed by everything that changes it, with the code's
provenance, and the table is rewritten after every row. A killed run resumes where it
stopped, and row subsets can run in separate processes (``--rows``, one thread each);
a last invocation without ``--rows`` then assembles the full table from the cache.
``--fresh`` ignores the cache; a unit cached by other code stops the script (re-run with
``--fresh``). ``--device`` chooses where models are built (not part of the cache keys).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from fedarena.benchmarks.harness.atomic import write_atomic
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.tasks.privacy import Uploads, attacked_uploads, invert_upload
from fedarena.benchmarks.harness.units import UnitCache, digest
from fedarena.benchmarks.metrics.privacy import PSNRSummary, summarize_psnr
from fedarena.benchmarks.reproductions import RESULTS, command, run_script
from fedarena.defenses import PRIVACY_DEFENSES, ClientDefense
from fedarena.defenses.privacy import defense_epsilon, defense_epsilons, prepare_model
from fedarena.fl_core import (
    Client,
    FederationConfig,
    ImageDataset,
    LocalTraining,
    Simulation,
    ThreatModel,
    build_model,
    derive_seed,
    load_dataset,
    mode_dependent,
    partition,
    train_client,
)
from fedarena.fl_core.datasets import DatasetSizeWarning

DELTA = 1e-5


@dataclass(frozen=True)
class DefenseRow:
    """One defense setting; ``adaptive``: it has a deterministic part an attacker can replay."""

    key: str
    label: str
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    adaptive: bool = False


ROWS: tuple[DefenseRow, ...] = (
    DefenseRow("none", "none"),
    *(DefenseRow(f"dp_sgd_{s}", f"dp_sgd σ = {s}, C = 1", "dp_sgd", {"noise_multiplier": s, "max_grad_norm": 1.0})
      for s in (0.5, 1.0, 2.0)),
    *(DefenseRow(f"gaussian_{s:g}", f"gaussian_noise σ = {s:g}", "gaussian_noise", {"sigma": s})
      for s in (1e-3, 1e-2, 1e-1)),
    DefenseRow("clipping_1", "clipping C = 1", "clipping", {"max_norm": 1.0}, adaptive=True),
    *(DefenseRow(f"pruning_{round(f * 100)}", f"pruning keep {f:.0%}", "pruning", {"fraction": f}, adaptive=True)
      for f in (0.5, 0.1, 0.01)),
    *(DefenseRow(f"quantization_{b}", f"quantization {b} bits", "quantization", {"bits": b}, adaptive=True)
      for b in (8, 4)),
)


@dataclass(frozen=True)
class AttackSpec:
    key: str
    label: str
    attack: str
    model: str
    model_options: dict[str, Any]
    settings: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    images: tuple[int, ...] = (0, 1, 2, 3)
    dlg_iterations: int = 300
    ig_iterations: int = 1000
    mnist_rounds: int = 20
    mnist_clients: int = 20
    mnist_fraction: float = 1.0
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0
    client_model_mode: str = "eval"  # the attacked client's model mode while it computes its upload

    def attacks(self) -> tuple[AttackSpec, ...]:
        return (
            AttackSpec("dlg", "DLG · LeNet (sigmoid)", "dlg", "lenet", {},
                       {"iterations": self.dlg_iterations, "line_search": "strong_wolfe"}),
            AttackSpec("ig", "IG · ConvNet-16", "inverting_gradients", "convnet", {"width": 16},
                       {"iterations": self.ig_iterations}),
        )


QUICK = Plan(images=(0,), dlg_iterations=5, ig_iterations=20, mnist_rounds=2, mnist_fraction=0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (numbers are not meaningful)")
    parser.add_argument("--rows", default="", help=f"comma-separated row keys (default all): "
                                                   f"{', '.join(r.key for r in ROWS)}")
    parser.add_argument("--skip-utility", action="store_true")
    parser.add_argument("--skip-attacks", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", default=None, help="comma-separated CIFAR-10 test indices (default 0,1,2,3)")
    for name in ("dlg_iterations", "ig_iterations", "mnist_rounds"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="override the plan")
    parser.add_argument("--mnist-fraction", type=float, default=None, help="override the plan")
    parser.add_argument("--client-model-mode", choices=("train", "eval"), default=None,
                        help="override the plan (the attacked client's model mode; default eval)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--fresh", action="store_true", help="recompute units even if cached")
    add_device_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = replace(QUICK if args.quick else Plan(), seed=args.seed)
    overrides = {k: getattr(args, k) for k in ("dlg_iterations", "ig_iterations", "mnist_rounds", "mnist_fraction",
                                               "client_model_mode") if getattr(args, k) is not None}
    if args.images:
        overrides["images"] = tuple(int(i) for i in args.images.split(","))
    plan = replace(plan, **overrides)
    rows = _select(args.rows)
    partial = args.quick or bool(overrides) or bool(args.rows) or args.skip_utility or args.skip_attacks
    out = args.out or RESULTS / ("privacy_utility_partial.md" if partial else "privacy_utility.md")
    data_notes: list[str] = []  # data-size warnings, shown under the table

    start = time.perf_counter()
    cache = UnitCache("privacy_utility", fresh=args.fresh)
    command_line = command("fedarena.benchmarks.reproductions.privacy_utility.table", argv)
    results: dict[str, dict[str, Any]] = {}
    cifar = None if args.skip_attacks else _cifar_images(plan.images, data_notes)
    mnist: list[tuple[ImageDataset, ImageDataset]] = []  # loaded on first use: cached rows need no data
    for n, row in enumerate(rows, start=1):
        entry: dict[str, Any] = {"row": asdict(row)}
        if not args.skip_utility:
            key = f"utility_{row.key}_" + _plan_part(plan, "mnist_rounds", "mnist_clients", "mnist_fraction", "lr",
                                                      "batch_size", "seed")
            entry["utility"] = cache.get(key)
            if entry["utility"] is None:
                if not mnist:
                    mnist.append(_mnist(plan, data_notes))
                entry["utility"] = cache.put(key, utility(row, plan, *mnist[0], device=args.device))
            print(f"[{row.key}] MNIST accuracy {entry['utility']['accuracy']:.4f} "
                  f"({entry['utility']['seconds']:.0f} s)", flush=True)
        if cifar is not None:
            entry["attacks"] = {spec.key: privacy(row, spec, plan, cifar, cache, args.device)
                                for spec in plan.attacks()}
        results[row.key] = entry
        _write(out, rows, results, plan, command_line, time.perf_counter() - start,
               partial or n < len(rows), data_notes)
    total = time.perf_counter() - start
    print(f"wrote {out} ({total:.0f} s this invocation)")
    return 0


def _plan_part(plan: Plan, *fields: str) -> str:
    """A short stable digest of the plan fields a unit depends on."""
    return digest({f: getattr(plan, f) for f in fields})


# -- utility: FedAvg on MNIST -------------------------------------------------------------

def utility(row: DefenseRow, plan: Plan, train: ImageDataset, test: ImageDataset,
            device: torch.device | str = "cpu") -> dict[str, Any]:
    """Final test accuracy of FedAvg with the defense installed, and ε for DP rows."""
    defense = _defense(row)
    parts = partition("iid", train.labels, plan.mnist_clients, plan.seed)
    clients = [Client(i, train.subset(idx)) for i, idx in enumerate(parts)]
    model = prepare_model(defense, build_model("lenet5", 10, train.input_shape, seed=plan.seed)).to(device)
    cfg = FederationConfig(rounds=plan.mnist_rounds, local=LocalTraining(lr=plan.lr, epochs=1,
                                                                          batch_size=plan.batch_size),
                           seed=plan.seed, eval_every=plan.mnist_rounds)
    sim = Simulation(model, clients, cfg, test, defense.aggregator, trainer=defense.trainer or train_client,
                     transforms=defense.transforms, progress=False)
    start = time.perf_counter()
    history = sim.run()
    return {"accuracy": history.final_accuracy, "epsilon": defense_epsilon(defense, DELTA),
            "epsilon_by_adjacency": defense_epsilons(defense, DELTA),
            "seconds": time.perf_counter() - start, "rounds": plan.mnist_rounds, "client_size": len(parts[0])}


# -- privacy: the two inversion attacks -----------------------------------------------------

def privacy(row: DefenseRow, spec: AttackSpec, plan: Plan, cifar: ImageDataset, cache: UnitCache,
            device: torch.device | str = "cpu") -> dict[str, Any]:
    """Per-image scores of the naive (and, where it applies, adaptive) attacker: the harness's
    privacy task code (``attacked_uploads``, ``invert_upload``) on this table's client layout."""
    defense = _defense(row)
    model = prepare_model(defense, build_model(spec.model, 10, cifar.input_shape, seed=plan.seed,
                                               **spec.model_options)).to(device)
    uploads = _uploads(model, defense, cifar, plan)  # one cheap round: ε and every upload
    # the client's model mode changes the upload only for a model with BatchNorm or dropout
    mode_part = f"_{plan.client_model_mode}" if mode_dependent(model) else ""
    modes = ("naive", "adaptive") if row.adaptive else ("naive",)
    out: dict[str, Any] = {"epsilon_upload": defense_epsilon(defense, DELTA),
                           "epsilon_upload_by_adjacency": defense_epsilons(defense, DELTA)}
    iterations = plan.dlg_iterations if spec.key == "dlg" else plan.ig_iterations
    for mode in modes:
        per_image = []
        for index, event in zip(plan.images, uploads.events, strict=True):
            key = (f"{spec.key}_{row.key}_{mode}_image{index}_"
                   + _plan_part(plan, "images", "seed") + f"_it{iterations}{mode_part}")
            cached = cache.get(key)
            if cached is not None:
                per_image.append(cached)
                print(f"[{row.key}] {spec.key} {mode} image {index}: cached, psnr {cached.get('psnr')}", flush=True)
                continue
            attack = {"name": spec.attack, "params": spec.settings, "adaptive": mode == "adaptive"}
            inv = invert_upload(event, uploads.template, ThreatModel(), cifar, attack, defense,
                                derive_seed(plan.seed, "inversion", index))
            rec, scored = inv.reconstruction, inv.scores
            scores = {k: _float(v) for k, v in scored.means().items()}
            per_image.append(cache.put(key, {"image": index, **scores, "lpips_note": scored.lpips_note,
                                             "seconds": rec.wall_time,
                                             "final_loss": rec.loss_trace[-1] if rec.loss_trace else None}))
            print(f"[{row.key}] {spec.key} {mode} image {index}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in scores.items() if v is not None) + f" ({rec.wall_time:.0f} s)",
                flush=True)
        out[mode] = {"images": per_image, **_means(per_image)}
    return out


def _uploads(model: torch.nn.Module, defense: ClientDefense, cifar: ImageDataset, plan: Plan) -> Uploads:
    """One FedSGD round, one image per client (client i holds image ``plan.images[i]``), through
    the defense; the server's view of every upload."""
    clients = [Client(i, cifar.subset([i])) for i in range(len(cifar))]
    training = LocalTraining(algorithm="fedsgd", batch_size=1, model_mode=plan.client_model_mode)
    cfg = FederationConfig(rounds=1, local=training, seed=plan.seed)
    return attacked_uploads(copy.deepcopy(model), clients, cfg, defense, defense.aggregator,  # the server steps
                            attack_round=0, attacked={c.client_id for c in clients})  # its own copy


# -- helpers ------------------------------------------------------------------------------

def _defense(row: DefenseRow) -> ClientDefense:
    return ClientDefense() if row.name is None else PRIVACY_DEFENSES.build(row.name, **row.params)


def _select(keys: str) -> list[DefenseRow]:
    if not keys:
        return list(ROWS)
    known = {r.key: r for r in ROWS}
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {', '.join(known)}")
    return [known[k] for k in wanted]


def _load(name: str, split: str, notes: list[str]) -> ImageDataset:
    """``load_dataset`` with its data-size warning kept for the table (other warnings pass through)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(name, split)
    for w in caught:
        if issubclass(w.category, DatasetSizeWarning):
            if str(w.message) not in notes:
                notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return data


def _cifar_images(indices: tuple[int, ...], notes: list[str]) -> ImageDataset:
    return _load("cifar10", "test", notes).subset(list(indices))


def _mnist(plan: Plan, notes: list[str]) -> tuple[ImageDataset, ImageDataset]:
    train, test = _load("mnist", "train", notes), _load("mnist", "test", notes)
    if plan.mnist_fraction < 1:
        gen = torch.Generator().manual_seed(derive_seed(plan.seed, "mnist_subset"))
        train = train.subset(torch.randperm(len(train), generator=gen)[: int(plan.mnist_fraction * len(train))])
        test = test.subset(torch.arange(int(plan.mnist_fraction * len(test))))
    return train, test


def _means(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the images; PSNR's over the finite ones, with the exact (∞, cached as null)
    counted and the median and quartiles over all (``summarize_psnr``; ∞ stored as null)."""
    out: dict[str, Any] = {}
    for key in ("ssim", "lpips"):
        values = [p[key] for p in per_image if isinstance(p.get(key), float)]
        out[key] = sum(values) / len(values) if values else None
    psnr = summarize_psnr([p.get("psnr") for p in per_image])
    out.update({"psnr": psnr.mean, "psnr_exact": psnr.exact, "psnr_median": _float(psnr.median),
                "psnr_q1": _float(psnr.q1), "psnr_q3": _float(psnr.q3)})
    labels = [p["label_accuracy"] for p in per_image if p.get("label_accuracy") is not None]
    out["label_accuracy"] = sum(labels) / len(labels) if labels else None
    out["seconds"] = sum(p["seconds"] for p in per_image)
    return out


def _unit_seconds(results: dict[str, dict[str, Any]]) -> float:
    total = 0.0
    for entry in results.values():
        total += entry.get("utility", {}).get("seconds", 0.0)
        for attack in entry.get("attacks", {}).values():
            total += sum(attack.get(m, {}).get("seconds", 0.0) for m in ("naive", "adaptive"))
    return total


def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _psnr_cell(images: list[dict[str, Any]]) -> str:
    """Mean over the finite images (+k ∞ for exact ones) and median [IQR] over all of them."""
    if not images:
        return "–"
    s: PSNRSummary = summarize_psnr([p.get("psnr") for p in images])
    text = _fmt(s.mean) + (f" (+{s.exact} ∞)" if s.exact else "")
    if s.images > 1:
        text += f"; median {_fmt(s.median)} [{_fmt(s.q1)}–{_fmt(s.q3)}]"
    return text


PSNR_NOTE = ("PSNR (dB): mean over the images; an exact reconstruction has infinite PSNR and is left out of the "
             "mean and counted as “+k ∞”; median [interquartile range] over every image, ∞ ranking highest.")
PAIRING_NOTE = ("Privacy and utility are measured on different datasets and models (attacks: CIFAR-10 on the "
                "sigmoid LeNet and ConvNet-16; utility: MNIST on lenet5, as issue 5 specifies): a row sets side "
                "by side what one defense setting does to each, it is not a trade-off measured on one model.")
LPIPS_NOTE = ("LPIPS on these 32×32 CIFAR-10 images is much less discriminative than at 64×64 and above (at "
              "32×32, Gaussian noise of σ 0.2 scores only 0.058 and a 4× blur 0.26): compare it between rows of "
              "this table, not with LPIPS reported on larger images.")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


EPSILON_NOTE = ("ε: add/remove adjacency (sensitivity C, the accountant's default) / replace-one adjacency "
                "(sensitivity 2C, the usual local-DP notion); \"?\" after the slash = computed by code that "
                "recorded only add/remove, \"–\" = not accounted (DP-SGD and central DP account add/remove "
                "only) or not a DP defense.")


def _eps_cell(add_remove: Any, by_adjacency: dict[str, Any] | None) -> str:
    """``add/remove / replace`` (``?`` for a unit stored before both were recorded)."""
    if add_remove is None:
        return "–"
    replace = "?" if by_adjacency is None else _fmt(by_adjacency.get("replace"))
    return f"{_fmt(add_remove)} / {replace}"


def _write(out: Path, rows: list[DefenseRow], results: dict[str, dict[str, Any]], plan: Plan, command: str,
           seconds: float, partial: bool, data_notes: list[str] | None = None) -> None:
    specs = plan.attacks()
    head = ["defense", "attacker"]
    for spec in specs:
        head += [f"{spec.label} PSNR (dB) ↓", "SSIM ↓", "LPIPS ↑"]
    head += ["MNIST accuracy (0–1)", "ε MNIST (add/remove / replace)", "ε upload (add/remove / replace)"]
    lines = [
        "# Privacy–utility table" + (" (partial or reduced run: not the acceptance table)" if partial else ""),
        "",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{platform.processor() or platform.machine()}",
        f"- date: {dt.date.today().isoformat()}",
        f"- runtime of this invocation: {seconds:.0f} s ({seconds / 60:.1f} min); compute of every unit "
        f"(attacks + MNIST runs, as they ran, possibly in earlier or parallel invocations): "
        f"{_unit_seconds(results) / 60:.1f} min",
        f"- plan: {json.dumps(asdict(plan))}",
        "",
        "Attacks: CIFAR-10 test images " + ", ".join(map(str, plan.images)) + ", batch 1, FedSGD upload at the "
        f"initial model computed in {plan.client_model_mode} mode; ↓/↑: lower/higher is better for the defender "
        "(PSNR, SSIM lower = less leakage). "
        "Utility: FedAvg on MNIST, lenet5, "
        f"{plan.mnist_clients} IID clients, {plan.mnist_rounds} rounds, SGD lr {plan.lr}, batch {plan.batch_size}, "
        f"1 local epoch. ε at δ = {DELTA:g} (RDP accountant), worst client.",
        "",
        f"*Inversion attacks (PSNR, SSIM, LPIPS: means over the {len(plan.images)} images) and FedAvg accuracy on "
        "MNIST under each defense; ↓/↑: lower/higher is better for the defender. " + PSNR_NOTE + " " + PAIRING_NOTE
        + "*",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + " |",
    ]
    for row in rows:
        if row.key not in results:  # not reached yet in this invocation
            lines.append("| " + " | ".join([row.label, "pending"] + ["…"] * (len(head) - 2)) + " |")
            continue
        entry = results[row.key]
        util = entry.get("utility", {})
        attacks = entry.get("attacks", {})
        for mode in ("naive", "adaptive") if row.adaptive else ("naive",):
            cells = [row.label, mode]
            for spec in specs:
                res = attacks.get(spec.key, {}).get(mode, {})
                cells += [_psnr_cell(res.get("images", [])), _fmt(res.get("ssim"), 3), _fmt(res.get("lpips"), 3)]
            upload = next((a for a in attacks.values() if "epsilon_upload" in a), {})
            cells += [_fmt(util.get("accuracy"), 4),
                      _eps_cell(util.get("epsilon"), util.get("epsilon_by_adjacency")),
                      _eps_cell(upload.get("epsilon_upload"), upload.get("epsilon_upload_by_adjacency"))]
            lines.append("| " + " | ".join(cells) + " |")
    notes = {n for e in results.values() for a in e.get("attacks", {}).values() for m in ("naive", "adaptive")
             for p in a.get(m, {}).get("images", []) if (n := p.get("lpips_note"))}
    lines += ["", EPSILON_NOTE, "", LPIPS_NOTE]
    lines += ["", *(f"LPIPS: {n}." for n in sorted(notes))]
    lines += ["", *(f"Data: {n}" for n in data_notes or [])]
    lines += ["", "Per-image scores, label recovery and timings: the JSON file beside this one.", ""]
    write_atomic(out, "\n".join(lines))
    raw = out.with_suffix(".json")
    write_atomic(raw, json.dumps({"command": command, "seconds": seconds, "plan": asdict(plan), "results": results,
                                  "data_warnings": data_notes or []}, indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(run_script(main))
