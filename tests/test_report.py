"""``fedarena report`` on a tiny suite: tables, figures, a self-contained HTML page."""

from __future__ import annotations

import base64
import re
import statistics
from pathlib import Path

import pytest

from fedarena.benchmarks.harness.cli import main
from fedarena.benchmarks.harness.report import write_report
from fedarena.benchmarks.harness.runner import run_suite
from fedarena.benchmarks.harness.store import Store

from .helpers import suite_failing_at_run_time

PNG = b"\x89PNG\r\n\x1a\n"

SUITE = """
suite: tiny_report
description: A tiny suite for the report test.
runs:
  - task: privacy
    label: inversion
    dataset: {name: digits, indices: [0, 7]}
    model: {name: mlp, params: {hidden: [16]}}
    federation: {clients: 2, local: {algorithm: fedsgd, batch_size: 1}}
    attacks: [{name: inverting_gradients, params: {iterations: 20}}]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}]
  - task: robustness
    label: poisoning
    dataset: {name: digits, size: 400}
    test_dataset: {name: digits, split: test, size: 200}
    model: {name: mlp, params: {hidden: [16]}}
    federation: {clients: 5, rounds: 3, local: {lr: 0.2, batch_size: 32}}
    attacks: [none, {name: sign_flip, params: {scale: 3.0}, clients: 1}]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}, median, krum]
    seeds: [0, 1]
  - task: robustness
    label: broken
    dataset: {name: digits, indices: [0]}
    model: mlp
    attacks: [none]
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    summary = run_suite(suite_failing_at_run_time(SUITE, "tiny.yaml", block=2, indices=[99999]), out, progress=False)
    assert (summary.ok, summary.failed) == (18, 1)
    return out


def test_report_tables_and_figures(folder: Path) -> None:
    paths = write_report(folder)
    md = paths.markdown.read_text()
    assert "## Suite tiny_report" in md and "A tiny suite for the report test." in md
    assert "### Privacy — inversion" in md and "### Robustness — poisoning" in md
    assert "| attack \\ defense | none | gaussian_noise(sigma=0.01) |" in md  # privacy matrix
    assert "| attack \\ defense | none | gaussian_noise(sigma=0.01) | median | krum |" in md  # robustness matrix
    # a robustness cell is the mean ± sample std of the two seeds' final accuracies
    with Store.in_folder(folder) as store:
        accs = [r.metrics["final_accuracy"] for r in store.runs(status="ok")
                if r.meta["attack_label"] == "sign_flip(scale=3)×1" and r.meta["defense_label"] == "median"]
    assert len(accs) == 2
    cell = f"{100 * statistics.fmean(accs):.1f}% ± {100 * statistics.stdev(accs):.1f}"
    assert re.search(rf"\| sign_flip\(scale=3\)×1 \| [^|]+ \| [^|]+ \| {re.escape(cell)} \|", md), cell
    assert "### Failed runs" in md and "indices [99999] are out of range" in md
    from fedarena.benchmarks.harness.provenance import current_provenance

    assert f"Computed by {current_provenance().describe()}, on cpu (" in md  # which code and device wrote the runs
    figures = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+\.png)\)", md)
    kinds = {Path(f).name.split("_")[2] for f in figures}
    assert kinds == {"reconstructions", "accuracy", "detection", "privacy"}, figures
    for fig in figures:
        assert (folder / fig).read_bytes().startswith(PNG)


def test_report_html_is_self_contained(folder: Path) -> None:
    paths = write_report(folder)
    page = paths.html.read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    md_figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", paths.markdown.read_text())
    assert len(images) == len(md_figures) >= 4
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "report_files/" not in page and "http" not in page.split("<body>", 1)[1]
    md_tables = sum(line.startswith("| --- |") for line in paths.markdown.read_text().splitlines())
    assert page.count("<table>") == md_tables >= 5
    assert page.count("<table><caption>") == md_tables  # every table has a caption


def test_cli_report_and_show(folder: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["report", str(folder)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.sqlite" in capsys.readouterr().err
    with Store.in_folder(folder) as store:
        run = store.runs(status="failed")[0]
    assert main(["show", run.run_id[:8], "--out", str(folder)]) == 0
    text = capsys.readouterr().out
    assert f"run {run.run_id}" in text and "status failed" in text and "out of range" in text
    assert main(["show", "zzzz", "--out", str(folder)]) == 2
    assert "no run 'zzzz'" in capsys.readouterr().err


def test_report_charts_also_as_pdf_and_svg(folder: Path) -> None:
    """``--formats pdf svg``: every chart beside its PNG, as a real PDF and SVG (issue #18, figures for a paper)."""
    from fedarena.benchmarks.harness.cli import main

    assert main(["report", str(folder), "--formats", "png", "pdf", "svg"]) == 0
    files = folder / "report_files"
    charts = sorted(p for p in files.glob("*.png") if not p.name.split("_", 1)[-1].startswith("reconstructions"))
    assert charts  # the tiny suite draws accuracy and detection charts
    for png in charts:
        if (files / png.with_suffix(".pdf").name).exists():
            assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
            assert b"<svg" in png.with_suffix(".svg").read_bytes()[:2000]
    assert any(p.name.startswith(("tiny_report_accuracy", "accuracy")) or "accuracy" in p.name
               for p in files.glob("*.pdf"))
    assert any("detection" in p.name for p in files.glob("*.svg"))
