"""``fedarena runs DIR``: every run a result folder plans or holds, with its labels and status.

A run is ``ok`` or ``failed`` when the store holds it, ``pending`` when a suite registered in
the folder plans it and no result is stored yet (not started, running, or interrupted).
The ids are what ``fedarena show RUN_ID --out DIR`` takes; the labels are the ones the
report uses (block, attack, defense, seed). Read-only on the store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .store import STORE_NAME, Store

STATUSES = ("ok", "failed", "pending")


@dataclass(frozen=True)
class RunLine:
    """One run of a result folder, as ``fedarena runs`` lists it."""

    suite: str
    run_id: str
    status: str  # ok, failed or pending
    block: str
    setting: str
    attack: str
    defense: str
    seed: Any
    seconds: float | None


def list_runs(folder: str | Path, *, status: str | None = None) -> list[RunLine]:
    """Planned runs of every suite in the folder (suite order), then stored runs no plan lists."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    with Store(Path(folder) / STORE_NAME, readonly=True) as store:
        stored = {r.run_id: r for r in store.runs()}
        lines: list[RunLine] = []
        listed: set[str] = set()
        for suite in store.suites():
            for run_id, config, meta in store.planned(suite["suite"]):
                r = stored.get(run_id)
                lines.append(_line(suite["suite"], run_id, r.status if r else "pending", meta, config,
                                   r.seconds if r else None))
                listed.add(run_id)
        for r in stored.values():
            if r.run_id not in listed:  # stored by a plan since replaced (a suite that dropped runs)
                lines.append(_line(r.suite, r.run_id, r.status, r.meta, r.config, r.seconds))
    return [ln for ln in lines if status is None or ln.status == status]


def format_runs(lines: list[RunLine], folder: Path, *, as_json: bool = False) -> str:
    """A table per suite with a count line, or the JSON list of runs."""
    if as_json:
        return json.dumps([asdict(ln) for ln in lines], indent=1)
    if not lines:
        return f"no runs in {folder / STORE_NAME}"
    out: list[str] = []
    suites = list(dict.fromkeys(ln.suite for ln in lines))
    for suite in suites:
        rows = [ln for ln in lines if ln.suite == suite]
        counts = ", ".join(f"{sum(ln.status == s for ln in rows)} {s}" for s in STATUSES)
        out.append(f"suite {suite}: {len(rows)} runs ({counts})")
        table = [("run id", "status", "seed", "time", "block", "attack", "defense")]
        table += [(ln.run_id, ln.status, str(ln.seed), _seconds(ln.seconds),
                   ln.block + (f" [{ln.setting}]" if ln.setting else ""), ln.attack, ln.defense) for ln in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        out += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                for row in table]
        out.append("")
    out.append(f"`fedarena show RUN_ID --out {folder}` prints one run (a unique prefix of its id is enough).")
    return "\n".join(out)


def _line(suite: str, run_id: str, status: str, meta: dict[str, Any], config: dict[str, Any],
          seconds: float | None) -> RunLine:
    return RunLine(suite, run_id, status, str(meta.get("block_label", config.get("task", ""))),
                   str(meta.get("setting") or ""), str(meta.get("attack_label", "")),
                   str(meta.get("defense_label", "")), config.get("seed"), seconds)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
