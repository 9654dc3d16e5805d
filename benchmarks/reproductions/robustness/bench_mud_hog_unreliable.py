"""Why MUD-HoG's unreliable step finds (or misses) the unreliable clients of the hardest mix, round by round.

The hardest mix of ``bench_mud_hog_mnist`` (40 clients: 5 sign flip, 6 additive noise,
8 multi-label flip, 4 unreliable; Dirichlet 0.9; lenet5) on a seeded MNIST subset for
the budget, run with the gap test before the unreliable split (``gap_references=20``, the
default) and without it (``None``: the authors' rules). Per detection round: how many of
the unreliable clients reach step 5 (neither confirmed malicious nor sign-flip suspects),
this round's unreliable suspects (precision/recall against the true unreliable clients),
the confirmed unreliable set, and what the unreliable clients are labelled or excluded
as otherwise.

    python -m fedarena.benchmarks.reproductions.robustness.bench_mud_hog_unreliable [--seeds 0 1 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fedarena import defenses  # noqa: F401  (registers every aggregator)
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.tasks.federation import build_federation, run_federation
from fedarena.benchmarks.harness.units import UnitCache, digest, unit_key
from fedarena.benchmarks.reproductions import RESULTS as REPRO_RESULTS
from fedarena.benchmarks.reproductions import command, run_script
from fedarena.defenses.aggregation.coordinate import coordinate_median
from fedarena.defenses.mud_hog import MALICIOUS_LABELS, SIGN_FLIP, UNRELIABLE, MudHoG, largest_gap_split
from fedarena.fl_core import FederationConfig, History, LocalTraining
from fedarena.fl_core.aggregation import AggregationResult
from fedarena.fl_core.models import build_model

from .bench_mud_hog_mnist import hardest_mix
from .common import load_mnist, machine_line, today, write_lines

RESULTS = REPRO_RESULTS / "mud_hog_unreliable_rounds.md"


class CosineProbe(MudHoG):
    """``mud_hog`` unchanged, plus, in ``info["unreliable_cosines"]``, step 5's view recomputed from the
    round's updates (its own sliding mean of the last ``window`` updates per client): the cosine of each
    client that reaches step 5 to their coordinate median, and the largest-gap split it would use."""

    def reset(self) -> None:
        super().reset()
        self._mine: defaultdict[int, deque[Tensor]] = defaultdict(lambda: deque(maxlen=self.window))

    def aggregate(self, updates: Tensor, num_samples: Tensor, client_ids: list[int]) -> AggregationResult:
        res = super().aggregate(updates, num_samples, client_ids)
        for cid, u in zip(client_ids, updates, strict=True):
            self._mine[cid].append(u.clone())
        if res.info["stage"] == "detect":
            malicious = self.malicious
            flip = set(res.info["suspects"][SIGN_FLIP])
            benign = [c for c in client_ids if c not in malicious and c not in flip]
            if len(benign) >= 2:
                short = torch.stack([torch.stack(list(self._mine[c])).mean(0) for c in benign])
                med = coordinate_median(short)
                cos = (short @ med) / (short.norm(dim=1) * med.norm()).clamp_min(1e-12)
                res.info["unreliable_cosines"] = {"ids": benign, "cos": cos.tolist(),
                                                  "split": largest_gap_split(cos.tolist())}
        return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--train-size", type=int, default=12000, help="seeded subset of the 60,000 training images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--fresh", action="store_true")
    add_device_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts, groups, unreliable, partition = hardest_mix(args.clients)
    local = LocalTraining(lr=0.01, momentum=0.5, batch_size=32)
    header = [
        "# MUD-HoG's unreliable step on the hardest mix, round by round",
        "",
        f"- command: `{command('fedarena.benchmarks.reproductions.robustness.bench_mud_hog_unreliable', argv)}`",
        f"- machine: {machine_line()}",
        f"- date: {today()}",
        f"- federation: the hardest mix of `bench_mud_hog_mnist` ({counts}), {args.train_size} seeded MNIST "
        f"training images (the full table: 60,000), {args.rounds} rounds (the full table: 40), local SGD lr 0.01, "
        "momentum 0.5, batch 32, 1 epoch; mud_hog defaults with and without the gap test before its splits",
        "- per detection round: reach = unreliable clients that reach step 5 (not confirmed malicious, not "
        "sign-flip suspects); suspects P/R = this round's unreliable suspects against the true unreliable "
        "clients; confirmed = clients confirmed unreliable (true ones / all); elsewhere = the true unreliable "
        "clients' other labels or exclusions this round; cosine ranks = the true unreliable clients' ranks "
        "(1 = lowest) by cosine of short HoG to the median among step 5's clients (`*`: below the largest-gap "
        "split, i.e. flagged if the split is accepted), recomputed by a probe from the round's updates",
        "",
    ]
    cache = UnitCache("mud_hog_unreliable", fresh=args.fresh)
    setting = digest({**{k: v for k, v in vars(args).items() if k in ("rounds", "clients", "train_size")}, "probe": 1})
    lines: list[str] = []
    start = time.perf_counter()
    for seed in args.seeds:
        train, test = load_mnist(args.train_size, seed)
        fed = build_federation(train, args.clients, seed, groups, unreliable, **partition)
        model = build_model("lenet5", train.num_classes, train.input_shape, seed=seed).to(args.device)
        config = FederationConfig(rounds=args.rounds, local=local, seed=seed, eval_every=args.rounds)
        for gap in (20, None):
            label = f"seed {seed}, gap_references {gap}"
            key = unit_key(label, setting)
            rows = cache.get(key)
            if rows is None:
                _, history, _ = run_federation(model, fed, config, test, CosineProbe(seed=seed, gap_references=gap),
                                               log=print, label=label)
                rows = cache.put(key, {"rounds": per_round(history)})["rounds"]
            lines += [f"## {label}", "",
                      "| round | reach | suspects | P | R | confirmed (true/all) | elsewhere | "
                      "unreliable cosine ranks | cosines: unreliable / others (median) |",
                      "| ---: | ---: | --- | ---: | ---: | ---: | --- | --- | --- |"]
            lines += [f"| {r['round']} | {r['reach']} | {r['suspects']} | {r['p']} | {r['r']} | "
                      f"{r['confirmed_true']}/{r['confirmed_all']} | {r['elsewhere']} | {r['ranks']} | {r['cosines']} |"
                      for r in rows]
            lines.append("")
            write_lines(args.out, header + lines)
    print(f"all runs: {time.perf_counter() - start:.0f} s; wrote {args.out}")
    return 0


def per_round(history: History) -> list[dict[str, Any]]:
    """One row per detection round (see the module docstring)."""
    truth = {cid for cid, role in history.roles.items() if role == UNRELIABLE}
    rows = []
    for rec in history.rounds:
        if rec.info.get("stage") != "detect":
            continue
        flags = {int(k): v for k, v in rec.info.get("flags", {}).items()}
        suspects = {k: {int(c) for c in v} for k, v in rec.info.get("suspects", {}).items()}
        excluded = {int(c) for c in rec.info.get("excluded", [])}
        confirmed_malicious = {c for c, lab in flags.items() if lab in MALICIOUS_LABELS}
        reach = truth - confirmed_malicious - suspects.get(SIGN_FLIP, set())
        sus = suspects.get(UNRELIABLE, set())
        hit = len(sus & truth)
        confirmed = {c for c, lab in flags.items() if lab == UNRELIABLE}
        elsewhere = sorted(f"{c}:{flags[c] if c in flags and flags[c] != UNRELIABLE else 'excluded'}"
                           for c in truth if (c in flags and flags[c] != UNRELIABLE) or c in excluded)
        ranks, cosines = _cosine_view(rec.info.get("unreliable_cosines"), truth)
        rows.append({"round": rec.round + 1, "ranks": ranks, "cosines": cosines, "reach": f"{len(reach)}/{len(truth)}",
                     "suspects": ", ".join(map(str, sorted(sus))) or "–",
                     "p": f"{hit / len(sus):.2f}" if sus else "–", "r": f"{hit / len(truth):.2f}" if truth else "–",
                     "confirmed_true": len(confirmed & truth), "confirmed_all": len(confirmed),
                     "elsewhere": ", ".join(elsewhere) or "–"})
    return rows


def _cosine_view(view: dict[str, Any] | None, truth: set[int]) -> tuple[str, str]:
    """Ranks (1 = lowest cosine) of the true unreliable clients among step 5's clients, ``*`` where
    below the largest-gap split; and their median cosine against the others'."""
    if not view:
        return "–", "–"
    order = sorted(range(len(view["ids"])), key=lambda i: view["cos"][i])
    rank = {view["ids"][i]: k + 1 for k, i in enumerate(order)}
    cos = dict(zip(view["ids"], view["cos"], strict=True))
    mine = sorted(c for c in truth if c in rank)
    ranks = ", ".join(f"{rank[c]}{'*' if cos[c] < view['split'] else ''}" for c in mine) + f" of {len(rank)}"
    others = sorted(v for c, v in cos.items() if c not in truth)
    ours = sorted(cos[c] for c in mine)
    return ranks, f"{_middle(ours):.3f} / {_middle(others):.3f}"


def _middle(values: list[float]) -> float:
    return values[len(values) // 2] if values else float("nan")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
