"""Where data and weights live, how missing files are fetched, and the errors that say why not.

Layout (the layout of ``../shared/assets``)::

    <root>/datasets/<name>/...    e.g. <root>/datasets/mnist/train-images-idx3-ubyte.gz
    <root>/weights/<name>/...     e.g. <root>/weights/lpips/v0.1/alex.pth

The root is the explicit argument, else ``$FEDARENA_DATA``, else ``~/.cache/fedarena``.
Files are downloaded only when missing, only from official URLs, verified by checksum
and written atomically; with ``FEDARENA_OFFLINE=1`` (or ``download=False``) nothing is
fetched and a ``MissingDataError`` names the files and the folder to put them in.
Weight loaders use ``weights_path`` and ``MissingDataError`` the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

ENV_DATA = "FEDARENA_DATA"
ENV_OFFLINE = "FEDARENA_OFFLINE"
DEFAULT_ROOT = Path("~/.cache/fedarena")
DOWNLOAD_TIMEOUT_S = 15.0


class MissingDataError(FileNotFoundError):
    """Files a loader needs are absent and could not be (or were not allowed to be) fetched."""

    def __init__(self, what: str, folder: Path, files: Sequence[str], *,
                 sources: Sequence[str] = (), reason: str = "") -> None:
        self.what = what
        self.folder = Path(folder)
        self.files = tuple(files)
        self.sources = tuple(sources)
        self.reason = reason
        lines = [f"{what}: missing {', '.join(self.files)} in {self.folder}",
                 f"  put the file(s) in {self.folder}/ (or set {ENV_DATA} to a data root "
                 f"laid out as <root>/datasets/<name>/ and <root>/weights/<name>/)"]
        if self.sources:
            lines.append("  official source(s): " + ", ".join(self.sources))
        if reason:
            lines.append(f"  not downloaded: {reason}")
        super().__init__("\n".join(lines))

    def __str__(self) -> str:  # FileNotFoundError would prefix an errno
        return str(self.args[0])

    def __reduce__(self) -> tuple:  # picklable across worker processes despite keyword args
        return _rebuild_missing, (self.what, self.folder, self.files, self.sources, self.reason)


def _rebuild_missing(what: str, folder: Path, files: Sequence[str], sources: Sequence[str],
                     reason: str) -> MissingDataError:
    return MissingDataError(what, folder, files, sources=sources, reason=reason)


class DataRootError(ValueError):
    """A data-root setting (argument or ``$FEDARENA_DATA``) cannot be turned into a folder path."""


class CorruptDataError(ValueError):
    """A data file exists but cannot be used: truncated, malformed, inconsistent."""


class ChecksumError(CorruptDataError):
    """A file that claims to be an official file has a different digest than the official one."""


@dataclass(frozen=True)
class RemoteFile:
    """One file a loader may fetch: its local name, mirror URLs (tried in order) and md5."""

    name: str
    urls: tuple[str, ...]
    md5: str


def data_root(explicit: str | Path | None = None) -> Path:
    """The data root: ``explicit`` > ``$FEDARENA_DATA`` > ``~/.cache/fedarena``."""
    if explicit is not None and str(explicit) != "":
        return expand_user(explicit, "the data root argument")
    env = os.environ.get(ENV_DATA, "").strip()
    if env:
        return expand_user(env, f"${ENV_DATA}")
    return expand_user(DEFAULT_ROOT, f"the default data root (${ENV_DATA} is not set)")


def expand_user(path: str | Path, origin: str) -> Path:
    """``Path(path).expanduser()``, with an error naming ``origin`` when ``~`` cannot be expanded.

    ``expanduser`` raises a bare ``RuntimeError("Could not determine home directory.")`` for
    ``~nosuchuser/...`` or when no home directory is known; that names neither the setting
    nor the value.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:
        user = str(path).split("/", 1)[0]
        raise DataRootError(f"{origin} is {str(path)!r}: cannot expand {user!r} (no such user, or no home "
                            f"directory: {exc}); use an absolute path, e.g. {ENV_DATA}=/data/fedarena") from None


def dataset_dir(name: str, root: str | Path | None = None) -> Path:
    """``<root>/datasets/<name>``."""
    return data_root(root) / "datasets" / name


def weights_path(*parts: str, root: str | Path | None = None) -> Path:
    """``<root>/weights/<parts...>``, e.g. ``weights_path("lpips", "v0.1", "alex.pth")``."""
    if not parts:
        raise ValueError("weights_path needs at least one path component")
    return data_root(root).joinpath("weights", *parts)


def offline() -> bool:
    """True when ``$FEDARENA_OFFLINE`` is set to a true value (1/true/yes/on)."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def download_allowed(download: bool | None) -> tuple[bool, str]:
    """Resolve a loader's ``download`` argument: None means "unless offline"."""
    if download is False:
        return False, "download=False"
    if offline():
        return False, f"{ENV_OFFLINE}={os.environ.get(ENV_OFFLINE)}"
    return True, ""


def file_digest(path: str | Path, algo: str = "md5", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def download(url: str | Sequence[str], dest: str | Path, md5: str | None = None,
             timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch ``url`` (or the first working mirror) to ``dest``, verify ``md5``, write atomically.

    Network failures of every mirror raise ``MissingDataError`` (offline is normal here);
    a wrong checksum raises ``ChecksumError`` and leaves nothing at ``dest``.
    """
    dest = Path(dest)
    urls = [url] if isinstance(url, str) else list(url)
    if offline():
        raise MissingDataError(f"download of {dest.name}", dest.parent, [dest.name], sources=urls,
                               reason=f"{ENV_OFFLINE} is set")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for u in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(u, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
        except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException) as exc:
            tmp.unlink(missing_ok=True)
            failures.append(f"{u}: {exc}")
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if md5 is not None:
            actual = file_digest(tmp, "md5")
            if actual != md5:
                tmp.unlink(missing_ok=True)
                raise ChecksumError(f"downloaded {u} has md5 {actual}, expected {md5}; "
                                    f"nothing was written to {dest}")
        os.replace(tmp, dest)
        return dest
    raise MissingDataError(f"download of {dest.name}", dest.parent, [dest.name], sources=urls,
                           reason="; ".join(failures))


def ensure_files(what: str, folder: Path, files: Sequence[RemoteFile],
                 download_arg: bool | None = None) -> list[Path]:
    """Paths of ``files`` in ``folder``; fetch the missing ones when allowed, else explain."""
    missing = [f for f in files if not (folder / f.name).is_file()]
    if missing:
        allowed, why_not = download_allowed(download_arg)
        sources = [u for f in missing for u in f.urls[:1]]
        if not allowed:
            raise MissingDataError(what, folder, [f.name for f in missing], sources=sources,
                                   reason=why_not)
        for f in missing:
            try:
                download(f.urls, folder / f.name, f.md5)
            except MissingDataError as exc:
                raise MissingDataError(what, folder, [m.name for m in missing], sources=sources,
                                       reason=exc.reason) from None
    return [folder / f.name for f in files]


def fetch_archive_members(what: str, folder: Path, archive: RemoteFile, member_dir: str,
                          members: Sequence[str], download_arg: bool | None = None) -> None:
    """Download a ``.tar.gz`` (md5-checked) and extract only ``member_dir/<members>`` into ``folder``.

    Only regular files with exactly those names are written (no path from the archive is
    trusted), each atomically, so a hostile or broken archive cannot write elsewhere.
    """
    allowed, why_not = download_allowed(download_arg)
    if not allowed:
        raise MissingDataError(what, folder, members, sources=archive.urls[:1], reason=why_not)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp_dir:
        tgz = Path(tmp_dir) / archive.name
        try:
            download(archive.urls, tgz, archive.md5)
        except MissingDataError as exc:
            raise MissingDataError(what, folder, members, sources=archive.urls[:1],
                                   reason=exc.reason) from None
        wanted = {f"{member_dir}/{m}": m for m in members}
        found: set[str] = set()
        with tarfile.open(tgz, "r:gz") as tar:
            for info in tar:
                target = wanted.get(info.name)
                if target is None or not info.isfile():
                    continue
                src = tar.extractfile(info)
                if src is None:
                    continue
                fd, part = tempfile.mkstemp(prefix=f".{target}.", suffix=".part", dir=folder)
                try:
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    os.replace(part, folder / target)
                except BaseException:
                    Path(part).unlink(missing_ok=True)
                    raise
                found.add(target)
        absent = [m for m in members if m not in found]
        if absent:
            raise CorruptDataError(f"{archive.urls[0]}: archive lacks {member_dir}/{absent}")
