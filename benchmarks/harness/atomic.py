"""Atomic file writes: a reader (or a resumed suite) never sees half a file.

Data goes to a temporary name in the same folder, is flushed to disk, then renamed
over the target with ``os.replace`` (atomic on POSIX and Windows). The temporary's
name carries its writer's pid (``.<name>.<pid>.<random>.tmp``), so ``clean_temporaries``
removes only what a writer that is gone left behind, never another live writer's file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"
_OWNER = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new content."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def clean_temporaries(folder: str | Path) -> int:
    """Remove temporaries whose writer is provably gone (its pid is not alive); returns how many.

    A temporary without a pid in its name (written by an older FedArena) or of a live pid
    is left alone: it may be another writer's file in flight.
    """
    removed = 0
    for tmp in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        match = _OWNER.match(tmp.name)
        if match and tmp.is_file() and not pid_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
