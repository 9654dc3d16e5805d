"""Which code produced a stored result: FedArena version, code fingerprint, git commit, torch.

Every stored run and cached unit carries a ``Provenance``. A result is reused (a suite
resumed, a script's unit read from the cache) only when it was written by the *same
code*: the same FedArena and torch versions and the same ``code`` fingerprint, a hash
of the content of every code file (``CODE_FILES``: tracked and untracked-not-ignored,
as the working tree has them). The commit is *not* compared: a commit that only edits
a results table, the docs or the README leaves the fingerprint as it was, so a long
benchmark started under one commit resumes under the next (the project's rule that a
benchmark may outlive a session), while any edit of a ``*.py`` file, a suite YAML or
``pyproject.toml`` counts as other code. The commit, the dirty flag and a fingerprint
of the uncommitted code edits (``changes``) are still recorded, for display.
Outside a git checkout (an installed package, or no ``git`` on the machine) the commit
is ``None`` and the fingerprint hashes the package folders' code files directly.
Results stored before the fingerprint existed (``code`` None) fall back to the old
rule: every field equal.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# What counts as code (git pathspecs, relative to the repository root; "*.x" matches in every folder).
CODE_FILES = ("*.py", "*.c", "*.h", "*.yaml", "*.yml", "pyproject.toml", "setup.py", "setup.cfg")
# Without git, the folders whose code files are hashed (the distribution's packages).
PACKAGES = ("fl_core", "attacks", "defenses", "benchmarks")
COMMIT_LENGTH = 12


@dataclass(frozen=True)
class Provenance:
    """The code a result was computed with: ``code`` fingerprints the code files' content (compared),
    ``commit``/``dirty``/``changes`` say where it came from (shown, not compared)."""

    fedarena: str
    commit: str | None
    dirty: bool
    torch: str
    changes: str | None = None
    code: str | None = None  # None: stored before code fingerprints (or hand-made in a test)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        return cls(str(data["fedarena"]), data.get("commit"), bool(data.get("dirty")), str(data["torch"]),
                   data.get("changes"), data.get("code"))

    def describe(self) -> str:
        """``fedarena 0.1.0 at commit abc123 (torch 2.13.0)``, naming uncommitted changes if any."""
        if self.commit is None:
            where = "outside a git checkout"
        else:
            where = f"at commit {self.commit}" + (f" with uncommitted changes [{self.changes}]" if self.dirty else "")
        code = f", code {self.code}" if self.code else ""
        return f"fedarena {self.fedarena} {where} (torch {self.torch}{code})"


def same_code(stored: Provenance | None, current: Provenance) -> bool:
    """Whether a result written under ``stored`` may be reused by ``current`` (see the module docstring)."""
    if stored is None:
        return False
    if stored.code is None or current.code is None:
        return stored == current  # no fingerprint on one side: the pre-fingerprint rule
    return (stored.fedarena, stored.torch, stored.code) == (current.fedarena, current.torch, current.code)


def mismatch_message(what: str, stored: Provenance | None, current: Provenance, remedy: str) -> str:
    """``<what> was written by <stored>; this is <current>: <remedy>`` (one line, names what differs)."""
    written = "code that recorded no provenance (an older FedArena)" if stored is None else stored.describe()
    return f"{what} was written by {written}; this is {current.describe()}: {remedy}"


@cache
def current_provenance() -> Provenance:
    """The running code's provenance (computed once per process)."""
    import torch  # here, not at module level: the store and `fedarena show` stay light

    from fedarena.fl_core import __version__

    commit, changes = _git_state(REPO_ROOT)
    return Provenance(__version__, commit, changes is not None, torch.__version__, changes,
                      code_fingerprint(REPO_ROOT))


def code_fingerprint(root: Path) -> str:
    """Hash of the content of every code file under ``root`` (path and bytes, in path order).

    In a git checkout (``root`` its top): the tracked and untracked-not-ignored files
    matching ``CODE_FILES``, as the working tree has them (a tracked file deleted from
    it counts as deleted). Otherwise: the code files under ``PACKAGES`` and the build
    files at ``root``. Docs, tables and results never enter it.
    """
    names = _git_code_files(root)
    if names is None:
        names = _walk_code_files(root)
    h = hashlib.sha256()
    for name in sorted(set(names)):
        try:
            data = (root / name).read_bytes()
        except OSError:  # deleted from the working tree (or vanished since listed)
            data = None
        h.update(name.encode() + (b"\0-\0" if data is None else b"\0+" + str(len(data)).encode() + b"\0" + data))
    return h.hexdigest()[:COMMIT_LENGTH]


def _git_code_files(root: Path) -> list[str] | None:
    try:
        top = _git(root, "rev-parse", "--show-toplevel").decode().strip()
        if Path(top).resolve() != root.resolve():
            return None
        listed = _git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *CODE_FILES)
    except (OSError, subprocess.CalledProcessError):
        return None
    return [n for n in listed.decode().split("\0") if n]


def _walk_code_files(root: Path) -> list[str]:
    names = [f for f in ("pyproject.toml", "setup.py", "setup.cfg") if (root / f).is_file()]
    suffixes = {".py", ".c", ".h", ".yaml", ".yml"}
    for package in PACKAGES:
        for path in (root / package).rglob("*"):
            if path.suffix in suffixes and path.is_file() and "__pycache__" not in path.parts:
                names.append(path.relative_to(root).as_posix())
    return names


def _git_state(root: Path) -> tuple[str | None, str | None]:
    """(short commit, fingerprint of uncommitted code changes or None) of the checkout at ``root``.

    ``(None, None)`` when git is missing or ``root`` is not the top of a checkout (e.g. the
    package installed into another project's tree).
    """
    try:
        top = _git(root, "rev-parse", "--show-toplevel").decode().strip()
        if Path(top).resolve() != root.resolve():
            return None, None
        commit = _git(root, "rev-parse", f"--short={COMMIT_LENGTH}", "HEAD").decode().strip()
        diff = _git(root, "diff", "HEAD", "--binary", "--", *CODE_FILES)
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *CODE_FILES)
    except (OSError, subprocess.CalledProcessError):
        return None, None
    names = sorted(n for n in untracked.decode().split("\0") if n)
    if not diff and not names:
        return commit, None
    h = hashlib.sha256(diff)
    for name in names:
        h.update(b"\0" + name.encode() + b"\0")
        try:
            h.update((root / name).read_bytes())
        except OSError:  # vanished since git listed it
            pass
    return commit, h.hexdigest()[:COMMIT_LENGTH]


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=True, timeout=30).stdout
