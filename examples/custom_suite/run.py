"""Run a custom suite from Python and read its results back (``suite.yaml`` beside this file).

The suite is validated before anything runs (a typo or a missing parameter is reported
with its field path); results go to a SQLite store in ``--out``, and ``write_report``
renders the Markdown/HTML report from it. Re-running skips the runs already stored (by the
same code: after a code change, ``--fresh`` recomputes them).

    python examples/custom_suite/run.py --out runs/my_suite
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedarena.benchmarks.harness.report import write_report
from fedarena.benchmarks.harness.runner import run_suite
from fedarena.benchmarks.harness.store import STORE_NAME, Store
from fedarena.benchmarks.harness.suite import load_suite

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=HERE / "suite.yaml")
    parser.add_argument("--out", type=Path, default=Path("runs/my_suite"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="recompute runs stored by other code")
    args = parser.parse_args(argv)

    suite = load_suite(args.suite)
    summary = run_suite(suite, args.out, workers=args.workers, progress=False, fresh=args.fresh)
    print(f"{summary.suite}: {summary.ok} ok, {summary.failed} failed, {summary.skipped} already stored")
    with Store(args.out / STORE_NAME, readonly=True) as store:
        for run in store.runs(suite.name):
            pair = f"{run.config['attack'].get('name', 'none')} vs {run.config['defense'].get('name', 'none')}"
            score = (f"PSNR {run.metrics['psnr']:.1f} dB" if run.task == "privacy"
                     else f"accuracy {run.metrics['final_accuracy']:.3f}")
            print(f"  {run.run_id} {run.task:<10} {pair:<22} {run.status}: {score}")
    paths = write_report(args.out)
    print(f"report: {paths.markdown}")
    return 0 if summary.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
