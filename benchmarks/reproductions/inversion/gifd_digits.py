"""GIFD on digits: the ``mnist_gan`` prior on MNIST (in-distribution) and Fashion-MNIST (OOD).

Issue 16's digits acceptance: 8 test images of each dataset, batch 1, FedSGD, an untrained
LeNet-sized FL model in eval mode (``--model``, default DLG's ``lenet``), labels recovered by
iDLG; IG, ``generator_latent`` and ``gifd`` at the same total iteration budget
(``--iterations``, split as in ``gifd_common``). Table of PSNR/SSIM/LPIPS per attack and
dataset, GIFD's per-stage table (matching loss and PSNR after each stage; the returned stage
in bold), the OOD gap (MNIST − Fashion-MNIST mean PSNR per attack), and a grid figure.
Every (dataset, image, attack) unit is cached (``UnitCache``, benchmark ``gifd_digits``),
keyed by everything that changes it; a rerun only computes what is missing.

    python -m fedarena.benchmarks.reproductions.inversion.gifd_digits [--images 0-7] [--iterations 1000] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from fedarena.benchmarks.figures.plots import reconstruction_grid
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.units import UnitCache
from fedarena.benchmarks.reproductions import run_script

from .common import FIGURES, header, log, write_result
from .dlg_cifar import parse_images
from .gifd_common import (
    ATTACKS,
    LABELS,
    Unit,
    attack_table,
    attacks,
    collect,
    digits,
    grid_rows,
    mean,
    stage_table,
)

MODULE = "fedarena.benchmarks.reproductions.inversion.gifd_digits"
DATASETS = {"mnist": "MNIST (in-distribution)", "fashion_mnist": "Fashion-MNIST (out-of-distribution)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="0-7", help="test image indices of each dataset")
    parser.add_argument("--iterations", type=int, default=1000, help="total iteration budget per attack and image")
    parser.add_argument("--restarts", type=int, default=4, help="latent-search restarts (generator attacks)")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="recompute units even if cached")
    parser.add_argument("--name", default=None, help="result name (default gifd_digits_<iterations>)")
    add_device_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = parse_images(args.images)
    name = args.name or f"gifd_digits_{args.iterations}"
    cache = UnitCache("gifd_digits", fresh=args.fresh)
    chosen = {k: v for k, v in attacks(args.iterations, "mnist_gan", args.restarts, args.seed).items()
              if k in args.attacks}
    results: dict[str, dict[str, list[Unit]]] = {}
    for dataset in args.datasets:
        results[dataset] = {k: [] for k in chosen}
        collect(cache, dataset, lambda idx, d=dataset: digits(d, [idx]), args.model, chosen, images, args.seed,
                args.device, results[dataset], lambda: write_result(name, _report(args, argv, results, name, False)))
    write_result(name, _report(args, argv, results, name, figures=True))
    log(f"wrote {name}.md")
    return 0


def _report(args: argparse.Namespace, argv: list[str] | None, results: dict[str, dict[str, list[Unit]]],
            name: str, figures: bool) -> list[str]:
    lines = header(f"GIFD on digits: mnist_gan prior, {args.iterations} iterations per attack", MODULE, argv)
    budget = {k: (u[0].iterations if u else None) for per in results.values() for k, u in per.items()}
    lines += [f"Setting: `{args.model}` (untrained, seed {args.seed}, eval mode), batch 1, FedSGD, labels by iDLG; "
              f"budget {args.iterations} iterations per attack and image (as used: "
              f"{', '.join(f'{LABELS[k]} {v}' for k, v in budget.items())}); generator attacks "
              f"{args.restarts} latent restarts. Images: test {args.images}.", ""]
    for dataset, per in results.items():
        lines += [f"## {DATASETS[dataset]}", "", *attack_table(per), ""]
        if per.get("gifd"):
            lines += ["GIFD per stage (matching loss / PSNR; returned stage in bold):", "", *stage_table(per["gifd"]),
                      ""]
    if len(results) == 2:
        lines += ["## OOD gap (mean PSNR, MNIST − Fashion-MNIST)", "", "| attack | gap (dB) |", "| --- | --- |"]
        for key in next(iter(results.values())):
            a, b = (results[d].get(key, []) for d in DATASETS)
            if a and b:
                lines.append(f"| {LABELS[key]} | {mean([u.psnr for u in a]) - mean([u.psnr for u in b]):.2f} |")
        lines.append("")
    if figures:
        for dataset, per in results.items():
            rows = [u for u in per.values() if u]
            if not rows:
                continue
            truth = torch.stack([u.truth for u in rows[0]])
            path = reconstruction_grid(truth, grid_rows(per), FIGURES / f"{name}_{dataset}_grid.png",
                                       title=f"{DATASETS[dataset]}, {args.iterations} iterations")
            lines.append(f"![{dataset}](figures/{path.name})")
    return lines


if __name__ == "__main__":
    raise SystemExit(run_script(main))
