"""``fedarena show RUN_ID``: find a run in an output folder (or under ``runs/``) and print it.

A planned run without a stored result is reported as pending; ``fedarena runs DIR`` lists
every id a folder plans or holds.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .store import STORE_NAME, RunRecord, Store, artefact_path

DEFAULT_ROOT = Path("runs")


def find_run(run_id: str, folder: Path | None = None) -> tuple[RunRecord, Path]:
    """The run ``run_id`` (or unique prefix) in ``folder``'s store, or in any store under ``runs/``."""
    if folder is not None:
        stores = [folder / STORE_NAME]
        if not stores[0].is_file():
            raise FileNotFoundError(f"{folder} has no {STORE_NAME}")
    else:
        stores = sorted(DEFAULT_ROOT.glob(f"**/{STORE_NAME}"))
        if not stores:
            raise FileNotFoundError(f"no {STORE_NAME} under {DEFAULT_ROOT}/; pass --out DIR")
    found: list[tuple[RunRecord, Path]] = []
    for path in stores:
        with Store(path, readonly=True) as store:
            try:
                found.append((store.get(run_id), path.parent))
            except KeyError as exc:
                if "matches" in str(exc):
                    raise
    if not found:
        raise KeyError(_not_stored(run_id, stores))
    if len({r.run_id for r, _ in found}) > 1:
        raise KeyError(f"{run_id!r} matches runs in several folders: "
                       f"{', '.join(f'{r.run_id} ({f})' for r, f in found)}; pass --out DIR")
    return found[0]


def _not_stored(run_id: str, stores: list[Path]) -> str:
    """Why ``run_id`` has no record: planned but not finished (pending), or unknown; and what lists the ids."""
    for path in stores:
        with Store(path, readonly=True) as store:
            for suite in store.suites():
                planned = [rid for rid, _, _ in store.planned(suite["suite"]) if rid.startswith(run_id)]
                if len(planned) == 1:
                    return (f"run {planned[0]} of suite {suite['suite']} in {path.parent} is pending: planned, "
                            "with no stored result yet (not run, still running, or interrupted)")
    folder = str(stores[0].parent) if len(stores) == 1 else "DIR"
    return f"no run {run_id!r} in {', '.join(str(s) for s in stores)}; `fedarena runs {folder}` lists the run ids"


def format_run(record: RunRecord, folder: Path, as_json: bool = False) -> str:
    """The run as readable text (or as its stored JSON record)."""
    if as_json:
        return json.dumps(asdict(record), indent=2, sort_keys=True)
    metrics = {k: v for k, v in record.metrics.items() if not isinstance(v, list | dict)}
    lines = [
        f"run {record.run_id}  suite {record.suite}  task {record.task}  status {record.status}",
        f"attack: {record.meta.get('attack_label')}   defense: {record.meta.get('defense_label')}   "
        f"seed: {record.config.get('seed')}",
        f"block: {record.meta.get('block_label')}" + (f" [{record.meta['setting']}]" if record.meta.get("setting")
                                                        else ""),
        f"time: {record.seconds:.1f} s on {record.worker}" if record.seconds is not None else "time: -",
        f"code: {record.provenance.describe() if record.provenance else 'not recorded (stored by an older FedArena)'}",
        f"device: {record.device or 'not recorded'}",
        "",
        "metrics:",
        *(f"  {k}: {_fmt(v)}" for k, v in sorted(metrics.items())),
        "",
        "artefacts:",
        *(f"  {name}: {_artefact(folder, path)}" for name, path in sorted(record.artefacts.items())),
        "",
        "config:",
        json.dumps(record.config, indent=2, sort_keys=True),
    ]
    if record.error:
        lines += ["", "error:", record.error.rstrip()]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _artefact(folder: Path, path: str) -> str:
    try:
        return str(artefact_path(folder, path))
    except ValueError as exc:
        return f"(refused: {exc})"
