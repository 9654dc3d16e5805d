"""The ``fedarena`` command line: list components, run suites, write reports, show runs.

Heavy imports (torch, the registries, the harness) happen inside each sub-command so
``fedarena --version`` and ``fedarena --help`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path


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

    p = sub.add_parser("list", help="list the datasets, models, attacks and defenses suites can name")
    p.add_argument("--json", action="store_true", help='print {"datasets": [...], "models": [...], ...}')
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser("run", help="run a suite (skipping runs already in DIR's store)")
    p.add_argument("suite", metavar="SUITE", help="a suite file, or the name of a shipped suite (quick, privacy, …)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="parallel worker processes")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<suite name>)")
    p.add_argument("--ray", metavar="ADDRESS", help="distribute runs over a Ray cluster (pip install 'fedarena[ray]')")
    p.add_argument("--client-workers", type=_positive_int, default=1, metavar="N",
                   help="train each round's clients in N processes (identical results; not part of the run id)")
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
    p.set_defaults(handler=_cmd_report)

    p = sub.add_parser("show", help="print one run's configuration, metrics, artefacts and error")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id (or a unique prefix of one)")
    p.add_argument("--out", metavar="DIR", help="output folder to look in (default: every folder under runs/)")
    p.add_argument("--json", action="store_true", help="print the stored record as JSON")
    p.set_defaults(handler=_cmd_show)
    return parser


def _cmd_list(args: argparse.Namespace) -> int:
    from benchmarks.harness.components import default_components

    comps = default_components()
    if args.json:
        print(json.dumps({kind: list(names) for kind, names in comps.catalogue().items()}, indent=2))
        return 0
    for title, registry in comps.sections():
        print(f"{title}s:")
        descriptions = registry.descriptions()
        if not descriptions:
            print("  (none registered)")
        width = max((len(n) for n in descriptions), default=0)
        for name, text in descriptions.items():
            print(f"  {name:<{width}}  {text}".rstrip())
        print()
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
        from benchmarks.harness.engines.ray import RayUnavailableError, import_ray

        try:
            if args.ray:  # before the (slow) suite validation: a missing extra is said at once
                import_ray()
        except RayUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

        from benchmarks.harness.lock import OutputFolderError
        from benchmarks.harness.runner import ProvenanceError, run_suite
        from benchmarks.harness.store import StoreError, SuiteCollisionError
        from benchmarks.harness.suite import SuiteError, load_suite
        from benchmarks.harness.suites import resolve_suite_path

        try:
            suite = load_suite(resolve_suite_path(args.suite), max_runs=args.max_runs)
        except (SuiteError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    out = Path(args.out) if args.out else Path("runs") / suite.name
    os.environ["FEDARENA_CLIENT_WORKERS"] = str(args.client_workers)  # read by the tasks, in every worker
    print(f"suite {suite.name}: {len(suite.runs)} runs -> {out} (device {args.device})", file=sys.stderr)
    try:
        summary = run_suite(suite, out, workers=args.workers, ray_address=args.ray,
                            retry_failed=args.retry_failed, progress=not args.no_progress, fresh=args.fresh,
                            device=args.device)
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
    return _report(folder)


def _report(folder: Path) -> int:
    from benchmarks.harness.report import ReportWriteError, write_report
    from benchmarks.harness.store import StoreError

    try:
        paths = write_report(folder)
    except (StoreError, ReportWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {paths.markdown} and {paths.html}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from benchmarks.harness.show import find_run, format_run
    from benchmarks.harness.store import StoreError

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
    from benchmarks.harness.device import device_argument  # imports torch: only when --device is given

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
        from fl_core import __version__

        return __version__


if __name__ == "__main__":
    sys.exit(main())
