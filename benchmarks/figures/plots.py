"""Figures for inversion results: reconstruction grids and loss curves (matplotlib, Agg).

``reconstruction_grid``: the ground-truth row on top, then one row per attack, each image
captioned with its PSNR (and LPIPS when available). ``loss_curves``: the objective per
iteration of each attack run, on a log scale when every value is positive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


@dataclass
class GridRow:
    """One attack's images in [0, 1] ``[B, C, H, W]`` (already matched to the truth order)."""

    images: Tensor
    psnr: Sequence[float] | None = None
    lpips: Sequence[float] | None = None


def reconstruction_grid(truth: Tensor, rows: Mapping[str, GridRow], path: str | Path,
                        title: str | None = None, cell: float = 1.4) -> Path:
    """Write the grid PNG to ``path``; ``truth`` and every row hold images in [0, 1]."""
    _check(truth, "truth")
    n = truth.shape[0]
    for name, row in rows.items():
        _check(row.images, name)
        if row.images.shape != truth.shape:
            raise ValueError(f"row {name!r} has images {tuple(row.images.shape)}, truth {tuple(truth.shape)}")
        for what, values in (("psnr", row.psnr), ("lpips", row.lpips)):
            if values is not None and len(values) != n:
                raise ValueError(f"row {name!r}: {len(values)} {what} values for {n} images")
    names = ["ground truth", *rows]
    fig, axes = plt.subplots(len(names), n, figsize=(cell * n + 1.2, (cell + 0.35) * len(names)), squeeze=False)
    for r, name in enumerate(names):
        row = rows.get(name) if r else None
        images = truth if row is None else row.images
        for i in range(n):
            ax = axes[r][i]
            ax.imshow(_hwc(images[i]), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row is not None:
                ax.set_xlabel(_caption(row, i), fontsize=7)
            if i == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def loss_curves(traces: Mapping[str, Sequence[float]], path: str | Path, title: str | None = None,
                ylabel: str = "objective") -> Path:
    """Write one line per run (``name -> loss per iteration``) to ``path``."""
    if not traces:
        raise ValueError("loss_curves needs at least one trace")
    fig, ax = plt.subplots(figsize=(6, 4))
    positive = all(v > 0 for t in traces.values() for v in t)
    for name, trace in traces.items():
        ax.plot(range(1, len(trace) + 1), list(trace), label=name, linewidth=1)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _caption(row: GridRow, i: int) -> str:
    parts = []
    if row.psnr is not None:
        parts.append(f"{row.psnr[i]:.1f} dB")
    if row.lpips is not None:
        parts.append(f"LPIPS {row.lpips[i]:.2f}")
    return "\n".join(parts)


def _hwc(image: Tensor):  # noqa: ANN202 (numpy array for imshow)
    x = image.detach().float().clamp(0, 1).cpu()
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def _check(images: Tensor, what: str) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{what}: expected images [B, 1|3, H, W] in [0, 1], got {shape}")


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
