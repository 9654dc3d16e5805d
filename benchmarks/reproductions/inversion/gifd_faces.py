"""GIFD on faces with an out-of-distribution prior: ``dcgan_faces64`` (trained on synthetic
DigiFace-1M faces) against real CelebA-HQ faces (issue 16's faces acceptance).

Setting: the CelebA-HQ sample faces of the data root (``datasets/celeba-hq-stargan-v2-samples/
src``, female/ and male/: 2 classes) resized to 64×64 (cover + centre crop), normalised by
their own per-channel mean/std; batch 1, FedSGD; an untrained FL model in eval mode
(``--model``: ``resnet18`` as in the paper — about 0.45 s per forward + double-backward on 2
idle cores — or a smaller CNN such as ``convnet`` when CPU time forces it); labels by iDLG.
IG, ``generator_latent`` and ``gifd`` at the same total iteration budget (``--iterations``,
split as in ``gifd_common``). Tables: PSNR/SSIM/LPIPS per attack (acceptance: GIFD beats both
baselines in mean PSNR and mean LPIPS), GIFD's per stage (matching loss and PSNR after each
stage; the returned one in bold, which must be the lowest-loss one). Grid: truth, IG,
latent-only, GIFD and GIFD's per-stage outputs for the first two faces. Every (image,
attack) unit is cached (``UnitCache``, benchmark ``gifd_faces``); a rerun computes only what
is missing, and disjoint ``--images`` ranges can run in separate processes.

    python -m fedarena.benchmarks.reproductions.inversion.gifd_faces [--images 0-3] [--iterations 1000]
        [--model resnet18 | convnet:width=16] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

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
    faces,
    grid_rows,
    model_tag,
    stage_table,
)

MODULE = "fedarena.benchmarks.reproductions.inversion.gifd_faces"
GENERATOR = "dcgan_faces64"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="0-3", help="indices of the 10 faces (female 0-4, male 5-9)")
    parser.add_argument("--iterations", type=int, default=1000, help="total iteration budget per attack and face")
    parser.add_argument("--restarts", type=int, default=4, help="latent-search restarts (generator attacks)")
    parser.add_argument("--model", default="resnet18",
                        help="the FL model: resnet18, or a smaller CNN with options, e.g. convnet:width=16")
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="recompute units even if cached")
    parser.add_argument("--name", default=None, help="result name (default gifd_faces_<model>_<iterations>)")
    add_device_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = parse_images(args.images)
    tag = model_tag(args.model)  # a malformed spec fails here, before any work
    name = args.name or f"gifd_faces_{tag}_{args.iterations}"
    cache = UnitCache("gifd_faces", fresh=args.fresh)
    chosen = {k: v for k, v in attacks(args.iterations, GENERATOR, args.restarts, args.seed).items()
              if k in args.attacks}
    results: dict[str, list[Unit]] = {k: [] for k in chosen}
    collect(cache, "celeba_hq_64", lambda idx: faces([idx]), args.model, chosen, images, args.seed, args.device,
            results, lambda: write_result(name, _report(args, argv, results, name, figures=False)))
    write_result(name, _report(args, argv, results, name, figures=True))
    log(f"wrote {name}.md")
    return 0


def _report(args: argparse.Namespace, argv: list[str] | None, results: dict[str, list[Unit]], name: str,
            figures: bool) -> list[str]:
    lines = header(f"GIFD on CelebA-HQ faces (64×64), {GENERATOR} prior, {args.model}, "
                   f"{args.iterations} iterations per attack", MODULE, argv)
    used = ", ".join(f"{LABELS[k]} {u[0].iterations}" for k, u in results.items() if u)
    lines += [f"Setting: `{args.model}` (untrained, seed {args.seed}, eval mode), batch 1, FedSGD, labels by iDLG; "
              f"budget {args.iterations} iterations per attack and face (as used: {used}); generator attacks "
              f"{args.restarts} latent restarts. Faces: {args.images}.", "", *attack_table(results), ""]
    if all(results.get(k) for k in ATTACKS) and len({len(v) for v in results.values()}) == 1:
        psnr = {k: statistics.fmean(u.psnr for u in v) for k, v in results.items()}
        lp = {k: [u.lpips for u in v] for k, v in results.items()}
        better_psnr = psnr["gifd"] > max(psnr["inverting_gradients"], psnr["generator_latent"])
        line = f"GIFD beats both baselines in mean PSNR: **{'yes' if better_psnr else 'no'}**"
        if all(None not in v for v in lp.values()):
            mlp = {k: statistics.fmean(v) for k, v in lp.items()}  # type: ignore[arg-type]
            better_lp = mlp["gifd"] < min(mlp["inverting_gradients"], mlp["generator_latent"])
            line += f"; in mean LPIPS: **{'yes' if better_lp else 'no'}**"
        lines += [line + ".", ""]
    if results.get("gifd"):
        ok = all(next(st for st in u.stages if st["chosen"])["loss"] == min(st["loss"] for st in u.stages)
                 for u in results["gifd"])
        lines += ["GIFD per stage (matching loss / PSNR; returned stage in bold):", "", *stage_table(results["gifd"]),
                  "", f"Returned stage = lowest-loss stage on every face: **{'yes' if ok else 'no'}**.", ""]
    if figures and any(results.values()):
        two = {k: v[:2] for k, v in results.items()}
        truth = torch.stack([u.truth for u in next(v for v in two.values() if v)])
        path = reconstruction_grid(truth, grid_rows(two), FIGURES / f"{name}_grid.png",
                                   title=f"CelebA-HQ 64×64, {GENERATOR} prior, {args.model}")
        lines.append(f"![faces](figures/{path.name})")
    return lines


if __name__ == "__main__":
    raise SystemExit(run_script(main))
