"""``fedarena export`` and ``fedarena runs``: tables equal to the store's values, read-only.

The store is filled through ``Store.record`` with metrics chosen to be awkward (floats that
print long, denormals, ints, booleans, nulls, nested mappings, lists, text with commas,
quotes and newlines), so a lossy cell format fails the round trip.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from fedarena.benchmarks.harness.cli import main
from fedarena.benchmarks.harness.export import (
    CONFIG_PREFIX,
    RUN_COLUMNS,
    export_tables,
    flatten,
    latex_escape,
    render,
    to_csv,
    to_latex,
)
from fedarena.benchmarks.harness.runs_list import list_runs
from fedarena.benchmarks.harness.store import STORE_NAME, RunResult, Store
from fedarena.benchmarks.harness.suite import RunSpec, parse_suite

SUITE = """
suite: tiny_export
description: Export test.
runs:
  - task: privacy
    label: inversion
    dataset: {name: digits, indices: [0]}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 1, local: {algorithm: fedsgd, batch_size: 1}}
    attacks: [{name: dlg, params: {iterations: 2}}]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}, {name: pruning, params: {fraction: 0.5}}]
"""

METRICS: list[dict[str, Any]] = [
    {"psnr": 0.1 + 0.2, "ssim": 1e-300, "images": 4, "adaptive": False, "lpips": None,
     "psnr_per_image": [20.73709487915039, 1 / 3], "note": 'a, "quoted"\nline',
     "detection": {"honest": {"precision": 2 / 3, "support": 10}},
     "reconstructions": [{"client": 0, "config": {"x": 1}}]},
    {"psnr": 123456789.123456789, "ssim": -0.0, "images": 1, "adaptive": True, "lpips": 0.058,
     "psnr_per_image": [], "note": "", "detection": {"honest": {"precision": None, "support": 0}}},
]


def _store(folder: Path, *, label: str = "inversion", statuses: tuple[str, str] = ("ok", "ok")) -> list[RunSpec]:
    """A real store: the suite's plan registered, the first two runs recorded; the third is pending."""
    suite = parse_suite(SUITE.replace("label: inversion", f"label: {label}"), "tiny_export.yaml")
    with Store.in_folder(folder) as store:
        store.register_suite(suite)
        for spec, metrics, status in zip(suite.runs, METRICS, statuses, strict=False):
            store.record(spec, RunResult(spec.run_id, status, metrics=metrics, started_at=1.0, finished_at=3.5,
                                         worker="w", device="cpu", error=None if status == "ok" else "x"), {})
    return suite.runs


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    _store(tmp_path)
    return tmp_path


def _stored(folder: Path) -> dict[str, Any]:
    with Store(folder / STORE_NAME, readonly=True) as store:
        return {r.run_id: r for r in store.runs()}


def _same(a: Any, b: Any) -> bool:
    """Equal, with floats compared through repr (so -0.0 != 0.0, and nothing is rounded)."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and repr(a) == repr(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _parse_cell(text: str, like: Any) -> Any:
    """A CSV cell back to the type of the stored value (the documented cell format)."""
    if like is None:
        assert text == ""
        return None
    if isinstance(like, bool):
        return {"true": True, "false": False}[text]
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, str):
        return text
    return json.loads(text)


def test_csv_values_equal_the_stores(folder: Path) -> None:
    (table,) = export_tables(folder)
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    stored = _stored(folder)
    assert [r["run_id"] for r in rows] == list(stored)  # one row per stored run, in suite order
    checked = 0
    for row in rows:
        record = stored[row["run_id"]]
        for key, value in flatten(record.metrics).items():
            if key == "reconstructions":
                assert key not in row  # lists of records stay in `fedarena show --json`
                continue
            assert _same(_parse_cell(row[key], value), value), (key, row[key], value)
            checked += 1
        for key, value in flatten(record.config).items():
            assert _same(_parse_cell(row[CONFIG_PREFIX + key], value), value), key
        assert float(row["seconds"]) == record.seconds == 2.5
        assert (row["status"], row["attack"], row["defense"]) == (record.status, record.meta["attack_label"],
                                                                   record.meta["defense_label"])
    assert checked >= 16
    assert rows[0]["psnr"] == "0.30000000000000004" and rows[0]["ssim"] == "1e-300"
    assert rows[1]["detection.honest.precision"] == ""  # null stays null, not 0
    assert rows[1]["defense"] == "gaussian_noise(sigma=0.01)"
    assert rows[1]["config.defense.params.sigma"] == "0.01" and rows[0]["config.defense.params.sigma"] == ""


def test_json_values_equal_the_stores(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(folder), "--json"]) == 0
    (table,) = json.loads(capsys.readouterr().out)
    assert table["suite"] == "tiny_export" and table["task"] == "privacy"
    assert table["columns"][:len(RUN_COLUMNS)] == list(RUN_COLUMNS)
    stored = _stored(folder)
    assert len(table["rows"]) == len(stored) == 2
    for row in table["rows"]:
        assert list(row) == table["columns"]
        record = stored[row["run_id"]]
        for key, value in flatten(record.metrics).items():
            if key != "reconstructions":
                assert _same(row[key], value), key
        for key, value in flatten(record.config).items():
            assert _same(row[CONFIG_PREFIX + key], value), key
    assert math.copysign(1, table["rows"][1]["ssim"]) == -1  # -0.0 kept


def test_latex_is_booktabs_and_escapes(tmp_path: Path) -> None:
    _store(tmp_path, label='"dig_its 50% & more #1"')
    (table,) = export_tables(tmp_path)
    tex = to_latex(table)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\hline" not in tex
    assert "dig\\_its 50\\% \\& more \\#1" in tex
    assert "gaussian\\_noise(sigma=0.01)" in tex and "pruning" not in tex  # a pending run has no row
    body = [ln for ln in tex.splitlines() if ln.endswith("\\\\")]
    header, *rows = body
    assert header.startswith("attack & defense & seed & ") and "psnr" in header
    width = header.count(" & ")
    assert len(rows) == 2 and all(r.count(" & ") == width for r in rows)  # no unescaped & in a cell
    assert " & 0.3 & " in rows[0] and " & 1.235e+08 & " in rows[1]  # 4 significant digits for reading
    assert latex_escape("a_b%c&d$e#f{g}h~i^j\\k") == ("a\\_b\\%c\\&d\\$e\\#f\\{g\\}h\\textasciitilde{}i"
                                                     "\\textasciicircum{}j\\textbackslash{}k")


def test_export_out_writes_one_file_per_table_and_leaves_the_store_alone(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    _store(folder)
    with Store.in_folder(folder) as store:  # a robustness row in the same store: a second table
        spec = RunSpec("r" * 16, "tiny_export", {"task": "robustness", "seed": 0}, {"block_label": "b"})
        store.record(spec, RunResult(spec.run_id, "failed", error="boom", started_at=0.0, finished_at=1.0), {})
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}
    out = tmp_path / "export"
    for flag in ("--csv", "--latex", "--json"):
        assert main(["export", str(folder), flag, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"tiny_export.{task}.{ext}" for task in ("privacy", "robustness") for ext in ("csv", "tex", "json"))
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()} == before
    robust = list(csv.DictReader((out / "tiny_export.robustness.csv").open()))
    assert [(r["status"], r["error"]) for r in robust] == [("failed", "boom")]
    assert render(export_tables(folder, task="robustness"), "json")["tiny_export.robustness"].startswith("{")


def test_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--csv"]) == 2
    assert "does not exist" in capsys.readouterr().err
    _store(tmp_path)
    with Store.in_folder(tmp_path) as store:
        spec = RunSpec("r" * 16, "tiny_export", {"task": "robustness", "seed": 0}, {})
        store.record(spec, RunResult(spec.run_id, "ok"), {})
    assert main(["export", str(tmp_path), "--csv"]) == 2
    assert "2 tables" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--csv", "--task", "robustness"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("r" * 16 + ",tiny_export,robustness,ok")
    (tmp_path / "file").write_text("x")
    assert main(["export", str(tmp_path), "--csv", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path)])  # a format is required


def test_runs_lists_ok_failed_and_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = _store(tmp_path, statuses=("ok", "failed"))
    lines = list_runs(tmp_path)
    assert [(ln.run_id, ln.status) for ln in lines] == [(specs[0].run_id, "ok"), (specs[1].run_id, "failed"),
                                                        (specs[2].run_id, "pending")]
    assert lines[2].defense == "pruning(fraction=0.5)" and lines[2].seed == 0 and lines[2].seconds is None
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "suite tiny_export: 3 runs (1 ok, 1 failed, 1 pending)" in out
    assert any(ln.split()[:2] == [specs[2].run_id, "pending"] for ln in out.splitlines())
    assert main(["runs", str(tmp_path), "--json", "--status", "pending"]) == 0
    assert [d["run_id"] for d in json.loads(capsys.readouterr().out)] == [specs[2].run_id]
    assert main(["show", specs[2].run_id[:8], "--out", str(tmp_path)]) == 2
    assert "is pending" in capsys.readouterr().err
    assert main(["show", "ffffffff", "--out", str(tmp_path)]) == 2
    assert f"`fedarena runs {tmp_path}` lists the run ids" in capsys.readouterr().err
    assert main(["runs", str(tmp_path / "none")]) == 2
