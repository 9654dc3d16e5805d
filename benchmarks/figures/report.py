"""The report's figures as PNG bytes (matplotlib, Agg backend, no display needed).

Each function takes plain numbers already aggregated over seeds, so the report decides
what to show and these only draw it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110


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


def privacy_utility(points: Sequence[Point], title: str) -> bytes:
    """Attack PSNR (lower = more private) against model accuracy, one colour per defense."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    defenses = list(dict.fromkeys(p.defense for p in points))
    attacks = list(dict.fromkeys(p.attack for p in points))
    colours = plt.get_cmap("tab10" if len(defenses) <= 10 else "tab20")
    markers = "osD^vP*Xh<>"
    for i, defense in enumerate(defenses):
        for j, attack in enumerate(attacks):
            sel = [p for p in points if p.defense == defense and p.attack == attack]
            if sel:
                ax.scatter([p.accuracy * 100 for p in sel], [p.psnr for p in sel], color=colours(i % colours.N),
                           marker=markers[j % len(markers)], s=60, edgecolors="black", linewidths=0.5,
                           label=f"{defense} / {attack}" if len(attacks) > 1 else defense)
    ax.set_xlabel("model accuracy (%)")
    ax.set_ylabel("attack PSNR (dB)  — lower is more private")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
    return _png(fig)


def accuracy_curves(curves: Sequence[Curve], title: str) -> bytes:
    """Test accuracy per round, mean over seeds with a ±1 std band."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for curve in curves:
        x = np.asarray(curve.rounds, dtype=float)
        m = np.asarray(curve.mean, dtype=float) * 100
        s = np.asarray(curve.std, dtype=float) * 100
        (line,) = ax.plot(x, m, marker="." if len(x) < 30 else None, label=curve.label)
        if np.any(s > 0):
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    return _png(fig)


def detection_bars(bars: Sequence[Bars], title: str) -> bytes:
    """Precision and recall of malicious-client detection, side by side per defense."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(bars) + 2), 3.8))
    x = np.arange(len(bars))
    width = 0.38
    prec = [np.nan if b.precision is None else b.precision for b in bars]
    rec = [np.nan if b.recall is None else b.recall for b in bars]
    ax.bar(x - width / 2, prec, width, label="precision", color="#4c72b0")
    ax.bar(x + width / 2, rec, width, label="recall", color="#dd8452")
    ax.set_xticks(x, [b.label for b in bars], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("malicious-client detection")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()
