"""The ``fedarena`` command line: list components, run suites, write reports, list, show, export runs, draw figures.

Heavy imports (torch, the registries, the harness) happen inside each sub-command so
``fedarena --version`` and ``fedarena --help`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from fedarena.benchmarks.figures.command import add_parser as add_figure_parser  # argparse only: no torch


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedarena`` console script; returns the exit status."""
    parser = build_parser()
    try:
        with _interrupt_deferred():  # --device's check imports torch
            args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:  # the commands that write anything say themselves what was kept
        print("\ninterrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedarena", description="Measure how federated learning leaks and breaks.")
    parser.add_argument("--version", action="version", version=f"fedarena {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list every component suites can name, or one component's parameters")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="a component: print its parameters, types, defaults and the notes on their sources")
    p.add_argument("--json", action="store_true",
                   help='print {"datasets": {name: description}, "models": ..., ...} (with NAME: its details)')
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser("run", help="run a suite (skipping runs already in DIR's store)")
    p.add_argument("suite", metavar="SUITE", help="a suite file, or the name of a shipped suite (quick, privacy, …)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="parallel worker processes")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<suite name>)")
    p.add_argument("--ray", metavar="ADDRESS", help="distribute runs over a Ray cluster (pip install 'fedarena[ray]')")
    p.add_argument("--client-workers", type=_positive_int, metavar="N",
                   help="train each round's clients in N processes (identical results; not part of the run id); "
                        "default: the suite's engine.client_workers, else 1")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs stored as failed")
    p.add_argument("--fresh", action="store_true",
                   help="recompute every run, even those DIR's store already has (e.g. written by other code)")
    p.add_argument("--device", type=_device, default="cpu", metavar="DEVICE",
                   help="where runs build their model and data: cpu, cuda, cuda:N or auto (CUDA when present); "
                        "default cpu. Not part of the run id")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true", help="write DIR/report.md and report.html afterwards")
    p.add_argument("--max-runs", type=_positive_int, metavar="N",
                   help="refuse a suite that plans more than N runs (default: the suite's max_runs, else 10000)")
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("report", help="write DIR/report.md and a self-contained DIR/report.html")
    p.add_argument("dir", metavar="DIR", help="an output folder of `fedarena run`")
    p.add_argument("--formats", nargs="+", choices=("png", "pdf", "svg"), default=["png"],
                   help="also write each chart as PDF/SVG under DIR/report_files (for a paper)")
    p.set_defaults(handler=_cmd_report)

    p = sub.add_parser("show", help="print one run's configuration, metrics, artefacts and error")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id (or a unique prefix of one)")
    p.add_argument("--out", metavar="DIR", help="output folder to look in (default: every folder under runs/)")
    p.add_argument("--json", action="store_true", help="print the stored record as JSON")
    p.set_defaults(handler=_cmd_show)

    p = sub.add_parser("runs", help="list a result folder's run ids with their labels and status (ok/failed/pending)")
    p.add_argument("dir", metavar="DIR", help="an output folder of `fedarena run`")
    p.add_argument("--status", choices=("ok", "failed", "pending"), help="only the runs with this status")
    p.add_argument("--json", action="store_true", help="print the runs as a JSON list")
    p.set_defaults(handler=_cmd_runs)

    p = sub.add_parser("export", help="write a result folder's metric tables (one row per run) as CSV, LaTeX or JSON")
    p.add_argument("dir", metavar="DIR", help="an output folder of `fedarena run`")
    fmt = p.add_mutually_exclusive_group(required=True)
    for name in ("csv", "latex", "json"):
        fmt.add_argument(f"--{name}", dest="format", action="store_const", const=name, help=f"{name} output")
    p.add_argument("--out", metavar="FOLDER", help="write <suite>.<task>.<ext> per table there (default: stdout)")
    p.add_argument("--suite", metavar="NAME", help="only this suite's runs")
    p.add_argument("--task", choices=("privacy", "robustness"), help="only this task's runs")
    p.set_defaults(handler=_cmd_export)
    add_figure_parser(sub)
    return parser


def _cmd_list(args: argparse.Namespace) -> int:
    from fedarena.benchmarks.harness import catalogue

    if args.name is not None:
        try:
            found = catalogue.find(args.name)
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps([c.as_dict() for c in found], indent=2))
        else:
            print("\n\n".join(catalogue.format_component(c) for c in found))
        return 0
    if args.json:
        print(json.dumps(catalogue.catalogue(), indent=2))
        return 0
    for registry in catalogue.registries().values():
        print(f"{registry.kind}s:")
        descriptions = registry.descriptions()
        if not descriptions:
            print("  (none registered)")
        width = max((len(n) for n in descriptions), default=0)
        for name, text in descriptions.items():
            print(f"  {name:<{width}}  {text}".rstrip())
        print()
    print("`fedarena list NAME` shows a component's parameters, types and defaults.")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # before the runs started (importing, validating): nothing was written
        print("\ninterrupted before any run started", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    """``fedarena run``; a Ctrl-C before the runs start is ``_cmd_run``'s, during them this one's."""
    with _interrupt_deferred():  # importing and validating take seconds
        from fedarena.benchmarks.harness.engines.ray import RayUnavailableError, import_ray

        try:
            if args.ray:  # before the (slow) suite validation: a missing extra is said at once
                import_ray()
        except RayUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

        from fedarena.benchmarks.harness.lock import OutputFolderError
        from fedarena.benchmarks.harness.runner import ProvenanceError, run_suite
        from fedarena.benchmarks.harness.store import StoreError, SuiteCollisionError
        from fedarena.benchmarks.harness.suite import SuiteError, load_suite
        from fedarena.benchmarks.harness.suites import resolve_suite_path

        try:
            suite = load_suite(resolve_suite_path(args.suite), max_runs=args.max_runs)
        except (SuiteError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    out = Path(args.out) if args.out else Path("runs") / suite.name
    print(f"suite {suite.name}: {len(suite.runs)} runs -> {out} (device {args.device})", file=sys.stderr)
    try:
        summary = run_suite(suite, out, workers=args.workers, ray_address=args.ray,
                            retry_failed=args.retry_failed, progress=not args.no_progress, fresh=args.fresh,
                            device=args.device, client_workers=args.client_workers)
    except (RayUnavailableError, ProvenanceError, OutputFolderError, SuiteCollisionError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the message short
        print(f"\ninterrupted: finished runs are in {out / 'results.sqlite'}; run the same command to resume",
              file=sys.stderr)
        return 130
    print(f"suite {suite.name}: {summary.ok} ok, {summary.failed} failed, {summary.skipped} already done "
          f"(of {summary.planned}); results in {out / 'results.sqlite'}", file=sys.stderr)
    if args.report and _report(out) != 0:
        return 2
    return 1 if summary.failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if not (folder / "results.sqlite").is_file():
        print(f"error: {folder} has no results.sqlite; run a suite into it with `fedarena run SUITE --out "
              f"{folder}`", file=sys.stderr)
        return 2
    return _report(folder, args.formats)


def _report(folder: Path, formats: Sequence[str] = ("png",)) -> int:
    from fedarena.benchmarks.harness.report import ReportWriteError, write_report
    from fedarena.benchmarks.harness.store import StoreError

    try:
        paths = write_report(folder, formats)
    except (StoreError, ReportWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {paths.markdown} and {paths.html}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from fedarena.benchmarks.harness.show import find_run, format_run
    from fedarena.benchmarks.harness.store import StoreError

    try:
        record, folder = find_run(args.run_id, Path(args.out) if args.out else None)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, FileNotFoundError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(format_run(record, folder, as_json=args.json))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from fedarena.benchmarks.harness.runs_list import format_runs, list_runs
    from fedarena.benchmarks.harness.store import StoreError

    folder = Path(args.dir)
    try:
        lines = list_runs(folder, status=args.status)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_runs(lines, folder, as_json=args.json))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from fedarena.benchmarks.harness.export import ExportError, export_tables, render_stdout, write_export
    from fedarena.benchmarks.harness.store import StoreError

    folder = Path(args.dir)
    try:
        tables = export_tables(folder, suite=args.suite, task=args.task)
        if args.out is None:
            print(render_stdout(tables, args.format, str(folder)))
            return 0
        if not tables:
            raise ExportError(f"{folder} holds no runs to export" + (" of that suite/task" if args.suite or
                                                                       args.task else ""))
        paths = write_export(tables, args.format, args.out, str(folder))
    except (StoreError, ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
@contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the body is done; it then arrives as a ``KeyboardInterrupt``.

    An interrupt in the middle of an import (torch, scipy) can be swallowed by the library and
    leave a half-initialised module behind, which then fails with an unrelated error (seen: a
    ``RecursionError`` in numpy) instead of the interrupt message. Holding it over imports and
    validation (a second or two) makes every Ctrl-C an orderly exit with status 130.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _device(text: str) -> str:
    from fedarena.benchmarks.harness.device import device_argument  # imports torch: only when --device is given

    return device_argument(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _version() -> str:
    try:
        return metadata.version("fedarena")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from fedarena.fl_core import __version__

        return __version__


if __name__ == "__main__":
    sys.exit(main())
