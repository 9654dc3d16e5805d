"""Screenshot check of ``report.html``: no figure's labels overlap, every table has a caption,
and a 1400-px-wide screenshot in headless Chromium for a person to look at.

    make screenshot-check            # installs Debian's chromium if missing, then runs the line below
    python -m fedarena.benchmarks.figures.screenshot_check --synthetic --shots runs/screenshot
    python -m fedarena.benchmarks.figures.screenshot_check runs/quick      # a folder `fedarena run` wrote

For each result folder the report is rebuilt (``write_report``) inside
``style.checking_layout``, so every figure is measured as the report renders it: text
boxes of titles, tick labels, legends and captions from matplotlib's renderer, pairwise
overlaps, text cut off at the figure's edge, legends over data. That part is exact and
needs no browser. ``report.html`` is then parsed: a ``<table>`` whose first child is not a
``<caption>`` is a problem. Last, when ``/usr/bin/chromium`` exists, the page is
screenshotted at ``--width`` (default 1400) px, as tall as the page, into
``<folder>/report_screenshot.png`` (or ``--shots``); the screenshot is not checked
automatically: open it and look.

``--synthetic`` needs no finished run: it builds one result folder whose store holds
every run of every shipped suite (their real labels, blocks and rounds) with made-up
metrics and reconstructions, so the figures the shipped suites produce are checked
without hours of compute. Exit status 1 when any problem is found, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fedarena.benchmarks.harness.report import HTML, write_report
from fedarena.benchmarks.harness.store import STORE_NAME, RunResult, Store
from fedarena.benchmarks.harness.suite import RunSpec, load_suite
from fedarena.benchmarks.harness.suites import shipped_suites
from fedarena.benchmarks.harness.tasks.privacy import RECONSTRUCTION

from .style import FigureCheck, checking_layout

WIDTH = 1400
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = "report_screenshot.png"
MAX_HEIGHT = 100_000  # px; a taller page is cut (Chromium's own limit on a window is near this)
# Chromium's flags for a sandbox-less, offline, one-shot render (Debian's package; a
# throw-away profile so nothing of a user's own browser is read or written).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--disable-extensions", "--mute-audio")


@dataclass
class CheckResult:
    """What the check found in one result folder."""

    folder: Path
    figures: list[FigureCheck]
    uncaptioned: list[str]  # the tables without a caption, named by their header cells
    screenshot: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [f"figure {f.title!r}: {p}" for f in self.figures for p in f.problems]
        return out + [f"table without a caption: {t}" for t in self.uncaptioned]


def check_folder(folder: str | Path, shot: Path | None = None, *, width: int = WIDTH,
                 chromium: Path = CHROMIUM) -> CheckResult:
    """Rebuild ``folder``'s report, check its figures and tables, screenshot it when Chromium exists."""
    folder = Path(folder)
    if not (folder / STORE_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {STORE_NAME}; run a suite into it first (`fedarena run`)")
    with checking_layout() as figures:
        paths = write_report(folder)
    page = paths.html.read_text(encoding="utf-8")
    result = CheckResult(folder, list(figures), uncaptioned_tables(page))
    if chromium.is_file():
        result.screenshot = screenshot(paths.html, shot or folder / SCREENSHOT, width=width, chromium=chromium)
    else:
        result.notes.append(f"no screenshot: {chromium} is missing (`make screenshot-check` installs Debian's "
                            "chromium)")
    return result


class _Tables(html.parser.HTMLParser):
    """Each ``<table>``: whether its first child element is ``<caption>``, and its header cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, object]] = []
        self._open: list[dict[str, object]] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._open and self._open[-1]["first"] is None:
            self._open[-1]["first"] = tag
        if tag == "table":
            table: dict[str, object] = {"first": None, "headers": []}
            self.tables.append(table)
            self._open.append(table)
        elif tag == "th":
            self._in_th = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._open:
            self._open.pop()
        elif tag == "th":
            self._in_th = False

    def handle_data(self, data: str) -> None:
        if self._in_th and self._open and data.strip():
            headers = self._open[-1]["headers"]
            assert isinstance(headers, list)
            headers.append(data.strip())


def uncaptioned_tables(page: str) -> list[str]:
    """The tables of an HTML page whose first child is not a ``<caption>`` (by their headers)."""
    parser = _Tables()
    parser.feed(page)
    return [" | ".join(t["headers"]) or "(no header)" for t in parser.tables  # type: ignore[arg-type]
            if t["first"] != "caption"]


_PROBE = ('<script>window.addEventListener("load", () => document.body.setAttribute("data-height", '
          'document.documentElement.scrollHeight));</script>')


def _chromium(chromium: Path, profile: str, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    cmd = [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "HOME": profile})


def page_height(page: Path, width: int = WIDTH, *, chromium: Path = CHROMIUM, timeout: float = 180.0) -> int:
    """The page's full height in px at ``width``, as Chromium lays it out (``--screenshot``
    captures the window only, so the window must be this tall). Measured on a copy of the
    page with a script that writes ``scrollHeight`` into the DOM Chromium dumps."""
    with tempfile.TemporaryDirectory(prefix="fedarena-chromium-") as profile:
        probe = Path(profile) / "probe.html"
        text = page.read_text(encoding="utf-8")
        probe.write_text(text.replace("</body>", _PROBE + "</body>") if "</body>" in text else text + _PROBE,
                         encoding="utf-8")
        done = _chromium(chromium, profile, [f"--window-size={width},1000", "--virtual-time-budget=10000",
                                             "--dump-dom", probe.as_uri()], timeout)
    match = re.search(r'data-height="(\d+)"', done.stdout)
    if done.returncode != 0 or match is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{chromium} could not measure {page} (exit {done.returncode}):\n{tail}")
    return int(match.group(1))


def screenshot(page: Path, out: Path, *, width: int = WIDTH, height: int | None = None,
               chromium: Path = CHROMIUM, timeout: float = 180.0) -> Path:
    """``page`` rendered by headless Chromium at ``width`` px (the whole page tall) into the PNG ``out``."""
    height = height or min(page_height(page, width, chromium=chromium, timeout=timeout), MAX_HEIGHT)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedarena-chromium-") as profile:
        done = _chromium(chromium, profile, [f"--window-size={width},{height}", f"--screenshot={out}",
                                             page.resolve().as_uri()], timeout)
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{chromium} failed (exit {done.returncode}) to screenshot {page}:\n{tail}")
    return out


# --------------------------------------------------------------------- synthetic result folder

_IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "emnist": (1, 28, 28),
                 "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}


def synthetic_folder(out: str | Path, suites: Sequence[str | Path] | None = None, seed: int = 0) -> Path:
    """A result folder holding every run of ``suites`` (default: all shipped) with made-up
    metrics and reconstructions: what the report draws for those suites, without running them."""
    out = Path(out)
    paths = list(shipped_suites().values()) if suites is None else [Path(s) for s in suites]
    gen = torch.Generator().manual_seed(seed)
    with Store.in_folder(out) as store:
        for path in paths:
            suite = load_suite(path)
            store.register_suite(suite)
            for spec in suite.runs:
                metrics, artefacts = _fake_run(spec, out, gen)
                store.record(spec, RunResult(spec.run_id, "ok", metrics, started_at=0.0, finished_at=1.0,
                                             worker="synthetic", device="cpu"), artefacts)
    return out


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _fake_run(spec: RunSpec, folder: Path, gen: torch.Generator) -> tuple[dict[str, object], dict[str, str]]:
    config, meta = spec.config, spec.meta
    if config["task"] == "privacy":
        name = config["dataset"]["name"]
        n = min(len(config["dataset"].get("indices") or range(4)), 8)
        shape = _IMAGE_SHAPES.get(name, (3, 32, 32))
        block = hashlib.sha1(f"{spec.suite}/{meta.get('block_label')}/{meta.get('setting')}".encode()).digest()
        truth = torch.randint(0, 256, (n, *shape), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(int.from_bytes(block[:4], "big")))
        noise = torch.randint(-60, 60, truth.shape, generator=gen)
        rec = (truth.int() + noise).clamp(0, 255).to(torch.uint8)
        psnr = torch.tensor([_uniform(gen, 8, 45) for _ in range(n)])
        relative = f"artefacts/{spec.run_id}/{RECONSTRUCTION}"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"truth": truth, "reconstruction": rec, "psnr": psnr}, folder / relative)
        return {"psnr": float(psnr.mean()), "ssim": _uniform(gen, 0, 1), "lpips": _uniform(gen, 0, 0.7),
                "label_accuracy": 1.0, "attack_seconds": _uniform(gen, 1, 60), "fl_seconds": 1.0,
                "accuracy": _uniform(gen, 0.5, 0.95), "epsilon": None, "images_per_client": [n]}, {
                    RECONSTRUCTION: relative}
    rounds = int(config.get("federation", {}).get("rounds", 1))
    curve = [[r, min(1.0, 0.1 + 0.8 * r / rounds + _uniform(gen, -0.05, 0.05))] for r in range(1, rounds + 1)]
    attacked = meta.get("attack_label") != "none"
    nobody = config.get("defense", {}).get("name") in ("none", "fedavg")  # excludes no client
    precision = None if nobody or not attacked else _uniform(gen, 0, 1)
    recall = (0.0 if nobody else _uniform(gen, 0, 1)) if attacked else None
    detection = {"malicious": {"precision": precision, "recall": recall, "support": 10 if attacked else 0,
                               "predicted": 0 if nobody else 5}} if attacked else {}
    return {"final_accuracy": curve[-1][1], "accuracy_curve": curve, "attack_success_rate":
            _uniform(gen, 0, 1) if attacked else None, "malicious_precision": precision, "malicious_recall": recall,
            "detection": detection, "fl_seconds": _uniform(gen, 5, 300), "epsilon": None}, {}


# --------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, metavar="DIR", help="result folders of `fedarena run`")
    parser.add_argument("--synthetic", action="store_true",
                        help="also check a made-up result folder holding every shipped suite's runs")
    parser.add_argument("--shots", type=Path, metavar="DIR",
                        help="where screenshots (and the synthetic folder) go (default: inside each folder)")
    parser.add_argument("--width", type=int, default=WIDTH, help=f"window width in px (default {WIDTH})")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM, help=f"the browser (default {CHROMIUM})")
    args = parser.parse_args(argv)
    if not args.folders and not args.synthetic:
        parser.error("give result folders, --synthetic, or both")
    folders = list(args.folders)
    if args.synthetic:
        target = (args.shots or Path(tempfile.mkdtemp(prefix="fedarena-synthetic-"))) / "synthetic"
        if target.exists():
            shutil.rmtree(target)
        folders.append(synthetic_folder(target))
    failed = False
    for folder in folders:
        shot = args.shots / f"{folder.name}_{SCREENSHOT}" if args.shots else None
        try:
            result = check_folder(folder, shot, width=args.width, chromium=args.chromium)
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{folder}: {len(result.figures)} figures checked in {result.folder / HTML}")
        for line in result.problems:
            print(f"  problem: {line}")
        for line in result.notes:
            print(f"  note: {line}")
        if result.screenshot:
            print(f"  screenshot ({args.width} px wide): {result.screenshot}")
        failed |= bool(result.problems)
    print("screenshot check: " + ("problems found" if failed else "no overlapping labels, every table captioned"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
