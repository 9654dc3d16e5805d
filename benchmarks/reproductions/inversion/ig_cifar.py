"""Inverting Gradients on the IG ConvNet: CIFAR-10 test images one at a time.

Setting of the issue's acceptance (after Geiping et al. 2020, Table 1 style): ``convnet``
width 64, untrained, eval mode, batch 1, FedSGD gradient; labels not granted (recovered
by iDLG, exact for one image); cosine matching, TV 0.1, signed Adam lr 0.1 with decay at
3/8, 5/8, 7/8, boxed, 1 restart. Acceptance: mean PSNR ≥ 18 dB over images 0–7 at 2000
iterations; images 0–1 at 8000 iterations show the trend.

Every finished image is cached (scores, reconstruction, loss trace) in the unit store
(``fedarena.benchmarks.harness.units``, benchmark ``ig_cifar``), keyed by everything that changes
the result, and the result file is rewritten after every image (marked partial until all
requested images are in). So a long run never loses finished images, a killed run resumes where it
stopped, and disjoint image ranges can run in separate processes: a last invocation with
the full range then only assembles the table and figures. ``--fresh`` ignores the cache; a
unit cached by other code stops the script (see ``fedarena.benchmarks.harness.provenance``).

    python -m fedarena.benchmarks.reproductions.inversion.ig_cifar [--images 0-7] [--iterations 2000] [--quick]
    python -m fedarena.benchmarks.reproductions.inversion.ig_cifar --images 0-1 --iterations 8000
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict, dataclass

import torch

from fedarena.attacks.inversion import InvertingGradients
from fedarena.benchmarks.figures.plots import GridRow, loss_curves, reconstruction_grid
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.units import UnitCache
from fedarena.benchmarks.metrics.privacy import to_unit
from fedarena.benchmarks.reproductions import run_script
from fedarena.fl_core.models import build_model
from fedarena.fl_core.updates import LocalTraining

from .common import FIGURES, Stopwatch, cifar10_test, fmt, header, log, observe, score, write_result
from .dlg_cifar import parse_images

MODULE = "fedarena.benchmarks.reproductions.inversion.ig_cifar"


@dataclass
class ImageResult:
    """One attacked image: its scores, the chosen reconstruction and the attack's loss trace."""

    index: int
    psnr: float
    ssim: float
    lpips: float | None
    lpips_note: str
    label: int
    true_label: int
    final_loss: float
    seconds: float
    reconstruction: torch.Tensor  # [3, H, W] pixels in [0, 1]
    truth: torch.Tensor
    trace: list[float]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="0-7")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--tv", type=float, default=0.1)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 images, 50 iterations")
    parser.add_argument("--fresh", action="store_true", help="recompute images even if cached")
    parser.add_argument("--name", default=None, help="result name (default ig_cifar_<iterations>[_quick])")
    add_device_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = parse_images(args.images)
    if args.quick:
        images, args.iterations = images[:2], min(args.iterations, 50)
    name = args.name or f"ig_cifar_{args.iterations}" + ("_quick" if args.quick else "")
    cache = UnitCache("ig_cifar", fresh=args.fresh)
    setting = f"w{args.width}_tv{args.tv:g}_r{args.restarts}_s{args.seed}_it{args.iterations}"

    model = build_model("convnet", 10, (3, 32, 32), seed=args.seed, width=args.width).to(args.device)
    training = LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval")
    attack = InvertingGradients(iterations=args.iterations, tv_weight=args.tv, restarts=args.restarts,
                                seed=args.seed)
    results: list[ImageResult] = []
    for n, idx in enumerate(images, start=1):
        result = _load(cache, f"{setting}/image_{idx}")
        if result is None:
            result = _attack_one(attack, model, training, idx)
            _save(cache, f"{setting}/image_{idx}", result)
        log(f"image {idx}: PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.3f}, LPIPS {fmt(result.lpips, 3)}, "
            f"label {result.label} (true {result.true_label}), {result.seconds:.0f} s "
            f"({result.seconds / args.iterations * 1e3:.0f} ms/iteration)")
        results.append(result)
        done = n == len(images)
        write_result(name, _report(args, argv, results, name, done=done, figures=done))
    log(f"wrote {name}.md")
    return 0


def _attack_one(attack: InvertingGradients, model: torch.nn.Module, training: LocalTraining,
                idx: int) -> ImageResult:
    data = cifar10_test([idx])
    obs, private = observe(model, data, training)
    with Stopwatch() as t:
        rec = attack.reconstruct(obs)
    s = score(rec.images, rec.labels, private, data.normalization)
    return ImageResult(
        index=idx, psnr=s.psnr[0], ssim=s.ssim[0], lpips=None if s.lpips is None else s.lpips[0],
        lpips_note=s.lpips_note, label=int(rec.labels[0]), true_label=int(private.labels[0]),
        final_loss=float(rec.restart_losses[rec.chosen_restart]), seconds=t.seconds,
        reconstruction=to_unit(rec.images, data.normalization)[0], truth=to_unit(private.inputs, data.normalization)[0],
        trace=[float(v) for v in rec.loss_trace])


def _save(cache: UnitCache, key: str, result: ImageResult) -> None:
    cache.put_tensors(key, asdict(result))


def _load(cache: UnitCache, key: str) -> ImageResult | None:
    data = cache.get_tensors(key)
    return None if data is None else ImageResult(**data)


def _report(args: argparse.Namespace, argv: list[str] | None, results: list[ImageResult], name: str,
            done: bool, figures: bool) -> list[str]:
    psnrs = [r.psnr for r in results]
    ssims = [r.ssim for r in results]
    lpips = [r.lpips for r in results if r.lpips is not None]
    title = f"Inverting Gradients, IG ConvNet width {args.width}, CIFAR-10, {args.iterations} iterations"
    lines = header(title + ("" if done else f" (PARTIAL: {len(results)} images so far)"), MODULE, argv)
    lines += [
        f"Setting: `convnet` width {args.width} (untrained, seed {args.seed}, eval mode), batch 1, FedSGD "
        f"gradient, labels not granted (iDLG), cosine matching, TV {args.tv}, signed Adam lr 0.1 with ×0.1 at "
        f"3/8, 5/8, 7/8, boxed, {args.restarts} restart(s), 1 image per attack. Times are per image as it "
        "ran (images may come from cached runs of this same setting; see the module docstring).", "",
        "| image | label ok | PSNR (dB) | SSIM | LPIPS | final matching loss | time (s) | ms / iteration |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(f"| {r.index} | {'yes' if r.label == r.true_label else 'no'} | {r.psnr:.2f} | {r.ssim:.3f} | "
                     f"{fmt(r.lpips, 3)} | {r.final_loss:.4f} | {r.seconds:.0f} | "
                     f"{r.seconds / args.iterations * 1e3:.0f} |")
    lines.append(f"| **mean** | | **{statistics.fmean(psnrs):.2f}** | **{statistics.fmean(ssims):.3f}** | "
                 f"**{fmt(statistics.fmean(lpips) if lpips else None, 3)}** | | "
                 f"{sum(r.seconds for r in results):.0f} total | |")
    if results and results[0].lpips is None:
        lines += ["", f"LPIPS unavailable: {results[0].lpips_note}"]
    if done and args.iterations == 2000:
        lines += ["", f"Acceptance (mean PSNR ≥ 18 dB at 2000 iterations): "
                      f"**{'met' if statistics.fmean(psnrs) >= 18 else 'NOT met'}**."]
    if figures:
        grid = reconstruction_grid(torch.stack([r.truth for r in results]), {f"IG {args.iterations} it.": GridRow(
            torch.stack([r.reconstruction for r in results]), psnrs, lpips or None)}, FIGURES / f"{name}_grid.png",
            title=f"Inverting Gradients, ConvNet-{args.width}, {args.iterations} iterations")
        curves = loss_curves({f"image {r.index}": r.trace for r in results}, FIGURES / f"{name}_loss.png",
                             title="IG objective (matching + TV)")
        lines += ["", f"![reconstructions](figures/{grid.name})", f"![loss](figures/{curves.name})"]
    return lines


if __name__ == "__main__":
    raise SystemExit(run_script(main))
