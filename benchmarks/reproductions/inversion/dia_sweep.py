"""Dropout-rate sweep: IG (eval-mode attacker) and DIA against the DIA MLP on MNIST.

Setting (issue 15 acceptance): ``mlp_dia`` (3×512 GELU, no biases, untrained, seed 0)
with the client's dropout rate p ∈ {0, 0.1, 0.25, 0.5}; MNIST test images 0–3, each
attacked alone (batch 1), FedSGD in train mode, labels granted; both attacks with the
reference's settings (``dia_common.REFERENCE``) at the same iteration budget. Per cell
(p, attack): mean PSNR and LPIPS over the images (LPIPS on the 28×28 digits upsampled to
64×64, ``metrics.lpips.scoring_size``), normalised MSE, DIA's mask recovery;
one figure, PSNR vs p, one line per attack.

Every (p, attack, image) is a cached unit (``UnitCache("dia_sweep")``), keyed by the
settings; an interrupted run resumes, and the table is rewritten after every unit
(marked partial until complete).

    python -m fedarena.benchmarks.reproductions.inversion.dia_sweep [--iterations 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fedarena.benchmarks.harness.units import UnitCache  # noqa: E402
from fedarena.benchmarks.metrics.lpips import resize_note  # noqa: E402
from fedarena.benchmarks.reproductions import run_script  # noqa: E402
from fedarena.fl_core.datasets import load_dataset  # noqa: E402
from fedarena.fl_core.models import build_model  # noqa: E402

from .common import FIGURES, fmt, header, log, write_result  # noqa: E402
from .dia_common import ATTACKS, REFERENCE, Unit, attack_image, load, save, unit_key  # noqa: E402
from .dlg_cifar import parse_images  # noqa: E402

MODULE = "fedarena.benchmarks.reproductions.inversion.dia_sweep"
RATES = (0.0, 0.1, 0.25, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="0-3")
    parser.add_argument("--rates", default=",".join(str(p) for p in RATES))
    parser.add_argument("--attacks", default="ig,dia")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--name", default=None, help="result name (default dia_sweep_<iterations>)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, attacks = parse_images(args.images), args.attacks.split(",")
    rates = [float(p) for p in args.rates.split(",")]
    name = args.name or f"dia_sweep_{args.iterations}"
    cache = UnitCache("dia_sweep", fresh=args.fresh)
    mnist = load_dataset("mnist", split="test")
    cells: dict[tuple[float, str], list[Unit]] = {}
    total, done = len(rates) * len(attacks) * len(images), 0
    for p in rates:
        model = build_model("mlp_dia", 10, (1, 28, 28), dropout=p, seed=args.seed)
        for attack in attacks:
            for idx in images:
                setting = {"model": "mlp_dia", "p": p, "iterations": args.iterations, "seed": args.seed,
                           **REFERENCE}
                key = unit_key(setting, attack, idx)
                unit = load(cache, key)
                if unit is None:
                    unit = attack_image(attack, model, mnist.subset([idx]), idx, args.iterations, args.seed)
                    save(cache, key, unit)
                cells.setdefault((p, attack), []).append(unit)
                done += 1
                log(f"p={p} {attack} image {idx}: PSNR {unit.psnr:.2f} dB, normalised MSE "
                    f"{unit.mse_normalized:.4f}, mask recovery {fmt(unit.mask_recovery, 3)}, {unit.seconds:.0f} s")
                write_result(name, _report(args, argv, cells, rates, attacks, name, done == total))
    log(f"wrote {name}.md")
    return 0


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present and len(present) == len(values) else None


def _report(args: argparse.Namespace, argv: list[str] | None, cells: dict[tuple[float, str], list[Unit]],
            rates: list[float], attacks: list[str], name: str, done: bool) -> list[str]:
    title = f"Dropout-rate sweep: IG vs DIA, DIA MLP on MNIST, {args.iterations} iterations"
    lines = header(title + ("" if done else " (PARTIAL)"), MODULE, argv)
    lines += [
        f"Setting: `mlp_dia` (3×512 GELU, no biases, untrained, seed {args.seed}), the client's dropout rate p; "
        f"MNIST test images {args.images}, each attacked alone (batch 1), FedSGD in train mode, labels granted, "
        "model mode not granted (IG assumes eval, DIA train); reference settings (Adam lr 0.1, TV 1e-5, plateau "
        f"×0.1 after 800 iterations; DIA mask weight 1e-4), {args.iterations} iterations each. Means over the "
        "images of each cell.", "",
        "| p | attack | images | PSNR (dB) | LPIPS | normalised MSE | mask recovery | s / image |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = set()
    for p in rates:
        for attack in attacks:
            units = cells.get((p, attack), [])
            if not units:
                continue
            notes |= {u.lpips_note for u in units if u.lpips_note}
            lines.append(
                f"| {p:g} | {ATTACKS[attack][1]} | {len(units)} | {statistics.fmean(u.psnr for u in units):.2f} | "
                f"{fmt(_mean([u.lpips for u in units]), 3)} | "
                f"{statistics.fmean(u.mse_normalized for u in units):.4f} | "
                f"{fmt(_mean([u.mask_recovery for u in units]), 3)} | "
                f"{statistics.fmean(u.seconds for u in units):.0f} |")
    if notes:
        lines += ["", "LPIPS unavailable: " + "; ".join(sorted(notes))]
    elif any(cells.values()):
        truth = next(u for units in cells.values() for u in units).truth
        lines += ["", resize_note(*truth.shape[-2:]) or "LPIPS scored at the images' own size."]
    lines += ["", "Mask recovery: the fraction of DIA's mask entries whose rounding equals the client's recorded "
                  "mask (at p = 0 there are no masks)."]
    if done:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for attack in attacks:
            xs = [p for p in rates if (p, attack) in cells]
            ax.plot(xs, [statistics.fmean(u.psnr for u in cells[(p, attack)]) for p in xs], marker="o",
                    label=ATTACKS[attack][1])
        ax.set_xlabel("client dropout rate p")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(f"DIA MLP, MNIST, {args.iterations} iterations", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        FIGURES.mkdir(parents=True, exist_ok=True)
        path = FIGURES / f"{name}_psnr.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        lines += ["", f"![PSNR vs p](figures/{path.name})"]
    return lines


if __name__ == "__main__":
    raise SystemExit(run_script(main))
