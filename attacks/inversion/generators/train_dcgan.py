"""Train a small DCGAN on a dataset in the data root and save it as a named generator.

    python -m fedarena.attacks.inversion.generators.train_dcgan --dataset cifar10 --size 32 --epochs 25

writes ``<root>/weights/dcgan_<dataset>_<size>/`` (or ``--out``, whose folder name must have
that form): ``generator.pt`` (what ``build_generator("dcgan_cifar10_32")`` loads),
``checkpoint.pt`` (generator, discriminator, both Adam states, per-epoch history) and
``samples.png`` (an 8×8 grid from a fixed latent batch). Both ``.pt`` files are rewritten
atomically after every epoch, so a killed run resumes from its last finished epoch with the
same numbers it would have produced uninterrupted (shuffling and noise are drawn from
generators derived from ``(seed, epoch)``, not from a running RNG).

Recipe: the PyTorch DCGAN tutorial / ``pytorch/examples`` dcgan (Radford et al. 2016): Adam
lr 2e-4, betas (0.5, 0.999), batch 64, weights N(0, 0.02) and BatchNorm scales N(1, 0.02),
real label 1 / fake 0, generator trained on the non-saturating loss. The discriminator ends in
a logit scored by ``BCEWithLogitsLoss`` (the tutorial's Sigmoid + BCELoss, computed stably).
Architectures: ``DCGANGenerator`` at 32 or 28 pixels (64 too) and its mirror discriminator.
``--time-batches K`` only times K training steps and prints the projected time per epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from fedarena.fl_core.data_root import CorruptDataError, weights_path
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.seeding import torch_generator

from .models import DCGAN_SIZES, TRAINED_FILE, TRAINED_FORMAT, TRAINED_NAME, DCGANGenerator

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "fedarena-dcgan-checkpoint/1"
SAMPLES_FILE = "samples.png"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (a resumed run must match it)."""

    dataset: str
    size: int
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    limit: int | None = None  # train on the first ``limit`` images only (smoke runs)


class Discriminator(nn.Module):
    """The DCGAN discriminator mirroring ``DCGANGenerator`` at the same size; outputs one logit per image."""

    def __init__(self, nc: int, ndf: int, size: int) -> None:
        super().__init__()
        if size not in DCGAN_SIZES:
            raise ValueError(f"DCGAN size must be one of {DCGAN_SIZES}, got {size}")
        widths = {64: [1, 2, 4, 8], 32: [1, 2, 4], 28: [1, 2]}[size]
        layers: list[nn.Module] = []
        c_in = nc
        for i, mult in enumerate(widths):
            layers.append(nn.Conv2d(c_in, ndf * mult, 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.BatchNorm2d(ndf * mult))
            layers.append(nn.LeakyReLU(0.2))
            c_in = ndf * mult
        layers.append(nn.Conv2d(c_in, 1, 7 if size == 28 else 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).flatten()


def dcgan_init(module: nn.Module, generator: torch.Generator) -> None:
    """The DCGAN initialisation: conv weights N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02, generator=generator)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)


def training_images(cfg: TrainConfig, root: str | Path | None) -> Tensor:
    """The dataset's train split at ``cfg.size`` pixels, in the generator's range [-1, 1]."""
    x = load_dataset(cfg.dataset, "train", root=root).images
    if cfg.limit is not None:
        x = x[: cfg.limit]
    if x.shape[-1] != cfg.size or x.shape[-2] != cfg.size:
        x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear", align_corners=False, antialias=True)
    return (x * 2 - 1).contiguous()


class Trainer:
    """The two networks, their optimisers and the per-epoch loop, on one device."""

    def __init__(self, cfg: TrainConfig, nc: int, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        init = torch_generator(cfg.seed, "dcgan-init")
        self.G = DCGANGenerator(nz=cfg.nz, ngf=cfg.ngf, nc=nc, size=cfg.size)
        self.D = Discriminator(nc, cfg.ndf, cfg.size)
        dcgan_init(self.G, init)
        dcgan_init(self.D, init)
        self.G.to(device)
        self.D.to(device)
        betas = (cfg.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)
        self.epoch = 0
        self.history: list[dict[str, float]] = []

    def step(self, real: Tensor, noise: Tensor) -> tuple[float, float]:
        """One DCGAN step: the discriminator on real + detached fakes, then the generator."""
        ones = torch.ones(real.shape[0], device=self.device)
        zeros = torch.zeros(real.shape[0], device=self.device)
        fake = self.G(noise)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = (F.binary_cross_entropy_with_logits(self.D(real), ones)
                  + F.binary_cross_entropy_with_logits(self.D(fake.detach()), zeros))
        loss_d.backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g = F.binary_cross_entropy_with_logits(self.D(fake), ones)
        loss_g.backward()
        self.opt_g.step()
        return loss_d.item(), loss_g.item()

    def batches(self, images: Tensor, epoch: int) -> list[tuple[Tensor, Tensor]]:
        """This epoch's (real, noise) batches; both depend only on (seed, epoch)."""
        n = images.shape[0]
        order = torch.randperm(n, generator=torch_generator(self.cfg.seed, "dcgan-shuffle", epoch))
        noise_gen = torch_generator(self.cfg.seed, "dcgan-noise", epoch)
        out = []
        for start in range(0, n, self.cfg.batch_size):
            idx = order[start:start + self.cfg.batch_size]
            noise = torch.randn((len(idx), self.cfg.nz, 1, 1), generator=noise_gen)
            out.append((images[idx], noise))
        return out

    def run_epoch(self, images: Tensor, progress: bool) -> dict[str, float]:
        self.G.train()
        self.D.train()
        t0 = time.perf_counter()
        sums = [0.0, 0.0]
        batches = self.batches(images, self.epoch)
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}", unit="batch", disable=not progress, leave=False)
        for real, noise in bar:
            ld, lg = self.step(real.to(self.device), noise.to(self.device))
            sums[0] += ld
            sums[1] += lg
            bar.set_postfix(loss_d=f"{ld:.3f}", loss_g=f"{lg:.3f}")
        record = {"epoch": self.epoch + 1, "loss_d": sums[0] / len(batches), "loss_g": sums[1] / len(batches),
                  "seconds": time.perf_counter() - t0}
        self.epoch += 1
        self.history.append(record)
        return record

    def state(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(self.cfg), "epoch": self.epoch,
                "G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "history": self.history}

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt["history"])

    def generator_file(self) -> dict[str, Any]:
        """What ``load_trained_dcgan`` reads: architecture config, weights and provenance."""
        return {"format": TRAINED_FORMAT, "config": dict(self.G.config),
                "state_dict": {k: v.detach().cpu() for k, v in self.G.state_dict().items()},
                "output_range": [-1.0, 1.0], "dataset": self.cfg.dataset, "epochs": self.epoch,
                "seed": self.cfg.seed, "limit": self.cfg.limit}


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never half-written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_grid(images: Tensor, path: Path, nrow: int = 8) -> None:
    """Images in [-1, 1] as one PNG grid (2-pixel gaps), written atomically."""
    x = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.zeros((c, rows * (h + 2) + 2, nrow * (w + 2) + 2), dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, 2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + col * (w + 2): 2 + col * (w + 2) + w] = x[i]
    arr = grid.permute(1, 2, 0).numpy()
    image = Image.fromarray(arr[..., 0] if c == 1 else np.ascontiguousarray(arr))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_out(cfg: TrainConfig, root: str | Path | None) -> Path:
    return weights_path(f"dcgan_{cfg.dataset}_{cfg.size}", root=root)


def train(cfg: TrainConfig, epochs: int, out: Path, root: str | Path | None = None,
          device: str | torch.device = "cpu", progress: bool = True) -> list[dict[str, float]]:
    """Train (or resume) to ``epochs`` finished epochs in ``out``; returns the per-epoch history."""
    if not TRAINED_NAME.match(out.name):
        raise ValueError(f"--out folder name {out.name!r} must look like dcgan_<dataset>_<size> "
                         f"(e.g. dcgan_{cfg.dataset}_{cfg.size}) so build_generator can load it by name")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    images = training_images(cfg, root)
    dev = torch.device(device)
    trainer = Trainer(cfg, nc=images.shape[1], device=dev)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_FILE
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=dev, weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CorruptDataError(f"{ckpt_path} is not a {CHECKPOINT_FORMAT} checkpoint")
        if ckpt["config"] != dataclasses.asdict(cfg):
            raise ValueError(f"{ckpt_path} was trained with {ckpt['config']}, not {dataclasses.asdict(cfg)}; "
                             f"use another --out or delete the folder to start over")
        trainer.restore(ckpt)
        print(f"resuming {out} after epoch {trainer.epoch}", file=sys.stderr)
    fixed = torch.randn((64, cfg.nz, 1, 1), generator=torch_generator(cfg.seed, "dcgan-fixed")).to(dev)
    while trainer.epoch < epochs:
        record = trainer.run_epoch(images, progress)
        atomic_save(trainer.state(), ckpt_path)
        atomic_save(trainer.generator_file(), out / TRAINED_FILE)
        trainer.G.eval()
        with torch.no_grad():
            save_grid(trainer.G(fixed), out / SAMPLES_FILE)
        print(json.dumps(record), file=sys.stderr)
    return trainer.history


def time_batches(cfg: TrainConfig, k: int, root: str | Path | None = None,
                 device: str | torch.device = "cpu") -> dict[str, float]:
    """Seconds per training step over ``k`` steps (after one warm-up step) and the projected epoch."""
    images = training_images(cfg, root)
    trainer = Trainer(cfg, nc=images.shape[1], device=torch.device(device))
    batches = trainer.batches(images, 0)
    full = [b for b in batches if b[0].shape[0] == cfg.batch_size]
    if len(full) < k + 1:
        raise ValueError(f"only {len(full)} full batches of {cfg.batch_size}; ask for fewer than {k} timed")
    dev = trainer.device
    trainer.step(full[0][0].to(dev), full[0][1].to(dev))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for real, noise in full[1:k + 1]:
        trainer.step(real.to(dev), noise.to(dev))  # .item() on the losses syncs every step
    per_batch = (time.perf_counter() - t0) / k
    return {"images": images.shape[0], "batches_per_epoch": len(batches), "seconds_per_batch": per_batch,
            "seconds_per_epoch": per_batch * len(batches)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fedarena.attacks.inversion.generators.train_dcgan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True,
                   help="a dataset name from fedarena.fl_core.datasets (e.g. cifar10, mnist)")
    p.add_argument("--size", type=int, required=True, choices=DCGAN_SIZES, help="image size (pixels)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--out", type=Path, default=None, help="default: <data root>/weights/dcgan_<dataset>_<size>/")
    p.add_argument("--root", default=None, help="data root (default: $FEDARENA_DATA)")
    p.add_argument("--nz", type=int, default=100)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--time-batches", type=int, default=None, metavar="K",
                   help="only time K training steps and print the projected seconds per epoch")
    a = p.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    cfg = TrainConfig(dataset=a.dataset, size=a.size, nz=a.nz, ngf=a.ngf, ndf=a.ndf, batch_size=a.batch_size,
                      lr=a.lr, beta1=a.beta1, seed=a.seed, limit=a.limit)
    if a.time_batches is not None:
        print(json.dumps(time_batches(cfg, a.time_batches, root=a.root, device=a.device)))
        return 0
    out = a.out if a.out is not None else default_out(cfg, a.root)
    history = train(cfg, a.epochs, out, root=a.root, device=a.device, progress=not a.no_progress)
    print(f"{out}: {len(history)} epochs; generator name {out.name!r} (build_generator({out.name!r}))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
