"""``fedarena report DIR``: tables and figures from an output folder's store.

Per suite: for each block setting its settings (data, model, federation, attack
iterations) and the warnings its runs raised, then a privacy table and a robustness table
(attack × defense in the suite file's order, mean ± std over seeds, with a detail table of
every metric), accuracy-per-round curves, malicious-client detection precision/recall per
role, reconstruction grids, and the privacy–utility scatter (attack PSNR against the
accuracy FedAvg reaches under the same defense: the suite's attack-free robustness runs on
the *same dataset and model*, matched by the defense's name and parameters; no pair, no plot).

What the numbers mean is stated where they are shown (every table has a caption):
PSNR is summarised by ``fedarena.benchmarks.metrics.privacy.summarize_psnr`` (exact reconstructions
have infinite PSNR: means are over the finite images and say how many were exact, medians
and IQRs count them as ∞); detection is "–" (not applicable) without attackers and for a
defense that excluded no client in any run of the block (FedAvg, the coordinate-wise
median), and a role no client has is no row; a ``dlg`` run whose labels came from iDLG's
analytic rule (one image, ``labels="auto"``) is labelled iDLG.

Writes ``DIR/report.md`` (figures in ``DIR/report_files/``) and a self-contained
``DIR/report.html``; every file is written atomically. The store is opened read-only:
the report files are the only thing written (``ReportWriteError`` when the folder is
read-only). An artefact that cannot be used (a path leaving the folder, a file that is
missing, truncated, not a weights-only tensor file, or shaped unlike a reconstruction)
is skipped and listed under "Skipped artefacts"; it never aborts the report.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
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

from fedarena.benchmarks.figures import report as figs
from fedarena.benchmarks.figures.plots import GridRow, reconstruction_grid
from fedarena.benchmarks.metrics.privacy import PSNRSummary, summarize_psnr

from .atomic import write_atomic
from .report_render import Bullets, Document, Figure, Heading, Paragraph, Table, to_html, to_markdown
from .store import STORE_NAME, RunRecord, Store, artefact_path
from .suite import attack_label, component_label
from .tasks.privacy import RECONSTRUCTION

FIGURES_DIR = "report_files"
MARKDOWN = "report.md"
HTML = "report.html"
GRID_IMAGES = 8
PER_IMAGE_MAX = 8  # cells with at most this many images list every image's PSNR
LPIPS_FULL_SIZE = 64  # LPIPS-AlexNet is much less discriminative on smaller images
IDLG = " (iDLG: analytic label)"
HONEST, UNRELIABLE, MALICIOUS = "honest", "unreliable", "malicious"
EPSILON_CAPTION = ("ε under add/remove adjacency (sensitivity C) and under replace-one adjacency (sensitivity 2C, "
                   "the usual local-DP notion); – = not a DP defense, or that adjacency not accounted (DP-SGD and "
                   "central DP account add/remove only).")
CELL_CAPTION = ("Cells: mean ± sample standard deviation over seeds (no ± with one seed); “(k/n)” after a value: "
                "only k of the n seeds gave a defined value and the mean is over those; – = not defined or not "
                "applicable.")
PSNR_CAPTION = ("PSNR in dB (higher = more leakage). An exact reconstruction has zero error and infinite PSNR (∞): "
                "means are over the finite images, and “+k ∞” counts the exact images they leave out; median "
                "[interquartile range, 25th–75th percentile] is over every image of every seed, ∞ ranking highest "
                "(linear interpolation between neighbouring images, ∞ next to ∞).")


class ReportWriteError(RuntimeError):
    """The report files cannot be written into the folder (read-only, full)."""


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    figures: Path


def write_report(folder: str | Path, formats: Sequence[str] = ("png",)) -> ReportPaths:
    """Build the report of every suite stored in ``folder`` and write it there.

    ``formats`` beyond ``png`` ("pdf", "svg") also write each chart (accuracy curves,
    detection bars, privacy-utility) in those formats beside its PNG, for a paper;
    reconstruction grids in any format come from ``fedarena figure``.
    """
    folder = Path(folder)
    unknown = sorted(set(formats) - {"png", "pdf", "svg"})
    if unknown:
        raise ValueError(f"report formats: {', '.join(unknown)} not one of png, pdf, svg")
    with Store(folder / STORE_NAME, readonly=True) as store:
        doc = build_report(store, folder)
    try:
        for fig in doc.figures:
            write_atomic(folder / FIGURES_DIR / fig.name, fig.png)
            for fmt in (f for f in formats if f != "png" and fig.render is not None):
                write_atomic(folder / FIGURES_DIR / Path(fig.name).with_suffix(f".{fmt}").name, fig.render(fmt))
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
    doc.add(Table(["suite", "runs", "ok", "failed", "pending", "run time"], overview,
                  "Runs per suite: planned, finished (ok), failed, not run yet (pending); run time = the stored "
                  "runs' wall times added up (runs executed in parallel overlap in real time)."))
    doc.add(Paragraph(_code_line(list(records.values()))))
    for s in suites:
        planned = store.planned(s["suite"])
        runs = [records[rid] for rid, _, _ in planned if rid in records]
        _suite_section(doc, s, runs, _Order.of(planned), folder, skipped)
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


# --------------------------------------------------------------------- labels and order


def _title(meta: dict[str, Any], task: str) -> str:
    """A block setting's title: its label, plus the grid setting when the block is a grid."""
    return meta.get("block_label", task) + (f" [{meta['setting']}]" if meta.get("setting") else "")


def _attack_key(config: dict[str, Any], meta: dict[str, Any]) -> str:
    """The attack's label, with its parameters when a suite label hides them (two settings never merge)."""
    return _with_params(meta.get("attack_label", "?"), attack_label(config["attack"]))


def _defense_key(config: dict[str, Any], meta: dict[str, Any]) -> str:
    return _with_params(meta.get("defense_label", "?"), component_label(config["defense"]))


def _with_params(label: str, generated: str) -> str:
    """A suite's own label gets the generated one (name and parameters) beside it. Quotes are
    ignored in the comparison: a stored configuration's mapping keys are JSON strings
    (``pairs={'1': 7}``) where the suite's label was made from integers (``pairs={1: 7}``)."""
    return label if label.replace("'", "") == generated.replace("'", "") else f"{label} [{generated}]"


@dataclass(frozen=True)
class _Order:
    """Attack and defense labels per block setting in the suite file's order: taken from the
    planned runs (failed and pending ones included), so a missing run never reorders columns."""

    attacks: dict[str, dict[str, None]]
    defenses: dict[str, dict[str, None]]

    @classmethod
    def of(cls, planned: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> _Order:
        attacks: dict[str, dict[str, None]] = {}
        defenses: dict[str, dict[str, None]] = {}
        for _, config, meta in planned:
            title = _title(meta, config.get("task", "?"))
            attacks.setdefault(title, {})[_attack_key(config, meta)] = None
            defenses.setdefault(title, {})[_defense_key(config, meta)] = None
        return cls(attacks, defenses)

    def sort(self, title: str, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        a = list(self.attacks.get(title, {}))
        d = list(self.defenses.get(title, {}))

        def position(key: tuple[str, str]) -> tuple[int, int]:
            return (a.index(key[0]) if key[0] in a else len(a), d.index(key[1]) if key[1] in d else len(d))

        return sorted(keys, key=position)  # stable: unplanned keys keep their run order

    def columns(self, title: str, cells: Iterable[tuple[str, str]]) -> list[str]:
        """The defenses that have a cell, in the suite's order."""
        present = dict.fromkeys(d for _, d in cells)
        return [d for _, d in self.sort(title, (("", d) for d in present))]


def _suite_section(doc: Document, suite: dict[str, Any], runs: list[RunRecord], order: _Order, folder: Path,
                   skipped: list[list[str]]) -> None:
    name = suite["suite"]
    doc.add(Heading(f"Suite {name}"))
    if suite["description"]:
        doc.add(Paragraph(suite["description"].strip()))
    ok = [r for r in runs if r.status == "ok"]
    privacy = _groups(r for r in ok if r.task == "privacy")
    robustness = _groups(r for r in ok if r.task == "robustness")
    for title, group in privacy.items():
        _privacy_group(doc, name, title, group, order, folder, skipped)
    for title, group in robustness.items():
        _robustness_group(doc, name, title, group, order)
    if privacy and robustness:
        _privacy_utility(doc, name, privacy, robustness, order)
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        doc.add(Heading("Failed runs", 3))
        doc.add(Table(["run", "attack", "defense", "seed", "error"],
                      [[r.run_id, r.meta.get("attack_label", ""), r.meta.get("defense_label", ""),
                        str(r.config.get("seed")), (r.error or "").splitlines()[0][:200]] for r in failed],
                      "The first line of each failed run's error (`fedarena show RUN` prints all of it)."))
    if not ok and not failed:
        doc.add(Paragraph("No run of this suite has finished yet."))


# --------------------------------------------------------------------- block settings


def _settings(runs: list[RunRecord]) -> list[str]:
    """What every run of a block setting shares (they differ only in attack, defense and seed)."""
    config = runs[0].config
    fed = config.get("federation") or {}
    out = []
    if config.get("dataset"):
        out.append(f"data: {_data_text(config['dataset'])}")
        if config.get("test_dataset"):
            out[0] += f"; test: {_data_text(config['test_dataset'])}"
    if config.get("model"):
        out.append(f"model: {component_label(config['model'])}")
    if fed:
        rounds = (f"federation run up to the attack round {config['attack_round']}" if "attack_round" in config
                  else f"{fed.get('rounds')} rounds")
        sampled = f", {fed['clients_per_round']} sampled per round" if fed.get("clients_per_round") else ""
        protocol = fed.get("protocol") or {"name": "fedavg", "params": {}}
        out.append(f"federation: {fed.get('clients')} clients{sampled}, {rounds}, partition "
                   f"{component_label(fed.get('partition') or {'name': 'iid'})}, protocol {component_label(protocol)}"
                   + (f", server lr {fed['server_lr']:g}" if fed.get("server_lr", 1.0) != 1.0 else ""))
        out.append(f"local training: {_local_text(fed.get('local') or {})}")
    if "attacked_clients" in config:
        per = runs[0].metrics.get("images_per_client")
        images = f"; images per client: {', '.join(map(str, per))}" if isinstance(per, list) else ""
        out.append(f"attacked: clients {', '.join(map(str, config['attacked_clients']))}{images}")
    if isinstance(config.get("threat_model"), dict):
        granted = sorted(k.removesuffix("_known") for k, v in config["threat_model"].items() if v)
        out.append(f"threat model grants: {', '.join(granted) or 'nothing beyond the update and the model'}")
    facts = _attack_facts(runs)
    if facts:
        out.append(f"attacks: {facts}")
    if config.get("unreliable"):
        u = config["unreliable"]
        plural = "s" * (u["clients"] != 1)
        out.append(f"unreliable: {u['clients']} client{plural}, {component_label(u['corruption'])} on "
                   f"{u.get('data_fraction', 1.0):.0%} of their data"
                   + (f", {u['train_fraction']:.0%} of it kept" if u.get("train_fraction", 1.0) < 1.0 else ""))
    out.append(f"seeds: {', '.join(str(s) for s in sorted({r.config.get('seed') for r in runs}, key=str))}")
    return out


def _data_text(spec: dict[str, Any]) -> str:
    params = f" {component_label({'name': '', 'params': spec['params']})}" if spec.get("params") else ""
    text = f"{spec['name']}{params}, {spec.get('split', 'train')} split"
    if spec.get("indices") is not None:
        shown = ", ".join(map(str, spec["indices"][:10])) + (", …" if len(spec["indices"]) > 10 else "")
        return f"{text}, images {shown} ({len(spec['indices'])} images)"
    if spec.get("size") is not None:
        return f"{text}, {spec['size']} images (seeded random subset)"
    return f"{text}, the whole split"


def _local_text(local: dict[str, Any]) -> str:
    work = ("one gradient" if local.get("algorithm") == "fedsgd"
            else f"{local['steps']} steps" if local.get("steps") else f"{local.get('epochs', 1)} epoch(s)")
    parts = [str(local.get("algorithm")), work, f"batch {local.get('batch_size')}",
             f"{local.get('optimizer', 'sgd')} lr {local.get('lr', 0):g}"]
    parts += [f"{name.replace('_', ' ')} {local[name]:g}" for name in ("momentum", "weight_decay") if local.get(name)]
    return ", ".join(parts + [f"model in {local.get('model_mode')} mode"])


def _attack_facts(runs: list[RunRecord]) -> str:
    """Per attack: its iterations and how it got the labels (what its reconstructions recorded)."""
    facts: dict[str, tuple[set[str], set[str]]] = {}
    for r in runs:
        key = _attack_key(r.config, r.meta)
        its, methods = facts.setdefault(key, (set(), set()))
        for rec in r.metrics.get("reconstructions") or []:
            if isinstance(rec, dict):
                if (rec.get("config") or {}).get("iterations") is not None:
                    its.add(str(rec["config"]["iterations"]))
                if rec.get("label_method"):
                    methods.add(str(rec["label_method"]))
    parts = []
    for key, (its, methods) in facts.items():
        bits = ([f"{'/'.join(sorted(its))} iterations"] if its else []) + \
               ([f"labels: {'/'.join(sorted(methods))}"] if methods else [])
        if bits:
            parts.append(f"{key} — {', '.join(bits)}")
    return "; ".join(parts)


def _settings_block(doc: Document, runs: list[RunRecord]) -> None:
    settings = _settings(runs)
    if settings:
        doc.add(Bullets(settings))
    _warnings(doc, runs)


def _warnings(doc: Document, runs: list[RunRecord]) -> None:
    """The warnings the block's runs raised (data-size warnings among them), with how many runs raised each."""
    counts: dict[str, int] = {}
    for r in runs:
        for w in dict.fromkeys(r.metrics.get("warnings") or []):
            counts[str(w)] = counts.get(str(w), 0) + 1
    if counts:
        doc.add(Paragraph("Warnings raised by this block's runs:"))
        doc.add(Bullets([f"{w} ({n} of {len(runs)} runs)" for w, n in counts.items()]))


# --------------------------------------------------------------------- privacy


def _privacy_group(doc: Document, suite: str, title: str, runs: list[RunRecord], order: _Order, folder: Path,
                   skipped: list[list[str]]) -> None:
    doc.add(Heading(f"Privacy — {title}", 3))
    _settings_block(doc, runs)
    cells = _cells(runs, title, order)
    idlg = {a: _idlg_suffix([r for (a2, _), cell in cells.items() if a2 == a for r in cell]) for a, _ in cells}
    doc.add(_matrix(cells, order.columns(title, cells), lambda cell: _psnr_cell(_psnr(cell)),
                    "Attack PSNR in dB (higher = more leakage): mean ± std over seeds of each run's mean over its "
                    "images; median [interquartile range] over every image of every seed (∞ = exact "
                    "reconstruction; see the next table's caption).", idlg))
    grids = _reconstruction_rows(runs, folder, skipped)
    per_image = max(len(_pooled_psnr(cell)) for cell in cells.values()) <= PER_IMAGE_MAX
    rows = []
    for (attack, defense), cell in cells.items():
        p = _psnr(cell)
        row = [attack + idlg[attack], defense, _psnr_mean(p), _psnr_median(p), f"{p[1].exact}/{p[1].images}"]
        if per_image:
            row.append(", ".join(_num_inf(v, 2) for v in _pooled_psnr(cell)) or "–")
        rows.append(row + [_stat(cell, "ssim", _num(3)), _stat(cell, "lpips", _num(3)),
                           _stat(cell, "label_accuracy", _pct), _stat(cell, "epsilon", _num(2)),
                           _epsilon(cell, "replace"), _stat(cell, "attack_seconds", _num(1)), str(len(cell))])
    header = ["attack", "defense", "PSNR mean (dB)", "PSNR median [IQR] (dB)", "exact (∞) / images"]
    header += ["PSNR per image (dB)"] if per_image else []
    header += ["SSIM", "LPIPS", "label accuracy (%)", "ε add/remove", "ε replace", "attack time (s)", "seeds"]
    lpips_note = _lpips_size_note(runs, grids)
    doc.add(Table(header, rows, " ".join([
        PSNR_CAPTION, "SSIM: structural similarity, 1 = identical (Gaussian window, on pixels in [0, 1]).",
        "LPIPS: learned perceptual distance (AlexNet, v0.1 heads), 0 = identical, lower = closer"
        + (f"; {lpips_note}" if lpips_note else "") + ".",
        "Label accuracy: share of the batch's labels the attack recovered (as multisets).",
        "Attack time: the attack's wall time in seconds, summed over the attacked clients of a run.",
        "Images are matched to the ground truth (Hungarian, on MSE) before scoring.", EPSILON_CAPTION,
        CELL_CAPTION])))
    notes = sorted({n for r in runs for n in [r.metrics.get("lpips_note")] if n})
    if notes:
        doc.add(Paragraph("LPIPS: " + "; ".join(notes)))
    for i, (truth, rows_) in enumerate(grids):
        png = _grid_png(truth, rows_, f"{suite}: {title}")
        doc.add(Figure(_fig_name(suite, f"reconstructions_{title}_{i}"), png,
                       "Ground truth (top) and each attack's reconstruction under each defense (first seed); "
                       "PSNR under each image."))


def _psnr(cell: Sequence[RunRecord]) -> tuple[list[float | None], PSNRSummary]:
    """Each run's mean PSNR over its finite images, and the summary over every image of the cell."""
    means: list[float | None] = []
    for r in cell:
        per = r.metrics.get("psnr_per_image")
        if isinstance(per, list) and per:
            means.append(summarize_psnr(per).mean)
        else:  # a run stored without per-image values: its mean as stored
            means.append(r.metrics.get("psnr"))
    return means, summarize_psnr(_pooled_psnr(cell))


def _pooled_psnr(cell: Sequence[RunRecord]) -> list[float]:
    """Every image's PSNR of every run of the cell (∞ for an exact reconstruction, stored as null)."""
    out: list[float] = []
    for r in cell:
        per = r.metrics.get("psnr_per_image")
        if isinstance(per, list):
            out += [math.inf if v is None else float(v) for v in per]
    return out


def _psnr_mean(p: tuple[list[float | None], PSNRSummary]) -> str:
    means, summary = p
    text = _fmt_values(means, _num(2))
    return text + (f" (+{summary.exact} ∞)" if summary.exact else "")


def _psnr_median(p: tuple[list[float | None], PSNRSummary]) -> str:
    s = p[1]
    if s.median is None:
        return "–"
    return f"{_num_inf(s.median, 2)} [{_num_inf(s.q1, 2)}–{_num_inf(s.q3, 2)}]"


def _psnr_cell(p: tuple[list[float | None], PSNRSummary]) -> str:
    median = _psnr_median(p)
    return _psnr_mean(p) + ("" if median == "–" else f"; median {median}")


def _idlg_suffix(runs: Sequence[RunRecord]) -> str:
    """``dlg`` whose every upload got iDLG's analytic label (one image, ``labels="auto"``) is iDLG;
    a mix says on how many uploads."""
    if not runs or runs[0].config.get("attack", {}).get("name") != "dlg":
        return ""
    methods = [rec.get("label_method") for r in runs for rec in r.metrics.get("reconstructions") or []
               if isinstance(rec, dict)]
    hits = sum(m == "idlg" for m in methods)
    if not hits:
        return ""
    return IDLG if hits == len(methods) else f" (iDLG analytic label on {hits} of {len(methods)} uploads)"


def _lpips_size_note(runs: list[RunRecord], grids: list[tuple[torch.Tensor, dict[str, GridRow]]]) -> str:
    """A warning when LPIPS values are shown for images smaller than 64×64 (sizes from the artefacts)."""
    if not any(_values([r], "lpips") for r in runs):
        return ""
    sizes = sorted({tuple(truth.shape[-2:]) for truth, _ in grids})
    small = [f"{h}×{w}" for h, w in sizes if min(h, w) < LPIPS_FULL_SIZE]
    if not small:
        return ""
    return (f"on these {', '.join(small)} images LPIPS is much less discriminative than at 64×64 and above "
            "(at 32×32, Gaussian noise of σ 0.2 scores only 0.058 and a 4× blur 0.26), so compare LPIPS only "
            "between runs at the same image size (images under 32 px are scored upsampled to 64 px on the short "
            "side)")


def _grid_png(truth: torch.Tensor, rows: dict[str, GridRow], title: str) -> bytes:
    """``fedarena.benchmarks.figures.reconstruction_grid`` (it writes a file) as PNG bytes."""
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

DETECTION_CAPTION = (
    "Detection scores the defense's verdict in the last round: a client is flagged when the defense excluded it "
    "(weight 0, or its upload was rejected) or, for a defense that labels clients (MUD-HoG), labelled it with a "
    "non-honest type. Per role — honest: precision = share of the clients the defense kept that are honest, "
    "recall = share of the honest clients it kept; an attack role (e.g. sign_flip) or unreliable: recall = share "
    "of that role's clients flagged (for a labelling defense: labelled with the role's type), precision = share of "
    "the clients given that type that have the role (labelling defenses only, else –); malicious = every attack "
    "role together: precision = share of the flagged clients that are malicious, recall = share of the malicious "
    "clients flagged. “clients” = the role's clients in the federation. Only roles that have clients are rows; "
    "defenses that excluded no client in any run of this block (FedAvg, the coordinate-wise median and other "
    "rules that keep every client) have no rows.")


def _robustness_group(doc: Document, suite: str, title: str, runs: list[RunRecord], order: _Order) -> None:
    doc.add(Heading(f"Robustness — {title}", 3))
    _settings_block(doc, runs)
    cells = _cells(runs, title, order)
    excluding = _excluding(cells)
    doc.add(_matrix(cells, order.columns(title, cells), lambda cell: _stat(cell, "final_accuracy", _pct),
                    "Final test accuracy (%, after the last round), mean ± std over seeds."))
    rows = []
    for (attack, defense), cell in cells.items():
        detects = defense in excluding and _attackers(cell[0]) > 0
        rows.append([attack, defense, _stat(cell, "final_accuracy", _pct), _stat(cell, "attack_success_rate", _pct),
                     _stat(cell, "malicious_precision", _num(2)) if detects else "–",
                     _stat(cell, "malicious_recall", _num(2)) if detects else "–",
                     _stat(cell, "epsilon", _num(2)), _epsilon(cell, "replace"), _stat(cell, "fl_seconds", _num(1)),
                     str(len(cell))])
    doc.add(Table(["attack", "defense", "accuracy (%)", "attack success (%)", "detection precision",
                   "detection recall", "ε add/remove", "ε replace", "training time (s)", "seeds"], rows, " ".join([
                       "Accuracy: on the test split after the last round.",
                       "Attack success: for targeted attacks, the share of source-class test images classified as "
                       "the attacker's target class (label flips) or of triggered test images classified as the "
                       "target (backdoors), mean over the targeted attacks; – for untargeted fedarena.attacks.",
                       "Detection precision/recall: of the malicious clients in the last round (defined under "
                       "the per-role table); – without attackers, or for a defense that excluded no client in any "
                       "run of this block (FedAvg, the coordinate-wise median).",
                       "Training time: wall time of the whole federated training (every round, with evaluation), "
                       "in seconds.", EPSILON_CAPTION, CELL_CAPTION])))
    roles = _role_rows({k: v for k, v in cells.items() if k[1] in excluding})
    if roles:
        doc.add(Table(["attack", "defense", "role", "clients", "precision", "recall"], roles,
                      f"{DETECTION_CAPTION} {CELL_CAPTION}"))
    curves = [c for c in (_curve(f"{a} / {d}", cell) for (a, d), cell in cells.items()) if c is not None]
    if curves:
        doc.add(Figure(_fig_name(suite, f"accuracy_{title}"), figs.accuracy_curves(curves, f"{suite}: {title}"),
                       "Test accuracy per round (mean over seeds, band = ±1 std).",
                       render=functools.partial(_render, figs.accuracy_curves, curves, f"{suite}: {title}")))
    several = len({a for (a, _), cell in cells.items() if _attackers(cell[0])}) > 1
    bars = [figs.Bars(f"{a} / {d}" if several else d, _mean(cell, "malicious_precision"),
                      _mean(cell, "malicious_recall"))
            for (a, d), cell in cells.items()
            if d in excluding and _attackers(cell[0]) and _mean(cell, "malicious_recall") is not None]
    if bars:
        doc.add(Figure(_fig_name(suite, f"detection_{title}"), figs.detection_bars(bars, f"{suite}: {title}"),
                       "Malicious-client detection precision and recall per defense (mean over seeds; defenses "
                       "that excluded no client in this block are left out).",
                       render=functools.partial(_render, figs.detection_bars, bars, f"{suite}: {title}")))


def _render(chart: Callable[..., bytes], data: Any, title: str, fmt: str) -> bytes:
    """One report chart in another format (``Figure.render``)."""
    return chart(data, title, format=fmt)


def _attackers(run: RunRecord) -> int:
    """Malicious clients of a run (the attack groups' sizes)."""
    return sum(int(g.get("clients") or 0) for g in (run.config.get("attack") or {}).get("groups") or [])


def _excluding(cells: dict[tuple[str, str], list[RunRecord]]) -> set[str]:
    """Defenses that flagged some client in the last round of some run of the block.

    The others (FedAvg, the coordinate-wise median, trimmed mean…) keep every client: they
    have no detection to score, and showing their 0.00 recall would read as a failed detector."""
    out = set()
    for (_, defense), cell in cells.items():
        for r in cell:
            detection = r.metrics.get("detection") or {}
            if any((v or {}).get("predicted") for role, v in detection.items() if role != HONEST):
                out.add(defense)
    return out


def _role_rows(cells: dict[tuple[str, str], list[RunRecord]]) -> list[list[str]]:
    rows = []
    for (attack, defense), cell in cells.items():
        counts = _role_counts(cell[0])
        roles = list(dict.fromkeys(role for r in cell for role in (r.metrics.get("detection") or {})))
        for role in sorted(roles, key=lambda x: (x == MALICIOUS, x not in (HONEST, UNRELIABLE), x)):
            clients = counts.get(role)
            per = [(r.metrics.get("detection") or {}).get(role) or {} for r in cell]
            if clients is None:  # a store without role counts: the last round's clients of the role
                clients = max(int(p.get("support") or 0) for p in per)
            if not clients:
                continue  # a role no client has is no row
            rows.append([attack, defense, role, str(clients), _fmt_values([p.get("precision") for p in per], _num(2)),
                         _fmt_values([p.get("recall") for p in per], _num(2))])
    return rows


def _role_counts(run: RunRecord) -> dict[str, int]:
    """Clients per role as the run recorded them, with ``malicious`` = every attack role together."""
    roles = run.metrics.get("roles")
    if not isinstance(roles, dict):
        return {}
    counts = {str(k): int(v) for k, v in roles.items()}
    counts[MALICIOUS] = sum(v for k, v in counts.items() if k not in (HONEST, UNRELIABLE))
    return counts


def _curve(label: str, cell: list[RunRecord]) -> figs.Curve | None:
    series = [dict((int(x), y) for x, y in r.metrics.get("accuracy_curve") or [] if y is not None) for r in cell]
    rounds = sorted(set.intersection(*(set(s) for s in series))) if series else []
    if not rounds:
        return None
    values = np.array([[s[x] for x in rounds] for s in series], dtype=float)
    return figs.Curve(label, rounds, values.mean(0).tolist(), values.std(0).tolist())


# --------------------------------------------------------------------- privacy–utility


def _privacy_utility(doc: Document, suite: str, privacy: dict[str, list[RunRecord]],
                     robustness: dict[str, list[RunRecord]], order: _Order) -> None:
    """Pair each privacy block with the clean runs (no attacker, no unreliable client) of the robustness
    blocks of the same dataset and model;
    say which privacy blocks have none instead of plotting a pair of unrelated models."""
    utility = {t: [r for r in runs if not _attackers(r) and not r.config.get("unreliable")]
               for t, runs in robustness.items()}
    utility = {t: runs for t, runs in utility.items() if runs}
    doc.add(Heading("Privacy–utility", 3))
    unpaired = []
    for p_title, p_runs in privacy.items():
        same = [t for t, runs in utility.items() if _data_model(runs[0]) == _data_model(p_runs[0])]
        if not same:
            unpaired.append(f"“{p_title}” ({_data_model_text(p_runs[0])})")
        for u_title in same:
            _privacy_utility_pair(doc, suite, p_title, p_runs, u_title, utility[u_title], order)
    if unpaired:
        doc.add(Paragraph("No privacy–utility pair for the privacy block(s) " + ", ".join(unpaired) + ": no "
                          "clean robustness run (no attacker, no unreliable client) of this suite uses the same "
                          "dataset and model, and PSNR and accuracy are only paired when they come from the same "
                          "dataset and model."))


def _privacy_utility_pair(doc: Document, suite: str, p_title: str, p_runs: list[RunRecord], u_title: str,
                          u_runs: list[RunRecord], order: _Order) -> None:
    accuracy: dict[str, list[RunRecord]] = {}
    for r in u_runs:
        accuracy.setdefault(_defense_identity(r.config["defense"]), []).append(r)
    rows, points, not_plotted = [], [], []
    for (attack, defense), cell in _cells(p_runs, p_title, order).items():
        util = accuracy.get(_defense_identity(cell[0].config["defense"]))
        if not util:
            continue
        psnr = _psnr(cell)
        acc = _mean(util, "final_accuracy")
        rows.append([attack, defense, _psnr_median(psnr), _psnr_mean(psnr), _stat(util, "final_accuracy", _pct),
                     f"{len(cell)} / {len(util)}"])
        median = psnr[1].median
        if acc is not None and median is not None and math.isfinite(median):
            points.append(figs.Point(defense, attack, acc, median))
        elif acc is not None and median is not None:
            not_plotted.append(f"{attack} / {defense}")
    if not rows:
        doc.add(Paragraph(f"No privacy–utility pair between “{p_title}” and “{u_title}”: they share the dataset "
                          "and model but no defense."))
        return
    caption = (f"Privacy from “{p_title}”, utility from “{u_title}” (same dataset and model: "
               f"{_data_model_text(p_runs[0])}; each block's federation as listed under it). PSNR: median [IQR] "
               "over every image of every seed and mean (dB; ∞ = exact reconstruction); accuracy: final test "
               "accuracy of the clean runs (no attacker, no unreliable client) under the same defense (same name "
               "and parameters; no defense pairs with fedavg). seeds: privacy / utility runs.")
    doc.add(Table(["attack", "defense", "PSNR median [IQR] (dB)", "PSNR mean (dB)", "accuracy (%)", "seeds"],
                  rows, caption))
    if points:
        doc.add(Figure(_fig_name(suite, f"privacy_utility_{p_title}_{u_title}"),
                       figs.privacy_utility(points, f"{suite}: privacy vs utility"),
                       f"Median attack PSNR (dB) over the images of “{p_title}” against the final test accuracy "
                       f"of “{u_title}” under the same defense (mean over seeds)"
                       + (f"; not plotted (median ∞): {', '.join(not_plotted)}" if not_plotted else "") + ".",
                       render=functools.partial(_render, figs.privacy_utility, points, f"{suite}: privacy vs utility")))


def _data_model(run: RunRecord) -> tuple[str, str]:
    """What must agree for privacy and utility to be paired: the dataset (name and its loader
    parameters; the split and the subset may differ) and the model (name and parameters)."""
    d, m = run.config["dataset"], run.config["model"]
    return (json.dumps([d["name"], d.get("params") or {}], sort_keys=True),
            json.dumps([m["name"], m.get("params") or {}], sort_keys=True))


def _data_model_text(run: RunRecord) -> str:
    d = run.config["dataset"]
    return f"{component_label({'name': d['name'], 'params': d.get('params') or {}})} / " \
           f"{component_label(run.config['model'])}"


def _defense_identity(defense: dict[str, Any]) -> str:
    """A defense by name and parameters (its label aside); ``none`` and a plain ``fedavg`` are both no defense."""
    params = defense.get("params") or {}
    name = "none" if defense["name"] == "fedavg" and not params else defense["name"]
    return json.dumps([name, params], sort_keys=True)


# --------------------------------------------------------------------- helpers


def _groups(runs: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs sharing a block and its grid setting (they differ only in attack, defense, seed)."""
    out: dict[str, list[RunRecord]] = {}
    for r in runs:
        out.setdefault(_title(r.meta, r.task), []).append(r)
    return out


def _cells(runs: list[RunRecord], title: str, order: _Order) -> dict[tuple[str, str], list[RunRecord]]:
    """Runs by (attack, defense), in the suite file's order of attacks and fedarena.defenses."""
    out: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        out.setdefault((_attack_key(r.config, r.meta), _defense_key(r.config, r.meta)), []).append(r)
    return {k: out[k] for k in order.sort(title, out)}


def _matrix(cells: dict[tuple[str, str], list[RunRecord]], defenses: list[str],
            fmt: Callable[[list[RunRecord]], str], caption: str, suffix: dict[str, str] | None = None) -> Table:
    """Attacks (in ``cells``' order) × ``defenses`` (the columns, in the suite's order)."""
    attacks = list(dict.fromkeys(a for a, _ in cells))
    rows = [[a + (suffix or {}).get(a, "")] + [fmt(cells[(a, d)]) if (a, d) in cells else "" for d in defenses]
            for a in attacks]
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


def _num_inf(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    return "∞" if math.isinf(value) else f"{value:.{digits}f}"


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
