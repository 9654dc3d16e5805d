"""The suites shipped in ``benchmarks/suites/``, addressable by name (``fedarena run quick``)."""

from __future__ import annotations

from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"


def shipped_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SUITES_DIR.glob("*.yaml"))}


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A path as given when it exists, else the shipped suite of that name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = shipped_suites()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise FileNotFoundError(f"no suite file {str(name_or_path)!r}, and no shipped suite of that name; "
                            f"shipped: {', '.join(shipped) or '(none)'}")
