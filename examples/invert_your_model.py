"""Gradient inversion on your own model and images, with a saved figure.

A research script's usual loop: take a gradient of a private batch, step the optimiser,
and only then ask what a curious server could rebuild from that gradient. The one thing
to get right is the weights the gradient was taken at: ``snapshot_weights`` records them
before training, and ``observe`` builds the attacker's view at those weights (passing
the trained model's weights instead silently ruins the reconstruction: the last row of the
figure).

    python examples/invert_your_model.py --out runs/examples/inversion.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fedarena.attacks.inversion import DLG, InvertingGradients
from fedarena.figures import GridRow, reconstruction_grid
from fedarena.fl_core.observe import observe, snapshot_weights
from fedarena.metrics import match_order, psnr, ssim


def my_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Stand-in for your data: smooth RGB images in [0, 1], ``[n, 3, size, size]``."""
    coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/examples/inversion.png"), help="figure to write")
    parser.add_argument("--iterations", type=int, default=300, help="optimiser iterations of each attack")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * args.size**2, 128), nn.Sigmoid(), nn.Linear(128, 10))
    images, labels = my_images(2, args.size, seed=1), torch.tensor([3, 8])

    # Your training step: the gradient is taken at `start`, then the model moves on.
    start = snapshot_weights(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    optimizer.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    gradient = [p.grad.clone() for p in model.parameters()]
    optimizer.step()

    observation = observe(model, gradient, global_weights=start, images=images, labels=labels)
    attacks = {"DLG": DLG(iterations=max(1, args.iterations // 10), line_search="strong_wolfe"),
               "Inverting Gradients": InvertingGradients(iterations=args.iterations, tv_weight=1e-4)}
    rows, mean_psnr = {}, {}

    def add_row(name: str, reconstructed: torch.Tensor) -> None:
        matched = reconstructed.clamp(0, 1)[match_order(reconstructed.clamp(0, 1), images)]  # Hungarian matching
        values = psnr(matched, images)
        rows[name] = GridRow(matched, psnr=values.tolist())
        mean_psnr[name] = float(values.mean())
        print(f"{name}: PSNR {mean_psnr[name]:.1f} dB, SSIM {float(ssim(matched, images).mean()):.2f}")

    for name, attack in attacks.items():
        add_row(name, attack.reconstruct(observation).images)
    # The pitfall observe() guards against: the weights after training are not the ones the
    # gradient was taken at. Only a deliberate snapshot of the trained model gets here.
    wrong = observe(model, gradient, global_weights=snapshot_weights(model), images=images, labels=labels)
    add_row("DLG at the trained weights (wrong)", attacks["DLG"].reconstruct(wrong).images)
    path = reconstruction_grid(images, rows, args.out, title="inverting one gradient of your model")
    print(f"figure: {path}")
    return mean_psnr


if __name__ == "__main__":
    main()
