"""The screenshot check of ``report.html``: the shipped suites' figures have no overlapping
labels, every table has a caption, and (where Debian's chromium is installed) a 1400-px
screenshot is taken."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fedarena.benchmarks.figures.screenshot_check import (
    CHROMIUM,
    WIDTH,
    CheckResult,
    check_folder,
    main,
    synthetic_folder,
    uncaptioned_tables,
)
from fedarena.benchmarks.harness.report_render import Document, Heading, Table, to_html
from fedarena.benchmarks.harness.suites import shipped_suites

NO_CHROMIUM = Path("/nonexistent/chromium")
# quick: the demo suite; privacy_utility: the longest component labels and most defenses per block
CHECKED_SUITES = ("quick", "privacy_utility")


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> CheckResult:
    folder = synthetic_folder(tmp_path_factory.mktemp("shots") / "synthetic",
                              [shipped_suites()[name] for name in CHECKED_SUITES])
    return check_folder(folder, chromium=NO_CHROMIUM)  # the report built and measured once


def test_caption_check_names_the_tables_without_one() -> None:
    doc = Document("t")
    doc.add(Heading("h"))
    doc.add(Table(["attack", "PSNR (dB)"], [["dlg", "20.0"]], "Attack PSNR in dB."))
    assert uncaptioned_tables(to_html(doc)) == []
    doc.add(Table(["suite", "runs"], [["quick", "32"]]))
    assert uncaptioned_tables(to_html(doc)) == ["suite | runs"]
    # a caption must be the table's first child, as HTML requires; one further down does not count
    page = "<table><thead><tr><th>a</th></tr></thead><caption>late</caption></table>"
    assert uncaptioned_tables(page) == ["a"]


def test_shipped_suites_figures_have_no_overlapping_labels(checked: CheckResult) -> None:
    result = checked
    kinds = {f.title.split(":", 1)[0] for f in result.figures}
    assert set(CHECKED_SUITES) <= kinds, kinds  # both suites' figures were drawn and measured
    assert len(result.figures) >= 8
    assert [p for p in result.problems if p.startswith("figure")] == []
    assert "no screenshot" in result.notes[0]


def test_every_table_of_the_report_has_a_caption(checked: CheckResult) -> None:
    assert checked.uncaptioned == []


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing: `make screenshot-check` installs "
                                                   "Debian's chromium (the layout and caption checks run without it)")
def test_screenshot_in_headless_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = synthetic_folder(tmp_path / "one", [shipped_suites()["ig_table"]])
    status = main([str(folder), "--shots", str(tmp_path / "shots")])
    out = capsys.readouterr().out
    shot = tmp_path / "shots" / "one_report_screenshot.png"
    assert f"screenshot ({WIDTH} px wide): {shot}" in out, out
    width, height = Image.open(shot).size
    assert width == WIDTH and height > 1000  # the whole page, not one window's height
    problems = [line for line in out.splitlines() if "problem:" in line]
    assert problems == [] and status == 0, out
