"""``fedarena figure DIR``: a reconstruction grid rebuilt from stored privacy runs, with the
attacks, defenses and images a paper needs, as PNG, PDF or SVG.

    fedarena figure runs/privacy --attacks inverting_gradients --defenses none gaussian_noise \\
        --images 0 2 5 --out fig3.pdf

The store is opened read-only and every artefact goes through the report's checks
(``load_reconstruction``: inside the result folder, weights-only, shaped like a
reconstruction), so a tampered store can make the command fail, never read elsewhere.
Rows follow the order of ``--attacks`` then ``--defenses``; a name matches a component's
registry name (every parameter setting) or its full label (``gaussian_noise(sigma=0.01)``).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fedarena.benchmarks.harness.report import GRID_IMAGES, load_reconstruction
from fedarena.benchmarks.harness.store import STORE_NAME, RunRecord, Store
from fedarena.benchmarks.harness.tasks.privacy import RECONSTRUCTION

from .plots import GridRow, grid_figure
from .style import DPI, FORMATS, save_figure


class FigureError(ValueError):
    """The figure cannot be built as asked (no such run, image or format); says what exists."""


@dataclass(frozen=True)
class Selection:
    """Which stored runs and images make the grid; ``None`` means all (first ``GRID_IMAGES`` images)."""

    attacks: Sequence[str] | None = None
    defenses: Sequence[str] | None = None
    images: Sequence[int] | None = None
    seed: int | None = None
    suite: str | None = None
    block: str | None = None


def rebuild_grid(folder: str | Path, out: str | Path, selection: Selection = Selection(), *,
                 title: str | None = None, dpi: float = DPI) -> Path:
    """Write the grid of ``selection``'s runs in ``folder`` to ``out`` (format from its suffix)."""
    folder, out = Path(folder), Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise FigureError(f"--out {out}: the file name must end in {', '.join('.' + f for f in FORMATS)}")
    if not (folder / STORE_NAME).is_file():
        raise FigureError(f"{folder} has no {STORE_NAME}; run a suite into it with `fedarena run SUITE --out {folder}`")
    with Store(folder / STORE_NAME, readonly=True) as store:
        runs = [r for r in store.runs(status="ok") if r.task == "privacy" and RECONSTRUCTION in r.artefacts]
    truth, rows, picked = _rows(folder, _select(runs, selection), selection)
    if title is None:
        attacks = ", ".join(dict.fromkeys(r.meta.get("attack_label", "?") for r in picked))
        defenses = ", ".join(dict.fromkeys(r.meta.get("defense_label", "?") for r in picked))
        where = ", ".join(dict.fromkeys(f"{r.suite}: {r.meta.get('block_label', r.task)}" for r in picked))
        title = f"{where}; {attacks} vs {defenses}"
    return save_figure(grid_figure(truth, rows, title), out, fmt, dpi)[0]


def _matches(record: RunRecord, names: Sequence[str] | None, kind: str) -> int | None:
    """Position of the first of ``names`` naming the run's ``kind`` (attack/defense), None if none does."""
    if names is None:
        return 0
    registry, label = record.config.get(kind, {}).get("name"), record.meta.get(f"{kind}_label")
    return next((i for i, n in enumerate(names) if n in (registry, label)), None)


def _select(runs: list[RunRecord], sel: Selection) -> list[RunRecord]:
    if not runs:
        raise FigureError("the store holds no finished privacy run with a stored reconstruction")
    pool = [r for r in runs if (sel.suite is None or r.suite == sel.suite)
            and (sel.block is None or r.meta.get("block_label") == sel.block)]
    chosen = [r for r in pool if _matches(r, sel.attacks, "attack") is not None
              and _matches(r, sel.defenses, "defense") is not None]
    if not chosen:
        raise FigureError("no stored privacy run matches " + _asked(sel) + "; the store has " + _available(runs))
    seed = min(r.config["seed"] for r in chosen) if sel.seed is None else sel.seed
    seeded = [r for r in chosen if r.config["seed"] == seed]
    if not seeded:
        raise FigureError(f"no matching run has seed {seed}; seeds stored: "
                          f"{sorted({r.config['seed'] for r in chosen})}")
    return sorted(seeded, key=lambda r: (_matches(r, sel.attacks, "attack"), _matches(r, sel.defenses, "defense")))


def _rows(folder: Path, runs: list[RunRecord],
          sel: Selection) -> tuple[torch.Tensor, dict[str, GridRow], list[RunRecord]]:
    blobs, problems = [], []
    for r in runs:
        try:
            blobs.append((r, load_reconstruction(folder, r.artefacts[RECONSTRUCTION])))
        except ValueError as exc:
            problems.append(f"run {r.run_id}: {exc}")
    for line in problems:
        print(f"warning: skipped {line}", file=sys.stderr)
    if not blobs:
        raise FigureError("no usable reconstruction among the matching runs: " + "; ".join(problems))
    batches: dict[str, list[RunRecord]] = {}
    for r, blob in blobs:
        batches.setdefault(hashlib.sha1(blob["truth"].numpy().tobytes()).hexdigest(), []).append(r)
    if len(batches) > 1:
        where = "; ".join(", ".join(sorted({f"suite {r.suite} block {r.meta.get('block_label')!r}" for r in group}))
                          for group in batches.values())
        raise FigureError(f"the matching runs attacked {len(batches)} different image batches ({where}); "
                          "choose one with --suite and --block")
    n = blobs[0][1]["truth"].shape[0]
    images = list(range(min(n, GRID_IMAGES))) if sel.images is None else list(sel.images)
    bad = [i for i in images if not 0 <= i < n]
    if bad or not images:
        raise FigureError(f"--images {bad or images}: the stored batch has {n} images (0 to {n - 1})")
    index = torch.tensor(images)
    labels = [f"{r.meta.get('attack_label', '?')}\nvs {r.meta.get('defense_label', '?')}" for r, _ in blobs]
    if len(set(labels)) < len(labels):  # the same pair in two blocks or suites: name them too
        labels = [f"{label}\n[{r.suite}: {r.meta.get('block_label')}]"
                  for label, (r, _) in zip(labels, blobs, strict=True)]
    rows = {label: GridRow(blob["reconstruction"][index].float() / 255, blob["psnr"][index].tolist())
            for label, (_, blob) in zip(labels, blobs, strict=True)}
    return blobs[0][1]["truth"][index].float() / 255, rows, [r for r, _ in blobs]


def _asked(sel: Selection) -> str:
    parts = [f"{what} {' '.join(v)}" for what, v in (("--attacks", sel.attacks), ("--defenses", sel.defenses)) if v]
    parts += [f"{what} {v}" for what, v in (("--suite", sel.suite), ("--block", sel.block)) if v is not None]
    return " ".join(parts) or "the selection"


def _available(runs: list[RunRecord]) -> str:
    def names(kind: str) -> str:
        return ", ".join(sorted({f"{r.config.get(kind, {}).get('name')} ({r.meta.get(f'{kind}_label')})"
                                 for r in runs}))

    blocks = ", ".join(sorted({f"{r.suite}/{r.meta.get('block_label')}" for r in runs}))
    return f"attacks {names('attack')}; defenses {names('defense')}; suite/blocks {blocks}"
