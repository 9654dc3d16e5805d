"""Figures for inversion results: reconstruction grids and loss curves (matplotlib, Agg).

``reconstruction_grid``: the ground-truth row on top, then one row per attack, each image
captioned with its PSNR (and LPIPS when available). ``loss_curves``: the objective per
iteration of each attack run, on a log scale when every value is positive. Both write PNG,
PDF or SVG at a chosen dpi through ``style.save_figure``; ``grid_figure`` and
``loss_figure`` return the figure itself (for ``style.layout_problems`` or further edits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from .style import (  # noqa: E402
    DPI,
    LEGEND_CHARS,
    LINESTYLES,
    fit_height,
    integer_ticks,
    legend_outside,
    new_figure,
    save_figure,
    wrap_label,
    wrap_title,
)

ROW_LABEL_CHARS = 18  # a grid row's name, per line


@dataclass
class GridRow:
    """One attack's images in [0, 1] ``[B, C, H, W]`` (already matched to the truth order)."""

    images: Tensor
    psnr: Sequence[float] | None = None
    lpips: Sequence[float] | None = None


def reconstruction_grid(truth: Tensor, rows: Mapping[str, GridRow], path: str | Path,
                        title: str | None = None, cell: float = 1.4, *,
                        formats: str | Sequence[str] | None = None, dpi: float = DPI) -> Path:
    """Write the grid to ``path`` (and beside it in every one of ``formats``: png, pdf, svg);
    ``truth`` and every row hold images in [0, 1]. Returns the first file written."""
    return save_figure(grid_figure(truth, rows, title, cell), path, formats, dpi)[0]


def grid_figure(truth: Tensor, rows: Mapping[str, GridRow], title: str | None = None,
                cell: float = 1.4) -> plt.Figure:
    """The reconstruction grid as a matplotlib figure (``reconstruction_grid`` saves it).

    Row names (attack and defense) sit horizontally left of their row, wrapped, so long
    component names never run into the next row as a rotated label would.
    """
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
    labels = ["\n".join(wrap_label(part, ROW_LABEL_CHARS) for part in name.splitlines()) for name in names]
    label_in = max(len(line) for lab in labels for line in lab.splitlines()) * 0.6 * 8 / 72 + 0.3
    caption_in = 0.35 if any(r.psnr is not None or r.lpips is not None for r in rows.values()) else 0.1
    width = cell * n + label_in
    title_text = wrap_title(title, width, 10) if title else None
    title_in = 0.25 * len(title_text.splitlines()) if title_text else 0.0
    fig, axes = new_figure(width, (cell + caption_in) * len(names) + title_in, len(names), n, squeeze=False)
    for r, (name, label) in enumerate(zip(names, labels, strict=True)):
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
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
    if title_text:
        fig.suptitle(title_text, fontsize=10)
    return fig


def loss_curves(traces: Mapping[str, Sequence[float]], path: str | Path, title: str | None = None,
                ylabel: str = "objective", *, formats: str | Sequence[str] | None = None,
                dpi: float = DPI) -> Path:
    """Write one line per run (``name -> loss per iteration``) to ``path`` (and in ``formats``)."""
    return save_figure(loss_figure(traces, title, ylabel), path, formats, dpi)[0]


def loss_figure(traces: Mapping[str, Sequence[float]], title: str | None = None,
                ylabel: str = "objective") -> plt.Figure:
    """The loss curves as a matplotlib figure: log scale when every value is positive,
    whole-number iteration ticks, the legend outside the curves."""
    if not traces:
        raise ValueError("loss_curves needs at least one trace")
    fig, ax = new_figure(6.4, 4.0)
    positive = all(v > 0 for t in traces.values() for v in t)
    for k, (name, trace) in enumerate(traces.items()):
        ax.plot(range(1, len(trace) + 1), list(trace), label=wrap_label(name, LEGEND_CHARS), linewidth=1,
                linestyle=LINESTYLES[(k // 10) % len(LINESTYLES)])
    if positive:
        ax.set_yscale("log")
    integer_ticks(ax.xaxis)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(wrap_title(title, 4.0, 10), fontsize=10)
    legend_outside(ax)
    ax.grid(alpha=0.3)
    fit_height(fig)
    return fig


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
