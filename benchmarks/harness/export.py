"""``fedarena export DIR --csv/--latex/--json``: a result folder's metric tables for papers and notebooks.

One table per (suite, task) — a privacy task and a robustness task record different
metrics — with one row per stored run (``ok`` and ``failed``): the run columns
(``RUN_COLUMNS``), then the run's settings as ``config.<flattened key>`` (``config.defense.
params.sigma``), then every metric under its flattened name (``psnr``,
``detection.malicious.recall``). Metrics that are lists of records (the per-reconstruction
details) are left out; ``fedarena show --json`` prints them.

Values are the store's, unchanged: JSON keeps their types (floats round-trip exactly,
``null`` where the store has null: a metric not computed, or non-finite); CSV writes
floats with ``repr`` (shortest round-trip form), booleans as ``true``/``false``, null as
an empty cell and lists and mappings as canonical JSON text. LaTeX (booktabs) is for
reading: the run label columns, the settings that vary within the table and the scalar
metrics, numbers to 4 significant digits, text escaped. The store is opened read-only,
as ``show`` and ``report`` do.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .atomic import write_atomic
from .ids import canonical_json
from .store import STORE_NAME, RunRecord, Store

Format = Literal["csv", "latex", "json"]
FORMATS: tuple[Format, ...] = ("csv", "latex", "json")
EXTENSIONS: dict[Format, str] = {"csv": "csv", "latex": "tex", "json": "json"}
# Columns every row starts with: id, labels and outcome of the run.
RUN_COLUMNS = ("run_id", "suite", "task", "status", "block", "setting", "attack", "defense", "seed", "seconds",
               "device", "error")
CONFIG_PREFIX = "config."
# LaTeX: the columns that name a run (the label columns stand for ``config.attack.*`` and ``config.defense.*``).
_LATEX_RUN_COLUMNS = ("attack", "defense", "block", "setting", "seed", "status")
_LATEX_COVERED = (f"{CONFIG_PREFIX}attack.", f"{CONFIG_PREFIX}defense.", f"{CONFIG_PREFIX}seed",
                  f"{CONFIG_PREFIX}task")


@dataclass(frozen=True)
class ExportTable:
    """One metric table: ``rows`` map every column to the stored value (None where a run has none)."""

    suite: str
    task: str
    columns: list[str]
    rows: list[dict[str, Any]]

    @property
    def name(self) -> str:
        """``<suite>.<task>``, made safe as a file name."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.suite}.{self.task}")

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "task": self.task, "columns": self.columns, "rows": self.rows}


class ExportError(RuntimeError):
    """The export cannot be written as asked (no runs, several CSV tables on stdout, …)."""


def export_tables(folder: str | Path, *, suite: str | None = None, task: str | None = None) -> list[ExportTable]:
    """Every (suite, task) table of ``folder``'s store, runs in the store's order (suite order)."""
    with Store(Path(folder) / STORE_NAME, readonly=True) as store:
        runs = store.runs(suite=suite)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        if task is None or r.task == task:
            groups.setdefault((r.suite, r.task), []).append(r)
    return [_table(s, t, rs) for (s, t), rs in groups.items()]


def run_row(r: RunRecord) -> dict[str, Any]:
    """One run as a flat row: run columns, ``config.*`` settings, metrics (see the module doc)."""
    row: dict[str, Any] = {
        "run_id": r.run_id, "suite": r.suite, "task": r.task, "status": r.status,
        "block": r.meta.get("block_label"), "setting": r.meta.get("setting") or None,
        "attack": r.meta.get("attack_label"), "defense": r.meta.get("defense_label"),
        "seed": r.config.get("seed"), "seconds": r.seconds, "device": r.device, "error": r.error,
    }
    row.update({CONFIG_PREFIX + k: v for k, v in flatten(r.config).items()})
    for key, value in flatten(r.metrics).items():
        if _is_record_list(value):
            continue
        row[f"metrics.{key}" if key in row else key] = value  # a metric never hides a run column
    return row


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}``; lists and empty mappings are leaves."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def render(tables: list[ExportTable], fmt: Format, source: str = "") -> dict[str, str]:
    """``{table name: text}`` in ``fmt`` (one CSV, LaTeX or JSON document per table)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "csv":
        return {t.name: to_csv(t) for t in tables}
    if fmt == "json":
        return {t.name: json.dumps(t.as_dict(), indent=1, allow_nan=False) + "\n" for t in tables}
    return {t.name: to_latex(t, source) for t in tables}


def write_export(tables: list[ExportTable], fmt: Format, out: str | Path, source: str = "") -> list[Path]:
    """One file per table in folder ``out`` (``<suite>.<task>.csv|tex|json``), each written atomically."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"--out {folder} is a file; give a folder (one file per table is written into it)")
    folder.mkdir(parents=True, exist_ok=True)
    return [write_atomic(folder / f"{name}.{EXTENSIONS[fmt]}", text) for name, text in
            render(tables, fmt, source).items()]


# --------------------------------------------------------------------- formats


def to_csv(table: ExportTable) -> str:
    """The table as CSV (header row, then one row per run; cells as the module doc says)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([csv_cell(row.get(c)) for c in table.columns])
    return buf.getvalue()


def csv_cell(value: Any) -> str:
    """A stored value as CSV text: ``repr`` floats, ``true``/``false``, empty for null, JSON for containers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str):
        return str(value)
    return canonical_json(value)


def to_latex(table: ExportTable, source: str = "") -> str:
    """One booktabs ``table`` environment per block of the table (needs ``\\usepackage{booktabs}``)."""
    blocks: dict[Any, list[dict[str, Any]]] = {}
    for row in table.rows:
        blocks.setdefault((row.get("block"), row.get("setting")), []).append(row)
    head = (f"% fedarena export{f' of {source}' if source else ''}: suite {table.suite}, task {table.task}, "
            f"{len(table.rows)} runs; needs \\usepackage{{booktabs}}")
    parts = [head]
    for i, ((block, setting), rows) in enumerate(blocks.items()):
        part = ExportTable(table.suite, table.task, table.columns, rows)
        label = f"tab:{re.sub(r'[^A-Za-z0-9]+', '-', table.name)}" + (f"-{i + 1}" if len(blocks) > 1 else "")
        parts.append(_latex_block(part, _latex_columns(part), block, setting, label))
    return "\n".join(parts)


def _latex_block(table: ExportTable, columns: list[str], block: Any, setting: Any, label: str) -> str:
    numeric = {c for c in columns if any(_is_number(r.get(c)) for r in table.rows)
               and all(r.get(c) is None or _is_number(r.get(c)) for r in table.rows)}
    lines = [
        "\\begin{table}[ht]",
        "\\centering",
        f"\\caption{{{latex_escape(_caption(table, block, setting))}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{{''.join('r' if c in numeric else 'l' for c in columns)}}}",
        "\\toprule",
        " & ".join(latex_escape(_short(c)) for c in columns) + " \\\\",
        "\\midrule",
        *(" & ".join(_latex_cell(row.get(c)) for c in columns) + " \\\\" for row in table.rows),
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
        "",
    ]
    return "\n".join(lines)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "×": r"$\times$", "±": r"$\pm$", "−": r"$-$", "σ": r"$\sigma$", "ε": r"$\varepsilon$",
                  "δ": r"$\delta$", "β": r"$\beta$", "α": r"$\alpha$", "τ": r"$\tau$", "≤": r"$\leq$",
                  "≥": r"$\geq$", "–": "--", "—": "---"}
_LATEX_PATTERN = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX body text: the ten special characters and common Unicode symbols."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL[m.group(0)], text)


def _latex_columns(table: ExportTable) -> list[str]:
    """Run labels, the settings that differ between rows (the label columns already show attack
    and defense), then the top-level scalar metrics (not those flattened from a mapping, e.g.
    ``detection.<role>.*``, which repeat ``<role>_precision``/``_recall``; CSV and JSON hold them)."""
    rows = table.rows
    has = [c for c in table.columns if any(r.get(c) not in (None, "") for r in rows)]
    varies = [c for c in has if len({canonical_json(r.get(c)) for r in rows}) > 1]
    labels = [c for c in _LATEX_RUN_COLUMNS if c in has and (c not in ("block", "setting", "status") or c in varies)]
    settings = [c for c in varies if c.startswith(CONFIG_PREFIX) and not c.startswith(_LATEX_COVERED)]
    metrics = [c for c in has if c not in RUN_COLUMNS and not c.startswith(CONFIG_PREFIX) and "." not in c
               and all(r.get(c) is None or _is_number(r.get(c)) for r in rows)]
    return labels + settings + metrics


def _caption(table: ExportTable, block: Any, setting: Any) -> str:
    failed = sum(r.get("status") == "failed" for r in table.rows)
    text = f"Suite {table.suite}, {table.task} task"
    text += f", {block}" if block else ""
    text += f" [{setting}]" if setting else ""
    text += f": {len(table.rows)} runs" + (f" ({failed} failed)" if failed else "")
    return text + ". Settings shared by every row are omitted; the CSV and JSON exports hold every column."


def _short(column: str) -> str:
    return column.removeprefix(CONFIG_PREFIX)


def _latex_cell(value: Any) -> str:
    if value is None:
        return "--"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else latex_escape(str(value))
    if isinstance(value, int):
        return str(value)
    return latex_escape(value if isinstance(value, str) else canonical_json(value))


# --------------------------------------------------------------------- helpers


def _table(suite: str, task: str, runs: list[RunRecord]) -> ExportTable:
    rows = [run_row(r) for r in runs]
    config = sorted({c for row in rows for c in row if c.startswith(CONFIG_PREFIX)})
    metrics = sorted({c for row in rows for c in row if c not in RUN_COLUMNS and not c.startswith(CONFIG_PREFIX)})
    columns = [*RUN_COLUMNS, *config, *metrics]
    return ExportTable(suite, task, columns, [{c: row.get(c) for c in columns} for row in rows])


def _is_record_list(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(v, Mapping) for v in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render_stdout(tables: list[ExportTable], fmt: Format, source: str = "") -> str:
    """Every table as one stream: JSON a list of tables, LaTeX one after another, CSV only one table."""
    if not tables:
        raise ExportError(f"{source or 'the store'} holds no runs to export")
    if fmt == "json":
        return json.dumps([t.as_dict() for t in tables], indent=1, allow_nan=False)
    if fmt == "csv" and len(tables) > 1:
        raise ExportError(f"{len(tables)} tables ({', '.join(t.name for t in tables)}) do not fit one CSV stream; "
                          "pass --out FOLDER (one file per table) or choose one with --suite/--task")
    return "\n".join(render(tables, fmt, source).values()).rstrip("\n")
