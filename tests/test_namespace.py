"""FedArena takes one top-level name, ``fedarena`` (issue #18): a research script's own
``attacks.py``, ``defenses.py``, ``fl_core.py`` or ``benchmarks.py`` neither shadows FedArena
nor is shadowed by it, and no FedArena module is loaded under two names (two copies of a
module are two registries)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("attacks", "defenses", "fl_core", "benchmarks")
SOURCE_DIRS = (*TOP, "fedarena", "tests", "examples")


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_scripts_own_modules_named_like_fedarenas_packages_do_not_collide(tmp_path: Path) -> None:
    for name in TOP:
        (tmp_path / f"{name}.py").write_text(f"WHO = 'the user\\'s {name}'\n")
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, '.')  # as running a script from its own folder does
        import attacks
        from fedarena.attacks.inversion import DLG
        from fedarena.defenses.aggregation import Krum
        from fedarena.metrics import match_order, psnr, ssim
        from fedarena.figures import reconstruction_grid
        from fedarena.benchmarks.harness.components import default_components
        import defenses, fl_core, benchmarks
        default_components()  # imports every registering package
        for module in (attacks, defenses, fl_core, benchmarks):
            assert module.WHO.endswith(module.__name__), module.__file__
        assert DLG.__module__ == "fedarena.attacks.inversion.dlg" and Krum.__module__.startswith("fedarena.")
        print("ok")
    """)
    done = _run(script, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_no_fedarena_module_is_loaded_under_its_top_level_name() -> None:
    """Import every module of the four packages through ``fedarena``; none may pull in a bare
    ``attacks``/``defenses``/``fl_core``/``benchmarks`` module (run from the repository root,
    where those folders would be importable)."""
    script = textwrap.dedent(f"""
        import importlib, importlib.util, pkgutil, sys
        import fedarena.metrics, fedarena.figures
        failed = []
        for top in {TOP!r}:
            package = importlib.import_module("fedarena." + top)
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                if not (importlib.util.find_spec(info.name).origin or "").endswith(".py"):
                    continue  # the C kernel: a ctypes library, not a Python module
                try:
                    importlib.import_module(info.name)
                except ModuleNotFoundError as exc:  # an optional extra (ray, flwr) that is absent
                    if (exc.name or "").startswith("fedarena"):
                        raise
                    failed.append(info.name)
        twice = sorted(n for n in sys.modules if n.split(".")[0] in {TOP!r})
        assert not twice, twice
        print(sum(n.startswith("fedarena.") for n in sys.modules), failed)
    """)
    done = _run(script, ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = int(done.stdout.split()[0])
    assert loaded > 100, done.stdout  # the walk really imported the packages


def test_sources_import_fedarena_only_through_its_namespace() -> None:
    """The static form of the check above, naming the file and line of every bare import."""
    bare = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                bare += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in TOP]
    assert not bare, "\n".join(bare)


def test_user_commands_name_the_namespace() -> None:
    """What a user types (README, Makefile, docs) runs ``python -m fedarena.…`` modules."""
    texts = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    stale = [f"{p.name}: {line.strip()}" for p in texts for line in p.read_text(encoding="utf-8").splitlines()
             if any(f"-m {top}." in line for top in TOP)]
    assert not stale, "\n".join(stale)


def test_a_checkout_serves_its_own_packages_even_when_another_fedarena_is_installed(tmp_path: Path) -> None:
    """Run from a second checkout (here a minimal copy: ``fedarena/__init__.py`` and four package
    folders) while this one is installed (``make test`` installs it editable): every
    ``fedarena.<package>`` must come from the checkout that served ``fedarena`` itself, never a
    mix of two versions."""
    (tmp_path / "fedarena").mkdir()
    (tmp_path / "fedarena" / "__init__.py").write_text((ROOT / "fedarena" / "__init__.py").read_text())
    for name in TOP:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("WHERE = 'the second checkout'\n")
    script = "import fedarena.attacks, fedarena.defenses, fedarena.fl_core, fedarena.benchmarks as b, sys\n" \
             "print(*(sys.modules['fedarena.' + n].WHERE for n in ('attacks', 'defenses', 'fl_core', 'benchmarks')))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["the", "second", "checkout"] * 4, done.stdout
