"""The ``fedarena figure`` sub-command's arguments and handler.

Kept apart from ``rebuild`` so ``fedarena --help`` need not import torch and matplotlib:
the handler imports them when the command runs.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:  # noqa: SLF001 (argparse has no public name for it)
    """Register ``fedarena figure`` on the main parser's sub-commands."""
    p = sub.add_parser("figure", help="rebuild a reconstruction grid (PNG, PDF, SVG) from stored privacy runs",
                       description="Rebuild a reconstruction grid from the privacy runs stored in DIR, with the "
                                   "chosen attacks, defenses and images; the format follows --out's suffix.")
    p.add_argument("dir", metavar="DIR", help="an output folder of `fedarena run`")
    p.add_argument("--out", required=True, metavar="FILE", help="the figure file: .png, .pdf or .svg")
    p.add_argument("--attacks", nargs="+", metavar="NAME",
                   help="attack registry names or full labels, in row order (default: all stored)")
    p.add_argument("--defenses", nargs="+", metavar="NAME",
                   help="defense registry names or full labels, e.g. gaussian_noise or "
                        "'gaussian_noise(sigma=0.01)', in row order (default: all stored)")
    p.add_argument("--images", nargs="+", type=int, metavar="I",
                   help="indices into the attacked batch, in column order (default: the report's first images)")
    p.add_argument("--seed", type=int, help="the runs' seed (default: the smallest stored)")
    p.add_argument("--suite", help="only runs of this suite")
    p.add_argument("--block", metavar="LABEL", help="only runs of this block (its label)")
    p.add_argument("--title", help="the figure title (default: suite, block, attacks vs defenses)")
    p.add_argument("--dpi", type=float, metavar="DPI", help="resolution of PNG output (default: the report's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """0 when the figure is written, 2 (with the reason on stderr) otherwise."""
    from fedarena.benchmarks.harness.store import StoreError

    from .rebuild import FigureError, Selection, rebuild_grid
    from .style import DPI

    selection = Selection(args.attacks, args.defenses, args.images, args.seed, args.suite, args.block)
    try:
        path = rebuild_grid(args.dir, args.out, selection, title=args.title,
                            dpi=DPI if args.dpi is None else args.dpi)
    except (FigureError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"figure: {path}")
    return 0
