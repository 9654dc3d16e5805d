"""What every FedArena figure shares: saving (PNG, PDF, SVG at a chosen dpi), integer round
ticks, legends outside the data, labels that fit, a visible "n/a", and the overlap check.

Figures are laid out with matplotlib's constrained layout, so titles, tick labels and
legends placed outside the axes get room instead of being clipped. ``layout_problems``
measures the drawn text with the renderer; the tests and ``screenshot_check`` run it on
the shipped suites' figures, so "labels never overlap" is checked, not hoped for.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedarena.benchmarks.harness.atomic import write_atomic  # noqa: E402 (a leaf module: no harness import cycle)

DPI = 110
FORMATS = ("png", "pdf", "svg")
LEGEND_CHARS = 30  # a legend entry, per line
LINESTYLES = ("-", "--", ":", "-.")  # after every 10 colours, so 40 lines stay distinguishable
NA_COLOUR = "#d9d9d9"
NA_HATCH = "///"
# Type 42 (TrueType) fonts in PDF: publishers refuse Type 3; fixed dates and SVG ids make
# the same figure the same bytes, so a rebuilt figure shows up in a diff only when it changed.
_RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "fedarena"}
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
             "svg": {"Date": None}}


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1,
               **kw: object) -> tuple[plt.Figure, object]:
    """``plt.subplots`` with constrained layout (room for outside legends and wrapped labels),
    drawn at the saving dpi so what ``layout_problems`` measures is what gets written."""
    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", dpi=DPI, **kw)


@dataclass(frozen=True)
class FigureCheck:
    """One rendered figure's title and its ``layout_problems`` ([] when clean)."""

    title: str
    problems: list[str]


_RECORDERS: list[list[FigureCheck]] = []


@contextmanager
def checking_layout() -> Iterator[list[FigureCheck]]:
    """Run ``layout_problems`` on every figure rendered inside the block and collect the results.

    The screenshot check builds a report inside one: the report's own figures, exactly as
    rendered, are measured (costs one extra draw per figure; nothing is checked outside).
    """
    checks: list[FigureCheck] = []
    _RECORDERS.append(checks)
    try:
        yield checks
    finally:
        _RECORDERS.remove(checks)


def _record(fig: plt.Figure) -> None:
    if _RECORDERS:
        check = FigureCheck(_title(fig), layout_problems(fig))
        for checks in _RECORDERS:
            checks.append(check)


def _title(fig: plt.Figure) -> str:
    texts = [fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)]
    return next((t.replace("\n", " ") for t in texts if t), "(untitled figure)")


def figure_bytes(fig: plt.Figure, format: str = "png", dpi: float = DPI) -> bytes:  # noqa: A002 (matplotlib's name)
    """The figure rendered as ``format`` (png, pdf, svg); closes ``fig``."""
    try:
        _record(fig)
        return _render(fig, _format(format), dpi)
    finally:
        plt.close(fig)


def save_figure(fig: plt.Figure, path_stem: str | Path, formats: str | Sequence[str] | None = None,
                dpi: float = DPI) -> list[Path]:
    """Write ``fig`` as ``path_stem.<format>`` for each format (atomically); closes ``fig``.

    ``formats`` None takes the format from ``path_stem``'s suffix (``grid.pdf`` -> pdf),
    PNG when it has none; a suffix that is a known format is replaced, others are kept
    (``run.v2`` -> ``run.v2.png``). Returns the paths written, in ``formats`` order.
    """
    path = Path(path_stem)
    suffix = path.suffix.lower().lstrip(".")
    if formats is None:
        formats = (suffix if suffix in FORMATS else "png",)
    elif isinstance(formats, str):
        formats = (formats,)
    if not formats:
        raise ValueError(f"save_figure: no format given for {path}; choose from {', '.join(FORMATS)}")
    stem = path.with_suffix("") if suffix in FORMATS else path
    fmts = [_format(f) for f in formats]
    try:
        _record(fig)
        rendered = [(f, _render(fig, f, dpi)) for f in fmts]
    finally:
        plt.close(fig)
    return [write_atomic(stem.with_name(f"{stem.name}.{f}"), data) for f, data in rendered]


def _render(fig: plt.Figure, fmt: str, dpi: float) -> bytes:
    buf = io.BytesIO()
    with plt.rc_context(_RC):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
    return buf.getvalue()


def _format(fmt: str) -> str:
    f = str(fmt).lower().lstrip(".")
    if f not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; choose from {', '.join(FORMATS)}")
    return f


def integer_ticks(axis: Axis) -> None:
    """Ticks only at whole numbers (rounds, iterations): never a "round 2.5"."""
    axis.set_major_locator(MaxNLocator(integer=True))


def legend_outside(ax: Axes, handles: Sequence[object] | None = None, labels: Sequence[str] | None = None,
                   fontsize: float = 7, **kw: object) -> None:
    """A legend to the right of the axes (never over the data); constrained layout makes room."""
    args = () if handles is None else (handles, labels)
    ax.legend(*args, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False,
              fontsize=fontsize, **kw)


def fit_height(fig: plt.Figure, margin: float = 0.8) -> None:
    """Make ``fig`` tall enough for its outside legends (a long legend is otherwise cut off).

    ``margin`` (inches) leaves room for the title above the axes, whose top the legend hangs
    from. Measured with the layout engine off: a legend's size does not depend on the layout, and
    constrained layout would only warn that the too-short figure leaves the axes no room.
    """
    engine = fig.get_layout_engine()
    fig.set_layout_engine("none")
    try:
        renderer = fig.canvas.get_renderer()
        needed = max((leg.get_window_extent(renderer).height / fig.dpi for ax in fig.axes
                      for leg in [ax.get_legend()] if leg is not None), default=0.0)
    finally:
        fig.set_layout_engine(engine)
    if needed + margin > fig.get_figheight():
        fig.set_figheight(needed + margin)


def wrap_label(text: str, width: int) -> str:
    """``text`` on lines of at most ``width`` characters, broken after spaces, ``/``, ``,`` or ``(``
    so a component's name and its parameters stay readable; a longer word is kept whole."""
    pieces, word = [], ""
    for ch in text:
        word += ch
        if ch in " /,(":
            pieces.append(word)
            word = ""
    if word:
        pieces.append(word)
    lines, line = [], ""
    for piece in pieces:
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = piece.lstrip() if piece.strip() else ""
        else:
            line += piece
    if line.strip():
        lines.append(line.rstrip())
    return "\n".join(lines) or text


def wrap_title(text: str, width_in: float, fontsize: float) -> str:
    """A title wrapped to fit ``width_in`` inches at ``fontsize`` points (≈0.6 em per character)."""
    chars = max(12, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(part, chars, break_long_words=False, break_on_hyphens=False)
                     for part in text.splitlines())


def not_applicable(ax: Axes, x: float, width: float, top: float, fontsize: float = 6) -> Rectangle:
    """A hatched grey bar with an "n/a" mark: a value that does not exist, never drawn like a 0."""
    patch = Rectangle((x - width / 2, 0), width, top, facecolor=NA_COLOUR, edgecolor="#7f7f7f", hatch=NA_HATCH,
                      linewidth=0.5, label="_n/a", gid="not-applicable")
    ax.add_patch(patch)
    ax.text(x, top / 2, "n/a", ha="center", va="center", fontsize=fontsize, color="#404040",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})
    return patch


def not_applicable_handle() -> Patch:
    """The legend entry explaining the hatched bars."""
    return Patch(facecolor=NA_COLOUR, edgecolor="#7f7f7f", hatch=NA_HATCH, linewidth=0.5,
                 label="n/a (undefined, not 0)")


# --------------------------------------------------------------------- the overlap check


def text_boxes(fig: plt.Figure) -> list[tuple[str, object]]:
    """``(description, display-space bbox)`` of every drawn, non-empty text of ``fig``."""
    fig.draw_without_rendering()  # lays out and places the text; rasterises nothing
    renderer = fig.canvas.get_renderer()
    out: list[tuple[str, object]] = []

    def add(what: str, texts: Iterable[Text]) -> None:
        for t in texts:
            if t.get_visible() and t.get_text().strip():
                out.append((f"{what} {t.get_text()!r}", t.get_window_extent(renderer)))

    add("figure text", fig.texts)  # the suptitle is one of them
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"axes {i}"
        add(f"{name} title", [ax.title, ax._left_title, ax._right_title])  # noqa: SLF001
        add(f"{name} x label", [ax.xaxis.label])
        add(f"{name} y label", [ax.yaxis.label])
        add(f"{name} x tick", _drawn_ticklabels(ax.xaxis))
        add(f"{name} y tick", _drawn_ticklabels(ax.yaxis))
        add(f"{name} text", ax.texts)
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            add(f"{name} legend", legend.get_texts())
            if legend.get_title().get_text():
                add(f"{name} legend title", [legend.get_title()])
    for legend in fig.legends:
        add("figure legend", legend.get_texts())
    return out


def _drawn_ticklabels(axis: Axis) -> list[Text]:
    """The tick labels actually drawn: those whose tick lies inside the view interval."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    return [label for loc, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=False)
            if lo - span <= loc <= hi + span]


def layout_problems(fig: plt.Figure, tolerance: float = 0.5) -> list[str]:
    """Every pair of texts whose boxes overlap, every text cut off by the figure's edge, and every
    legend drawn over an axes' data area; [] for a clean figure. ``tolerance`` in pixels.

    Boxes are axis-aligned: exact for horizontal and vertical text (all FedArena draws),
    an over-estimate for text rotated by other angles, which is therefore reported sooner.
    """
    boxes = text_boxes(fig)
    width, height = fig.canvas.get_width_height()
    problems = []
    for what, box in boxes:
        if box.x0 < -tolerance or box.y0 < -tolerance or box.x1 > width + tolerance or box.y1 > height + tolerance:
            problems.append(f"{what} is cut off by the figure edge")
    for i, (what_a, a) in enumerate(boxes):
        for what_b, b in boxes[i + 1:]:
            if min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance and min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance:
                problems.append(f"{what_a} overlaps {what_b}")
    renderer = fig.canvas.get_renderer()
    for i, ax in enumerate(fig.axes):
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        lb = legend.get_window_extent(renderer)
        for j, other in enumerate(fig.axes):
            ab = other.get_window_extent(renderer)
            if min(lb.x1, ab.x1) - max(lb.x0, ab.x0) > tolerance and min(lb.y1, ab.y1) - max(lb.y0, ab.y0) > tolerance:
                problems.append(f"axes {i} legend lies over the data of axes {j}")
    return problems
