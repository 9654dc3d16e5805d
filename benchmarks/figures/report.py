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
from matplotlib.axes import Axes  # noqa: E402
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
MAX_WIDTH = 10.0  # inches: 1100 px at the report's dpi, shown unscaled in a 1400-px window
MAX_LINES = 10  # curves in one panel; more get a panel per attack
MAX_BARS = 10  # defenses in one panel; more get a panel per attack
PANEL_COLUMNS, PANEL_WIDTH = 3, 3.3  # inches
GROUP_SEPARATOR = " / "  # the report labels a curve or a bar "attack / defense"
PRECISION, RECALL = "#4c72b0", "#dd8452"


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
    ticks, legends outside the curves.

    Up to ``MAX_LINES`` curves share one panel. More curves labelled ``attack / defense``
    (the report's labels) get one panel per attack, a colour per defense kept across
    panels and one legend below: 50 lines in one panel cannot be told apart.
    """
    groups = _groups([c.label for c in curves]) if len(curves) > MAX_LINES else None
    if groups is None:
        fig, ax = new_figure(6.4, 4.0)
        for k, curve in enumerate(curves):
            _curve(ax, curve, wrap_label(curve.label, LEGEND_CHARS), None, LINESTYLES[(k // 10) % len(LINESTYLES)])
        _accuracy_axes(ax, "round", "test accuracy (%)")
        ax.set_title(wrap_title(title, 4.0, 10), fontsize=10)
        legend_outside(ax)
        fit_height(fig)
        return fig
    panels = list(dict.fromkeys(g for g, _ in groups))
    members = list(dict.fromkeys(m for _, m in groups))
    ncols = min(PANEL_COLUMNS, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(PANEL_WIDTH * ncols, 2.6 * nrows + 1.0, nrows, ncols, squeeze=False, sharex=True,
                           sharey=True)
    colours = _colours(len(members))
    lines: dict[str, object] = {}
    for curve, (group, member) in zip(curves, groups, strict=True):
        ax = axes[panels.index(group) // ncols][panels.index(group) % ncols]
        k = members.index(member)
        lines[member] = _curve(ax, curve, member, colours[k], LINESTYLES[(k // 10) % len(LINESTYLES)])
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        ax.set_title(wrap_title(panels[i], PANEL_WIDTH - 0.4, 8), fontsize=8)
        _accuracy_axes(ax, "round" if i + ncols >= len(panels) else "",  # no panel below it
                       "test accuracy (%)" if i % ncols == 0 else "")
    fig.suptitle(wrap_title(title, PANEL_WIDTH * ncols, 10), fontsize=10)
    fig.legend([lines[m] for m in members], [wrap_label(m, LEGEND_CHARS) for m in members], loc="outside lower center",
               ncols=min(4, len(members)), fontsize=7, frameon=False)
    return fig


def _curve(ax: Axes, curve: Curve, label: str, colour: object, linestyle: str) -> object:
    x = np.asarray(curve.rounds, dtype=float)
    m = np.asarray(curve.mean, dtype=float) * 100
    s = np.asarray(curve.std, dtype=float) * 100
    (line,) = ax.plot(x, m, marker="." if len(x) < 30 else None, label=label, color=colour, linestyle=linestyle)
    if np.any(s > 0):
        ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.15)
    return line


def _accuracy_axes(ax: Axes, xlabel: str, ylabel: str) -> None:
    integer_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def detection_bars(bars: Sequence[Bars], title: str, *, format: str = "png",  # noqa: A002
                   dpi: float = DPI) -> bytes:
    """``detection_figure`` rendered as ``format`` (png, pdf, svg)."""
    return figure_bytes(detection_figure(bars, title), format, dpi)


def detection_figure(bars: Sequence[Bars], title: str) -> plt.Figure:
    """Precision and recall of malicious-client detection, side by side per defense.

    A value that is undefined (``None``: nobody flagged, so no precision) is a hatched grey
    bar marked "n/a", never an empty slot that reads as 0; every bar carries its value.
    Defense labels are wrapped below their bars; when they still collide they become
    numbers keyed in the legend. More than ``MAX_BARS`` bars labelled ``attack / defense``
    get one panel per attack (stacked), each with its defenses.
    """
    groups = _groups([b.label for b in bars]) if len(bars) > MAX_BARS else None
    if groups is None:
        panels = {"": (list(bars), [b.label for b in bars])}
    else:
        panels = {}
        for b, (group, member) in zip(bars, groups, strict=True):
            panels.setdefault(group, ([], []))
            panels[group][0].append(b)
            panels[group][1].append(member)
    most = max(len(p[0]) for p in panels.values())
    width = min(MAX_WIDTH, max(4.5, BAR_SLOT * most + 2.6))
    fig, axes = new_figure(width, 3.4 * len(panels) + 0.4, len(panels), 1, squeeze=False, sharey=True)
    wrap = max(6, int((width - 2.6) / most * 72 / (0.6 * 7)))  # characters in a defense's slot
    legends = []
    for ax, (group, (members, labels)) in zip(axes[:, 0], panels.items(), strict=True):
        _bars(ax, members)
        handles = [Patch(color=PRECISION, label="precision"), Patch(color=RECALL, label="recall")]
        if any(v is None or not np.isfinite(v) for b in members for v in (b.precision, b.recall)):
            handles.append(not_applicable_handle())
        legend_outside(ax, handles, [h.get_label() for h in handles], fontsize=7)  # before the labels are measured
        legends.append(handles)
        ax.set_xticks(np.arange(len(labels)), [wrap_label(label, wrap) for label in labels], fontsize=7)
        if group:
            ax.set_title(wrap_title(group, width - 2.0, 9), fontsize=9)
    problems = layout_problems(fig)  # one layout pass for every panel
    for i, (ax, (_, labels)) in enumerate(zip(axes[:, 0], panels.values(), strict=True)):
        tall = max(len(t.get_text().splitlines()) for t in ax.get_xticklabels()) > MAX_TICK_LINES
        if tall or any(p.startswith(f"axes {i} x tick ") for p in problems):  # collide: numbers, keyed
            keys = [str(k + 1) for k in range(len(labels))]
            ax.set_xticks(np.arange(len(labels)), keys, fontsize=7)
            ax.set_xlabel("defense (key in the legend)", fontsize=8)
            handles = legends[i] + [Patch(alpha=0.0, label=wrap_label(f"{k}: {label}", LEGEND_CHARS))
                                    for k, label in zip(keys, labels, strict=True)]
            legend_outside(ax, handles, [h.get_label() for h in handles], fontsize=7)
    title_text = wrap_title(title, width - 2.0, 10)
    if groups is None:
        axes[0, 0].set_title(title_text, fontsize=10)
    else:
        fig.suptitle(title_text, fontsize=10)
    fit_height(fig)
    return fig


def _bars(ax: Axes, bars: Sequence[Bars], width: float = 0.38) -> None:
    for offset, what, colour in ((-width / 2, "precision", PRECISION), (width / 2, "recall", RECALL)):
        for xi, b in enumerate(bars):
            value = getattr(b, what)
            if value is None or not np.isfinite(value):
                not_applicable(ax, xi + offset, width, 1.0)
            else:
                ax.bar(xi + offset, value, width, color=colour)
                ax.text(xi + offset, value + 0.02, f"{value:.2f}", ha="center", va="bottom", fontsize=6)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("malicious-client detection")
    ax.grid(axis="y", alpha=0.3)


def _groups(labels: Sequence[str]) -> list[tuple[str, str]] | None:
    """``attack / defense`` labels split in two, when every label has that form and there is
    more than one attack; None otherwise (one panel)."""
    parts = [tuple(label.split(GROUP_SEPARATOR, 1)) for label in labels]
    if all(len(p) == 2 for p in parts) and len({p[0] for p in parts}) > 1:
        return [(p[0], p[1]) for p in parts]
    return None


def _colours(n: int) -> list[object]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]
