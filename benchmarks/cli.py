"""The ``fedarena`` command line: list components, run suites, write reports, show runs.

Heavy imports (torch, the registries, the harness) happen inside each sub-command so
``fedarena --version`` and ``fedarena --help`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import metadata


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedarena`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedarena", description="Measure how federated learning leaks and breaks.")
    parser.add_argument("--version", action="version", version=f"fedarena {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list the datasets, models, attacks and defenses suites can name")
    p.add_argument("--json", action="store_true", help='print {"datasets": [...], "models": [...], ...}')
    p.set_defaults(handler=_cmd_list)
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


def _version() -> str:
    try:
        return metadata.version("fedarena")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from fl_core import __version__

        return __version__


if __name__ == "__main__":
    sys.exit(main())
