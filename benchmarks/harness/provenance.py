"""Which code produced a stored result: FedArena version, git commit, uncommitted changes, torch.

Every stored run and cached unit carries a ``Provenance``. A result is reused (a suite
resumed, a script's unit read from the cache) only when it was written by the *same
code*: the same FedArena version, the same commit, the same torch version, and the same
uncommitted changes to code files. Uncommitted changes are fingerprinted (a hash of
``git diff HEAD`` and of the untracked files, restricted to ``CODE_FILES``), so a dirty tree resumes its
own runs as long as its edits stay byte for byte the same, and any further edit counts
as other code. Tables, docs and results (``*.md``, ``*.json``, PNGs) are not code: a
script rewriting its table after every unit does not invalidate its own cache.
Outside a git checkout (an installed package, or no ``git`` on the machine) the commit
is ``None``, and only the versions are compared.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# What counts as code for the dirty fingerprint (git pathspecs, relative to the repository root).
CODE_FILES = ("*.py", "*.c", "*.h", "*.yaml", "*.yml", "*.toml", "*.cfg")
COMMIT_LENGTH = 12


@dataclass(frozen=True)
class Provenance:
    """The code a result was computed with; ``changes`` fingerprints uncommitted code edits."""

    fedarena: str
    commit: str | None
    dirty: bool
    torch: str
    changes: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        return cls(str(data["fedarena"]), data.get("commit"), bool(data.get("dirty")), str(data["torch"]),
                   data.get("changes"))

    def describe(self) -> str:
        """``fedarena 0.1.0 at commit abc123 (torch 2.13.0)``, naming uncommitted changes if any."""
        if self.commit is None:
            where = "outside a git checkout"
        else:
            where = f"at commit {self.commit}" + (f" with uncommitted changes [{self.changes}]" if self.dirty else "")
        return f"fedarena {self.fedarena} {where} (torch {self.torch})"


def same_code(stored: Provenance | None, current: Provenance) -> bool:
    """Whether a result written under ``stored`` may be reused by ``current`` (see the module docstring)."""
    return stored == current


def mismatch_message(what: str, stored: Provenance | None, current: Provenance, remedy: str) -> str:
    """``<what> was written by <stored>; this is <current>: <remedy>`` (one line, names what differs)."""
    written = "code that recorded no provenance (an older FedArena)" if stored is None else stored.describe()
    return f"{what} was written by {written}; this is {current.describe()}: {remedy}"


@cache
def current_provenance() -> Provenance:
    """The running code's provenance (computed once per process)."""
    import torch  # here, not at module level: the store and `fedarena show` stay light

    from fl_core import __version__

    commit, changes = _git_state(REPO_ROOT)
    return Provenance(__version__, commit, changes is not None, torch.__version__, changes)


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
