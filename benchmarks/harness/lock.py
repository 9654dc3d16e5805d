"""One driver per output folder: an OS-level lock (``fcntl.flock``) on ``DIR/.fedarena.lock``.

The lock belongs to the open file, so the kernel releases it when its holder exits, however
it exits (``kill -9`` included): a stale lock file never blocks a resume. The holder
writes its pid and start time into the file so a second driver can say who holds it.
Opening the lock file is also the first write into the folder, so an ``--out`` that is a
file, lies under a file, or is read-only or full fails here, before anything ran.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = ".fedarena.lock"


class OutputFolderError(RuntimeError):
    """The output folder cannot be used (not a folder, not writable, or in use by another driver)."""


class FolderLock:
    """``with FolderLock(folder):`` — exclusive use of ``folder`` by this process (non-blocking)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        prepare_folder(self.folder)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputFolderError(f"--out {self.folder}: cannot create {self.path.name} there "
                                    f"({exc.strerror or exc}); choose a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputFolderError(
                    f"--out {self.folder} is in use by another `fedarena run` ({holder}): one driver per output "
                    "folder. Wait for it to finish (then run the same command to pick up what is left), or choose "
                    "another --out") from None
            raise OutputFolderError(f"--out {self.folder}: cannot lock {self.path} ({exc.strerror})") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        except OSError as exc:
            os.close(fd)
            raise OutputFolderError(f"--out {self.folder}: cannot write {self.path} ({exc.strerror}); "
                                    "free space or choose another --out") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def held(folder: str | Path) -> bool:
    """Whether a live process holds ``folder``'s lock (a read-only probe: never creates the file)."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def prepare_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents), or say clearly why it cannot be an output folder."""
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"--out {folder} is a file, not a folder; choose a folder")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputFolderError(f"--out {folder}: {parent} is a file, so no folder can be created under it")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"--out {folder}: cannot create the folder ({exc.strerror or exc}); "
                                "choose a writable location") from None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"
