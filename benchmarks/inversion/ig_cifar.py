"""Inverting Gradients on the IG ConvNet: CIFAR-10 test images one at a time.

Setting of the issue's acceptance (after Geiping et al. 2020, Table 1 style): ``convnet``
width 64, untrained, eval mode, batch 1, FedSGD gradient; labels not granted (recovered
by iDLG, exact for one image); cosine matching, TV 0.1, signed Adam lr 0.1 with decay at
3/8, 5/8, 7/8, boxed, 1 restart. Acceptance: mean PSNR ≥ 18 dB over images 0–7 at 2000
iterations; images 0–1 at 8000 iterations show the trend. The result file is rewritten
after every image (marked partial until the last), so a long run never loses finished
images.

    python -m benchmarks.inversion.ig_cifar [--images 0-7] [--iterations 2000] [--quick]
    python -m benchmarks.inversion.ig_cifar --images 0-1 --iterations 8000
"""

from __future__ import annotations

import argparse
import statistics

import torch

from attacks.inversion import InvertingGradients
from fl_core.models import build_model
from fl_core.updates import LocalTraining

from ..figures import GridRow, loss_curves, reconstruction_grid
from ..privacy_metrics import to_unit
from .common import FIGURES, Stopwatch, cifar10_test, fmt, header, log, observe, score, write_result
from .dlg_cifar import parse_images

MODULE = "benchmarks.inversion.ig_cifar"


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
    parser.add_argument("--name", default=None, help="result name (default ig_cifar_<iterations>[_quick])")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = parse_images(args.images)
    if args.quick:
        images, args.iterations = images[:2], min(args.iterations, 50)
    name = args.name or f"ig_cifar_{args.iterations}" + ("_quick" if args.quick else "")

    model = build_model("convnet", 10, (3, 32, 32), seed=args.seed, width=args.width)
    training = LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval")
    attack = InvertingGradients(iterations=args.iterations, tv_weight=args.tv, restarts=args.restarts,
                                seed=args.seed)
    rows, recs, truths, traces = [], [], [], {}
    for n, idx in enumerate(images, start=1):
        data = cifar10_test([idx])
        obs, private = observe(model, data, training)
        with Stopwatch() as t:
            rec = attack.reconstruct(obs)
        s = score(rec.images, rec.labels, private, data.normalization)
        log(f"image {idx}: PSNR {s.psnr[0]:.2f} dB, SSIM {s.ssim[0]:.3f}, LPIPS {fmt(s.lpips and s.lpips[0], 3)}, "
            f"label {rec.labels.tolist()} (true {private.labels.tolist()}), {t.seconds:.0f} s "
            f"({t.seconds / args.iterations * 1e3:.0f} ms/iteration)")
        rows.append((idx, s, rec, t.seconds, int(private.labels[0])))
        recs.append(to_unit(rec.images, data.normalization)[0])
        truths.append(to_unit(private.inputs, data.normalization)[0])
        traces[f"image {idx}"] = rec.loss_trace
        write_result(name, _report(args, argv, rows, name, done=n == len(images), figures=n == len(images),
                                   recs=recs, truths=truths, traces=traces))
    log(f"wrote {name}.md")
    return 0


def _report(args: argparse.Namespace, argv: list[str] | None, rows: list, name: str, done: bool,
            figures: bool, recs: list, truths: list, traces: dict) -> list[str]:
    psnrs = [r[1].psnr[0] for r in rows]
    ssims = [r[1].ssim[0] for r in rows]
    lpips = [r[1].lpips[0] for r in rows if r[1].lpips is not None]
    title = f"Inverting Gradients, IG ConvNet width {args.width}, CIFAR-10, {args.iterations} iterations"
    lines = header(title + ("" if done else f" (PARTIAL: {len(rows)} images so far)"), MODULE, argv)
    lines += [
        f"Setting: `convnet` width {args.width} (untrained, seed {args.seed}, eval mode), batch 1, FedSGD "
        f"gradient, labels not granted (iDLG), cosine matching, TV {args.tv}, signed Adam lr 0.1 with ×0.1 at "
        f"3/8, 5/8, 7/8, boxed, {args.restarts} restart(s), {args.threads} torch threads.", "",
        "| image | label ok | PSNR (dB) | SSIM | LPIPS | final matching loss | time (s) | ms / iteration |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for idx, s, rec, secs, true_label in rows:
        lp = s.lpips[0] if s.lpips is not None else None
        lines.append(f"| {idx} | {'yes' if int(rec.labels[0]) == true_label else 'no'} | {s.psnr[0]:.2f} | "
                     f"{s.ssim[0]:.3f} | {fmt(lp, 3)} | {rec.restart_losses[rec.chosen_restart]:.4f} | "
                     f"{secs:.0f} | {secs / args.iterations * 1e3:.0f} |")
    lines.append(f"| **mean** | | **{statistics.fmean(psnrs):.2f}** | **{statistics.fmean(ssims):.3f}** | "
                 f"**{fmt(statistics.fmean(lpips) if lpips else None, 3)}** | | {sum(r[3] for r in rows):.0f} "
                 f"total | |")
    if rows and rows[0][1].lpips is None:
        lines += ["", f"LPIPS unavailable: {rows[0][1].lpips_note}"]
    if done and args.iterations == 2000:
        lines += ["", f"Acceptance (mean PSNR ≥ 18 dB at 2000 iterations): "
                      f"**{'met' if statistics.fmean(psnrs) >= 18 else 'NOT met'}**."]
    if figures:
        grid = reconstruction_grid(torch.stack(truths), {f"IG {args.iterations} it.": GridRow(
            torch.stack(recs), psnrs, lpips or None)}, FIGURES / f"{name}_grid.png",
            title=f"Inverting Gradients, ConvNet-{args.width}, {args.iterations} iterations")
        curves = loss_curves(traces, FIGURES / f"{name}_loss.png", title="IG objective (matching + TV)")
        lines += ["", f"![reconstructions](figures/{grid.name})", f"![loss](figures/{curves.name})"]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
