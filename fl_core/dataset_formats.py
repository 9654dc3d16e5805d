"""Parsers for the on-disk dataset formats: IDX (MNIST family) and CIFAR python batches.

They only parse and validate; which files are official, checksums and caching are the
loaders' business (``fedarena.fl_core.datasets``). Every failure is a ``CorruptDataError`` that
names the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from fedarena.fl_core.data_root import CorruptDataError
from fedarena.fl_core.safe_pickle import safe_load_pickle

CIFAR_PIXELS = 3 * 32 * 32
# Largest IDX payload read (1 GiB): EMNIST ByClass, the largest IDX set in common use, holds
# 697,932 × 28 × 28 ≈ 547 MB; a header declaring more is refused before decompressing.
MAX_IDX_BYTES = 1 << 30


def read_idx_gz(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes (``*-idx3-ubyte.gz``) as uint8.

    The header is read first and decompression stops at the size it declares (at most
    ``max_bytes``): a small file that inflates to gigabytes (a gzip bomb) is refused
    after one byte past the declared data, never decompressed in full.
    """
    path = Path(path)
    source = str(path)
    try:
        with gzip.open(path, "rb") as f:
            magic = f.read(4)
            ndim = _idx_ndim(magic, source)
            sizes = f.read(4 * ndim)
            dims, expected = _idx_dims(ndim, sizes, 4 + len(sizes), source, max_bytes)
            data = _read_at_most(f, expected)
            if len(data) != expected:
                raise CorruptDataError(_idx_size_message(source, dims, len(data), expected))
            if f.read(1):
                raise CorruptDataError(f"{source}: IDX header says {_shape(dims)} ({expected} bytes of data) "
                                       "but the file holds more; corrupt, or not the file its header describes")
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise CorruptDataError(f"{path}: truncated or corrupt gzip stream ({exc})") from exc
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_idx_gz_shape(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> tuple[int, ...]:
    """The dimensions a gzip-compressed IDX file's header declares; only the header is decompressed."""
    source = str(path)
    try:
        with gzip.open(path, "rb") as f:
            ndim = _idx_ndim(f.read(4), source)
            sizes = f.read(4 * ndim)
            return _idx_dims(ndim, sizes, 4 + len(sizes), source, max_bytes)[0]
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptDataError(f"{path}: truncated or corrupt gzip stream ({exc})") from exc


def _read_at_most(f: gzip.GzipFile, size: int, chunk: int = 1 << 24) -> bytes:
    """Up to ``size`` bytes, read in chunks: memory follows the data actually there, not the
    size a (possibly lying) header declares."""
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = f.read(min(remaining, chunk))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def parse_idx(raw: bytes, source: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse IDX bytes: magic ``00 00 08 ndim``, ``ndim`` big-endian uint32 sizes, then data."""
    ndim = _idx_ndim(raw[:4], source, total=len(raw))
    header = 4 + 4 * ndim
    dims, expected = _idx_dims(ndim, raw[4:header], len(raw), source, max_bytes)
    actual = len(raw) - header
    if actual != expected:
        raise CorruptDataError(_idx_size_message(source, dims, actual, expected))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_ndim(magic: bytes, source: str, total: int | None = None) -> int:
    """Check the 4-byte IDX magic; return the number of dimensions it declares."""
    if len(magic) < 4:
        raise CorruptDataError(f"{source}: {total if total is not None else len(magic)} bytes is too short "
                               "for an IDX header")
    if magic[0] != 0 or magic[1] != 0:
        raise CorruptDataError(f"{source}: not an IDX file (magic starts {magic[:2].hex()}, "
                               "expected 0000)")
    if magic[2] != 0x08:
        raise CorruptDataError(f"{source}: IDX data type 0x{magic[2]:02x} is not supported "
                               "(MNIST-style files hold unsigned bytes, type 0x08)")
    return magic[3]


def _idx_dims(ndim: int, sizes: bytes, held: int, source: str, max_bytes: int) -> tuple[tuple[int, ...], int]:
    """The declared dimensions and data size; refuses sizes over ``max_bytes`` (exact integer product,
    so dimensions whose product overflows 64 bits cannot wrap to a small number)."""
    if ndim == 0 or len(sizes) < 4 * ndim:
        raise CorruptDataError(f"{source}: IDX header declares {ndim} dimensions but the file "
                               f"holds only {held} bytes")
    dims = struct.unpack(f">{ndim}I", sizes)
    expected = math.prod(dims)
    if expected > max_bytes:
        raise CorruptDataError(f"{source}: IDX header says {_shape(dims)} = {expected} bytes of data, more "
                               f"than the {max_bytes}-byte limit; a corrupt or hostile header (pass "
                               "max_bytes=... to read a genuine file that large)")
    return dims, expected


def _idx_size_message(source: str, dims: tuple[int, ...], actual: int, expected: int) -> str:
    return (f"{source}: IDX header says {_shape(dims)} but the file holds {actual} "
            f"bytes of data (expected {expected}); truncated or corrupt")


def _shape(dims: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in dims)


def read_cifar_batch(path: str | Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch → (uint8 images ``[N, 3, 32, 32]``, int64 labels ``[N]``).

    ``label_key`` is ``"labels"`` for CIFAR-10 and ``"fine_labels"`` for CIFAR-100. Keys may
    be bytes (``encoding="bytes"``, the usual way) or str.
    """
    path = Path(path)
    entry = _as_str_keys(safe_load_pickle(path), path, "a CIFAR batch")
    if "data" not in entry:
        raise CorruptDataError(f"{path}: no 'data' entry (keys: {sorted(entry)}); "
                               "not a CIFAR batch")
    try:
        data = np.asarray(entry["data"])
    except (ValueError, TypeError, OverflowError) as exc:  # ragged rows, unconvertible items
        raise CorruptDataError(f"{path}: 'data' is not an array of pixels ({exc})") from exc
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.size and (
                data.min() < 0 or data.max() > 255):
            raise CorruptDataError(f"{path}: 'data' has dtype {data.dtype}; expected uint8 pixels")
        data = data.astype(np.uint8)
    if data.ndim == 2 and data.shape[1] == CIFAR_PIXELS:
        data = data.reshape(-1, 3, 32, 32)  # rows are channel-major: 1024 R, 1024 G, 1024 B
    elif not (data.ndim == 4 and data.shape[1:] == (3, 32, 32)):
        raise CorruptDataError(f"{path}: 'data' has shape {data.shape}; expected "
                               f"[N, {CIFAR_PIXELS}] (or [N, 3, 32, 32])")
    if label_key not in entry:
        raise CorruptDataError(f"{path}: no {label_key!r} entry (keys: {sorted(entry)})")
    labels = _integer_labels(entry[label_key], path, label_key)
    if labels.shape != (data.shape[0],):
        raise CorruptDataError(f"{path}: {data.shape[0]} images but {label_key!r} has shape "
                               f"{labels.shape}")
    return data, labels


def read_cifar_meta(path: str | Path, key: str) -> list[str]:
    """Class names from ``batches.meta`` (key ``label_names``) or ``meta`` (``fine_label_names``)."""
    path = Path(path)
    entry = _as_str_keys(safe_load_pickle(path), path, "a CIFAR meta file")
    names = entry.get(key)
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise CorruptDataError(f"{path}: no list of class names under {key!r}")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError as exc:
        raise CorruptDataError(f"{path}: a class name under {key!r} is not UTF-8 text ({exc})") from exc


def _integer_labels(value: object, path: Path, key: str) -> np.ndarray:
    """Labels as int64, refusing anything that is not already an integer.

    ``np.asarray(..., dtype=int64)`` would truncate ``1.7`` to 1, parse ``"3"`` and turn
    booleans into 0/1, so a damaged or hand-made file would load with wrong labels.
    """
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_ or not np.issubdtype(value.dtype, np.integer):
            raise CorruptDataError(f"{path}: {key!r} has dtype {value.dtype}; expected integer class labels")
        if value.dtype.kind == "u" and value.size and value.max() > np.iinfo(np.int64).max:
            raise CorruptDataError(f"{path}: {key!r} holds {value.max()}, outside the int64 range")
        return value.astype(np.int64)
    if not isinstance(value, list | tuple):
        raise CorruptDataError(f"{path}: {key!r} must be a list of integer class labels; "
                               f"got {type(value).__name__}")
    for i, label in enumerate(value):
        if isinstance(label, bool | np.bool_) or not isinstance(label, int | np.integer):
            raise CorruptDataError(f"{path}: {key}[{i}] is {label!r} ({type(label).__name__}); expected an "
                                   "integer class label (labels are never rounded or parsed)")
    try:
        return np.array(value, dtype=np.int64)
    except OverflowError as exc:
        raise CorruptDataError(f"{path}: {key!r} holds an integer outside the int64 range ({exc})") from exc


def _as_str_keys(obj: object, path: Path, what: str) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path}: expected a dict ({what}), got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
