"""The report's figures as PNG (or PDF, SVG) bytes (matplotlib, Agg backend, no display needed).

Each function takes plain numbers already aggregated over seeds, so the report decides
what to show and these only draw it. ``*_figure`` returns the matplotlib figure (for
``style.save_figure`` or ``style.layout_problems``); the plain names render it to bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .style import (  # noqa: E402
    DPI,
    LEGEND_CHARS,
    LINESTYLES,
    figure_bytes,
    fit_height,
    integer_ticks,
    layout_problems,
    legend_outside,
    new_figure,
    not_applicable,
    not_applicable_handle,
    wrap_label,
    wrap_title,
)

BAR_SLOT = 0.9  # inches per defense in the detection chart
MAX_TICK_LINES = 4  # a wrapped defense label longer than this becomes a numbered key


@dataclass(frozen=True)
class Point:
    """One (defense, attack) cell of the privacy–utility plane."""

    defense: str
    attack: str
    accuracy: float
    psnr: float


@dataclass(frozen=True)
class Curve:
    label: str
    rounds: Sequence[float]
    mean: Sequence[float]
    std: Sequence[float]


@dataclass(frozen=True)
class Bars:
    label: str
    precision: float | None
    recall: float | None


def privacy_utility(points: Sequence[Point], title: str, *, format: str = "png",  # noqa: A002
                    dpi: float = DPI) -> bytes:
    """``privacy_utility_figure`` rendered as ``format`` (png, pdf, svg)."""
    return figure_bytes(privacy_utility_figure(points, title), format, dpi)


def privacy_utility_figure(points: Sequence[Point], title: str) -> plt.Figure:
    """Attack PSNR (lower = more private) against model accuracy, one colour per defense
    and one marker per attack; the legend sits outside the plane."""
    fig, ax = new_figure(6.4, 4.4)
    defenses = list(dict.fromkeys(p.defense for p in points))
    attacks = list(dict.fromkeys(p.attack for p in points))
    colours = plt.get_cmap("tab10" if len(defenses) <= 10 else "tab20")
    markers = "osD^vP*Xh<>"
    for i, defense in enumerate(defenses):
        for j, attack in enumerate(attacks):
            sel = [p for p in points if p.defense == defense and p.attack == attack]
            if sel:
                label = f"{defense} / {attack}" if len(attacks) > 1 else defense
                ax.scatter([p.accuracy * 100 for p in sel], [p.psnr for p in sel], color=colours(i % colours.N),
                           marker=markers[j % len(markers)], s=60, edgecolors="black", linewidths=0.5,
                           label=wrap_label(label, LEGEND_CHARS))
    ax.set_xlabel("model accuracy (%)")
    ax.set_ylabel("attack PSNR (dB), lower is more private")
    ax.set_title(wrap_title(title, 4.0, 10), fontsize=10)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fit_height(fig)
    return fig


def accuracy_curves(curves: Sequence[Curve], title: str, *, format: str = "png",  # noqa: A002
                    dpi: float = DPI) -> bytes:
    """``accuracy_figure`` rendered as ``format`` (png, pdf, svg)."""
    return figure_bytes(accuracy_figure(curves, title), format, dpi)


def accuracy_figure(curves: Sequence[Curve], title: str) -> plt.Figure:
    """Test accuracy per round, mean over seeds with a ±1 std band; rounds on whole-number
    ticks, the legend outside the curves, line styles changing after every 10 colours."""
    fig, ax = new_figure(6.4, 4.0)
    for k, curve in enumerate(curves):
        x = np.asarray(curve.rounds, dtype=float)
        m = np.asarray(curve.mean, dtype=float) * 100
        s = np.asarray(curve.std, dtype=float) * 100
        (line,) = ax.plot(x, m, marker="." if len(x) < 30 else None, label=wrap_label(curve.label, LEGEND_CHARS),
                          linestyle=LINESTYLES[(k // 10) % len(LINESTYLES)])
        if np.any(s > 0):
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.15)
    integer_ticks(ax.xaxis)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(wrap_title(title, 4.0, 10), fontsize=10)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fit_height(fig)
    return fig


def detection_bars(bars: Sequence[Bars], title: str, *, format: str = "png",  # noqa: A002
                   dpi: float = DPI) -> bytes:
    """``detection_figure`` rendered as ``format`` (png, pdf, svg)."""
    return figure_bytes(detection_figure(bars, title), format, dpi)


def detection_figure(bars: Sequence[Bars], title: str) -> plt.Figure:
    """Precision and recall of malicious-client detection, side by side per defense.

    A value that is undefined (``None``: nobody flagged, so no precision) is a hatched grey
    bar marked "n/a", never an empty slot that reads as 0; every bar carries its value.
    Defense labels are wrapped below their bars; when they still collide they become
    numbers keyed in the legend.
    """
    fig, ax = new_figure(max(4.5, BAR_SLOT * len(bars) + 2.6), 3.8)
    x = np.arange(len(bars))
    width = 0.38
    undefined = False
    for offset, what, colour in ((-width / 2, "precision", "#4c72b0"), (width / 2, "recall", "#dd8452")):
        for xi, b in zip(x, bars, strict=True):
            value = getattr(b, what)
            if value is None or not np.isfinite(value):
                not_applicable(ax, xi + offset, width, 1.0)
                undefined = True
            else:
                ax.bar(xi + offset, value, width, color=colour)
                ax.text(xi + offset, value + 0.02, f"{value:.2f}", ha="center", va="bottom", fontsize=6)
    handles = [Patch(color="#4c72b0", label="precision"), Patch(color="#dd8452", label="recall")]
    if undefined:
        handles.append(not_applicable_handle())
    labels = [b.label for b in bars]
    ax.set_xticks(x, [wrap_label(label, int(BAR_SLOT * 72 / (0.6 * 7))) for label in labels], fontsize=7)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("malicious-client detection")
    ax.set_title(wrap_title(title, 4.0, 10), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    legend_outside(ax, handles, [h.get_label() for h in handles], fontsize=8)
    ticks = [p for p in layout_problems(fig) if " x tick " in p]
    if ticks or any(len(ax_label.get_text().splitlines()) > MAX_TICK_LINES for ax_label in ax.get_xticklabels()):
        keys = [str(i + 1) for i in range(len(bars))]  # labels too long to sit side by side
        ax.set_xticks(x, keys, fontsize=7)
        handles += [Patch(alpha=0.0, label=wrap_label(f"{k}: {label}", LEGEND_CHARS))
                    for k, label in zip(keys, labels, strict=True)]
        legend_outside(ax, handles, [h.get_label() for h in handles], fontsize=7)
        ax.set_xlabel("defense (key in the legend)", fontsize=8)
    fit_height(fig)
    return fig
