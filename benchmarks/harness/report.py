"""``fedarena report DIR``: tables and figures from an output folder's store.

Per suite: a privacy table and a robustness table per block setting (attack × defense,
mean ± std over seeds, with a detail table of every metric), accuracy-per-round curves,
malicious-client detection precision/recall bars, reconstruction grids, and the
privacy–utility scatter (attack PSNR against the accuracy FedAvg reaches under the same
defense: the suite's attack-free robustness runs with that defense, matched by label).
Writes ``DIR/report.md`` (figures in ``DIR/report_files/``) and a self-contained
``DIR/report.html``; every file is written atomically. The store is opened read-only:
the report files are the only thing written (``ReportWriteError`` when the folder is
read-only). An artefact that cannot be used (a path leaving the folder, a file that is
missing, truncated, not a weights-only tensor file, or shaped unlike a reconstruction)
is skipped and listed under "Skipped artefacts"; it never aborts the report.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.figures import report as figs
from benchmarks.figures.plots import GridRow, reconstruction_grid

from .atomic import write_atomic
from .report_render import Document, Figure, Heading, Paragraph, Table, to_html, to_markdown
from .store import STORE_NAME, RunRecord, Store, artefact_path
from .tasks.privacy import RECONSTRUCTION

FIGURES_DIR = "report_files"
MARKDOWN = "report.md"
HTML = "report.html"
GRID_IMAGES = 8
EPSILON_CAPTION = ("ε under add/remove adjacency (sensitivity C) and under replace-one adjacency (sensitivity 2C, "
                   "the usual local-DP notion); – = not a DP defense, or that adjacency not accounted (DP-SGD and "
                   "central DP account add/remove only).")


class ReportWriteError(RuntimeError):
    """The report files cannot be written into the folder (read-only, full)."""


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    figures: Path


def write_report(folder: str | Path) -> ReportPaths:
    """Build the report of every suite stored in ``folder`` and write it there."""
    folder = Path(folder)
    with Store(folder / STORE_NAME, readonly=True) as store:
        doc = build_report(store, folder)
    try:
        for fig in doc.figures:
            write_atomic(folder / FIGURES_DIR / fig.name, fig.png)
        md = write_atomic(folder / MARKDOWN, to_markdown(doc, FIGURES_DIR))
        page = write_atomic(folder / HTML, to_html(doc))
    except OSError as exc:
        raise ReportWriteError(f"cannot write the report into {folder} ({exc.strerror or exc}: "
                               f"{exc.filename or folder}); the store was only read. Copy the folder somewhere "
                               "writable (or free space) and run `fedarena report` there") from None
    return ReportPaths(md, page, folder / FIGURES_DIR)


def build_report(store: Store, folder: Path) -> Document:
    doc = Document(f"FedArena report — {folder.resolve().name}")
    skipped: list[list[str]] = []
    records = {r.run_id: r for r in store.runs()}
    suites = store.suites()
    if not suites:
        doc.add(Paragraph("This folder's store holds no suite yet."))
        return doc
    overview = []
    for s in suites:
        runs = [records[rid] for rid, _, _ in store.planned(s["suite"]) if rid in records]
        ok = sum(r.status == "ok" for r in runs)
        overview.append([s["suite"], str(s["planned"]), str(ok), str(len(runs) - ok), str(s["planned"] - len(runs)),
                         _duration(sum(r.seconds or 0.0 for r in runs))])
    doc.add(Table(["suite", "runs", "ok", "failed", "pending", "run time"], overview))
    doc.add(Paragraph(_code_line(list(records.values()))))
    for s in suites:
        planned = store.planned(s["suite"])
        runs = [records[rid] for rid, _, _ in planned if rid in records]
        _suite_section(doc, s, runs, folder, skipped)
    if skipped:
        doc.add(Heading("Skipped artefacts"))
        doc.add(Table(["run", "artefact", "why"], skipped, "Artefacts that could not be used; the report goes on "
                      "without them (their runs' metrics are in the tables)."))
    return doc


def _code_line(runs: list[RunRecord]) -> str:
    """Which code and devices computed the stored runs (several versions: a store resumed with --fresh)."""
    versions: dict[str, int] = {}
    devices: dict[str, int] = {}
    for r in runs:
        key = r.provenance.describe() if r.provenance else "code that recorded no provenance"
        versions[key] = versions.get(key, 0) + 1
        devices[r.device or "unrecorded"] = devices.get(r.device or "unrecorded", 0) + 1
    code = "; ".join(f"{v} ({n} runs)" for v, n in versions.items()) if len(versions) > 1 else next(iter(versions), "-")
    return f"Computed by {code}, on {', '.join(f'{d} ({n})' for d, n in sorted(devices.items())) or '-'}."


def _suite_section(doc: Document, suite: dict[str, Any], runs: list[RunRecord], folder: Path,
                   skipped: list[list[str]]) -> None:
    name = suite["suite"]
    doc.add(Heading(f"Suite {name}"))
    if suite["description"]:
        doc.add(Paragraph(suite["description"].strip()))
    ok = [r for r in runs if r.status == "ok"]
    privacy = _groups(r for r in ok if r.task == "privacy")
    robustness = _groups(r for r in ok if r.task == "robustness")
    for title, group in privacy.items():
        _privacy_group(doc, name, title, group, folder, skipped)
    for title, group in robustness.items():
        _robustness_group(doc, name, title, group)
    points = _privacy_utility_points(privacy, robustness)
    if points:
        doc.add(Heading("Privacy–utility", 3))
        doc.add(Figure(_fig_name(name, "privacy_utility"), figs.privacy_utility(points, f"{name}: privacy vs utility"),
                       "Attack PSNR against the test accuracy reached under the same defense (mean over seeds)."))
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        doc.add(Heading("Failed runs", 3))
        doc.add(Table(["run", "attack", "defense", "seed", "error"],
                      [[r.run_id, r.meta.get("attack_label", ""), r.meta.get("defense_label", ""),
                        str(r.config.get("seed")), (r.error or "").splitlines()[0][:200]] for r in failed]))
    if not ok and not failed:
        doc.add(Paragraph("No run of this suite has finished yet."))


# --------------------------------------------------------------------- privacy


def _privacy_group(doc: Document, suite: str, title: str, runs: list[RunRecord], folder: Path,
                   skipped: list[list[str]]) -> None:
    doc.add(Heading(f"Privacy — {title}", 3))
    doc.add(_matrix(runs, "psnr", _num(2), "Attack PSNR in dB (higher = more leakage), mean ± std over seeds"))
    rows = []
    for (attack, defense), cell in _cells(runs).items():
        rows.append([attack, defense, _stat(cell, "psnr", _num(2)), _stat(cell, "ssim", _num(3)),
                     _stat(cell, "lpips", _num(3)), _stat(cell, "label_accuracy", _pct),
                     _stat(cell, "epsilon", _num(2)), _epsilon(cell, "replace"), _stat(cell, "attack_seconds", _num(1)),
                     str(len(cell))])
    doc.add(Table(["attack", "defense", "PSNR (dB)", "SSIM", "LPIPS", "label acc.", "ε add/remove", "ε replace",
                   "attack time (s)", "seeds"], rows, EPSILON_CAPTION))
    notes = sorted({n for r in runs for n in [r.metrics.get("lpips_note")] if n})
    if notes:
        doc.add(Paragraph("LPIPS: " + "; ".join(notes)))
    for i, (truth, rows_) in enumerate(_reconstruction_rows(runs, folder, skipped)):
        png = _grid_png(truth, rows_, f"{suite}: {title}")
        doc.add(Figure(_fig_name(suite, f"reconstructions_{title}_{i}"), png,
                       "Ground truth (top) and each attack's reconstruction under each defense (first seed); "
                       "PSNR under each image."))


def _grid_png(truth: torch.Tensor, rows: dict[str, GridRow], title: str) -> bytes:
    """``benchmarks.figures.reconstruction_grid`` (it writes a file) as PNG bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = reconstruction_grid(truth[:GRID_IMAGES], {k: GridRow(v.images[:GRID_IMAGES], v.psnr[:GRID_IMAGES])
                                                         for k, v in rows.items()}, Path(tmp) / "grid.png", title)
        return path.read_bytes()


def _reconstruction_rows(runs: list[RunRecord], folder: Path,
                         skipped: list[list[str]]) -> list[tuple[torch.Tensor, dict[str, GridRow]]]:
    """Per distinct ground-truth batch (first seed): the reconstructions of every (attack, defense);
    an unusable artefact is appended to ``skipped`` as ``[run id, stored path, why]``."""
    seed = min(r.config["seed"] for r in runs)
    grids: dict[str, tuple[torch.Tensor, dict[str, GridRow]]] = {}
    short = [_short_pair(r) for r in runs if r.config["seed"] == seed]
    use_short = len(set(short)) == len(short)
    for r in runs:
        if r.config["seed"] != seed or RECONSTRUCTION not in r.artefacts:
            continue
        try:
            blob = load_reconstruction(folder, r.artefacts[RECONSTRUCTION])
        except ValueError as exc:
            skipped.append([r.run_id, str(r.artefacts[RECONSTRUCTION]), str(exc)])
            continue
        truth = blob["truth"].float() / 255
        key = hashlib.sha1(blob["truth"].numpy().tobytes()).hexdigest()
        label = _short_pair(r) if use_short else f"{r.meta.get('attack_label')}\nvs {r.meta.get('defense_label')}"
        grids.setdefault(key, (truth, {}))[1][label] = GridRow(blob["reconstruction"].float() / 255,
                                                               blob["psnr"].tolist())
    return list(grids.values())


def load_reconstruction(folder: Path, relative: str) -> dict[str, torch.Tensor]:
    """A run's ``reconstruction.pt``, checked: ``ValueError`` saying why it cannot be used.

    Loaded with ``weights_only=True`` (tensors only, no code), inside the result folder,
    with ``truth`` and ``reconstruction`` uint8 ``[N, C, H, W]`` of one shape and ``psnr`` ``[N]``.
    """
    path = artefact_path(folder, str(relative))  # ValueError when it leaves the folder
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    try:
        blob = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ValueError(f"{path} is not a valid tensor file ({type(exc).__name__}: {first})") from None
    if not isinstance(blob, dict) or not {"truth", "reconstruction", "psnr"} <= set(blob):
        have = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"{path} lacks truth/reconstruction/psnr (has {have})")
    truth, rec, psnr = blob["truth"], blob["reconstruction"], blob["psnr"]
    if not all(isinstance(t, torch.Tensor) for t in (truth, rec, psnr)):
        raise ValueError(f"{path}: truth, reconstruction and psnr must be tensors")
    if truth.dtype != torch.uint8 or rec.dtype != torch.uint8 or truth.dim() != 4 or truth.shape != rec.shape \
            or psnr.shape != (truth.shape[0],) or truth.shape[0] == 0 or truth.shape[1] not in (1, 3):
        raise ValueError(f"{path} is shaped unlike a reconstruction (truth {tuple(truth.shape)} {truth.dtype}, "
                         f"reconstruction {tuple(rec.shape)} {rec.dtype}, psnr {tuple(psnr.shape)})")
    return blob


def _short_pair(r: RunRecord) -> str:
    """``attack / defense`` by registry names only (grid rows have little room)."""
    adaptive = " (adaptive)" if r.config["attack"].get("adaptive") else ""
    return f"{r.config['attack']['name']}{adaptive}\n{r.config['defense']['name']}"


# --------------------------------------------------------------------- robustness


def _robustness_group(doc: Document, suite: str, title: str, runs: list[RunRecord]) -> None:
    doc.add(Heading(f"Robustness — {title}", 3))
    doc.add(_matrix(runs, "final_accuracy", _pct, "Final test accuracy, mean ± std over seeds"))
    rows = []
    cells = _cells(runs)
    for (attack, defense), cell in cells.items():
        rows.append([attack, defense, _stat(cell, "final_accuracy", _pct), _stat(cell, "attack_success_rate", _pct),
                     _stat(cell, "malicious_precision", _num(2)), _stat(cell, "malicious_recall", _num(2)),
                     _stat(cell, "epsilon", _num(2)), _epsilon(cell, "replace"), _stat(cell, "fl_seconds", _num(1)),
                     str(len(cell))])
    doc.add(Table(["attack", "defense", "accuracy", "attack success", "detection precision", "detection recall",
                   "ε add/remove", "ε replace", "time (s)", "seeds"], rows, EPSILON_CAPTION))
    roles = _role_rows(cells)
    if roles:
        doc.add(Table(["attack", "defense", "role", "clients", "precision", "recall"], roles,
                      "Detection per client role (a client counts as flagged when the defense excluded it)."))
    curves = [c for c in (_curve(f"{a} / {d}", cell) for (a, d), cell in cells.items()) if c is not None]
    if curves:
        doc.add(Figure(_fig_name(suite, f"accuracy_{title}"), figs.accuracy_curves(curves, f"{suite}: {title}"),
                       "Test accuracy per round (mean over seeds, band = ±1 std)."))
    bars = [figs.Bars(f"{a} / {d}" if len({k[0] for k in cells if k[0] != 'none'}) > 1 else d,
                      _mean(cell, "malicious_precision"), _mean(cell, "malicious_recall"))
            for (a, d), cell in cells.items() if a != "none" and _mean(cell, "malicious_recall") is not None]
    if bars:
        doc.add(Figure(_fig_name(suite, f"detection_{title}"), figs.detection_bars(bars, f"{suite}: {title}"),
                       "Malicious-client detection precision and recall per defense (mean over seeds)."))


def _role_rows(cells: dict[tuple[str, str], list[RunRecord]]) -> list[list[str]]:
    rows = []
    for (attack, defense), cell in cells.items():
        roles = list(dict.fromkeys(role for r in cell for role in (r.metrics.get("detection") or {})))
        for role in roles:
            per = [r.metrics["detection"][role] for r in cell if role in (r.metrics.get("detection") or {})]
            if not any(p.get("support") or p.get("predicted") for p in per):
                continue  # a role no client had and no client was predicted as
            rows.append([attack, defense, role, str(per[0].get("support", "")),
                         _fmt_values([p.get("precision") for p in per], _num(2)),
                         _fmt_values([p.get("recall") for p in per], _num(2))])
    return rows


def _curve(label: str, cell: list[RunRecord]) -> figs.Curve | None:
    series = [dict((int(x), y) for x, y in r.metrics.get("accuracy_curve") or [] if y is not None) for r in cell]
    rounds = sorted(set.intersection(*(set(s) for s in series))) if series else []
    if not rounds:
        return None
    values = np.array([[s[x] for x in rounds] for s in series], dtype=float)
    return figs.Curve(label, rounds, values.mean(0).tolist(), values.std(0).tolist())


# --------------------------------------------------------------------- privacy–utility


def _privacy_utility_points(privacy: dict[str, list[RunRecord]],
                            robustness: dict[str, list[RunRecord]]) -> list[figs.Point]:
    utility: dict[str, list[float]] = {}
    for runs in robustness.values():
        for r in runs:
            if r.meta.get("attack_label") == "none" and r.metrics.get("final_accuracy") is not None:
                utility.setdefault(r.meta["defense_label"], []).append(r.metrics["final_accuracy"])
    points = []
    for runs in privacy.values():
        for (attack, defense), cell in _cells(runs).items():
            psnr = _mean(cell, "psnr")
            acc = statistics.fmean(utility[defense]) if defense in utility else _mean(cell, "accuracy")
            if psnr is not None and acc is not None:
                points.append(figs.Point(defense, attack, acc, psnr))
    return points


# --------------------------------------------------------------------- helpers


def _groups(runs: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs sharing a block and its grid setting (they differ only in attack, defense, seed)."""
    out: dict[str, list[RunRecord]] = {}
    for r in runs:
        title = r.meta.get("block_label", r.task) + (f" [{r.meta['setting']}]" if r.meta.get("setting") else "")
        out.setdefault(title, []).append(r)
    return out


def _cells(runs: list[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    out: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        out.setdefault((r.meta.get("attack_label", "?"), r.meta.get("defense_label", "?")), []).append(r)
    return out


def _matrix(runs: list[RunRecord], metric: str, fmt: Callable[[float], str], caption: str) -> Table:
    cells = _cells(runs)
    attacks = list(dict.fromkeys(a for a, _ in cells))
    defenses = list(dict.fromkeys(d for _, d in cells))
    rows = [[a] + [_stat(cells[(a, d)], metric, fmt) if (a, d) in cells else "" for d in defenses] for a in attacks]
    return Table(["attack \\ defense", *defenses], rows, caption)


def _values(cell: Sequence[RunRecord], metric: str) -> list[float]:
    out = []
    for r in cell:
        v = r.metrics.get(metric)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def _mean(cell: Sequence[RunRecord], metric: str) -> float | None:
    vals = _values(cell, metric)
    return statistics.fmean(vals) if vals else None


def _stat(cell: Sequence[RunRecord], metric: str, fmt: Callable[[float], str]) -> str:
    return _fmt_values([r.metrics.get(metric) for r in cell], fmt)


def _epsilon(cell: Sequence[RunRecord], adjacency: str) -> str:
    """ε under ``adjacency`` (``metrics["epsilon_by_adjacency"]``; absent in runs stored before it)."""
    return _fmt_values([(r.metrics.get("epsilon_by_adjacency") or {}).get(adjacency) for r in cell], _num(2))


def _fmt_values(values: Sequence[Any], fmt: Callable[[float], str]) -> str:
    vals = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    if not vals:
        return "–"
    text = fmt(statistics.fmean(vals))
    if len(vals) > 1:
        text += " ± " + fmt(statistics.stdev(vals)).rstrip("%").strip()
    if len(vals) < len(values):
        text += f" ({len(vals)}/{len(values)})"
    return text


def _num(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{digits}f}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _fig_name(suite: str, what: str) -> str:
    """A short, file-system-safe, collision-free name: suite, figure kind, digest of the title."""
    kind = what.split("_", 1)[0]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{suite}_{kind}")
    digest = hashlib.sha1(f"{suite}/{what}".encode()).hexdigest()[:8]
    return f"{safe[:60]}_{digest}.png"
