"""Parsers for the on-disk dataset formats: IDX (MNIST family) and CIFAR python batches.

They only parse and validate; which files are official, checksums and caching are the
loaders' business (``fl_core.datasets``). Every failure is a ``CorruptDataError`` that
names the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from fl_core.data_root import CorruptDataError
from fl_core.safe_pickle import safe_load_pickle

CIFAR_PIXELS = 3 * 32 * 32


def read_idx_gz(path: str | Path) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes (``*-idx3-ubyte.gz``) as uint8."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise CorruptDataError(f"{path}: truncated or corrupt gzip stream ({exc})") from exc
    return parse_idx(raw, source=str(path))


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes: magic ``00 00 08 ndim``, ``ndim`` big-endian uint32 sizes, then data."""
    if len(raw) < 4:
        raise CorruptDataError(f"{source}: {len(raw)} bytes is too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise CorruptDataError(f"{source}: not an IDX file (magic starts {raw[:2].hex()}, "
                               "expected 0000)")
    if raw[2] != 0x08:
        raise CorruptDataError(f"{source}: IDX data type 0x{raw[2]:02x} is not supported "
                               "(MNIST-style files hold unsigned bytes, type 0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise CorruptDataError(f"{source}: IDX header declares {ndim} dimensions but the file "
                               f"holds only {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(raw) - header
    if actual != expected:
        shape = "×".join(str(d) for d in dims)
        raise CorruptDataError(f"{source}: IDX header says {shape} but the file holds {actual} "
                               f"bytes of data (expected {expected}); truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


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
    data = np.asarray(entry["data"])
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
    try:
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise CorruptDataError(f"{path}: {label_key!r} are not integers ({exc})") from exc
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
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def _as_str_keys(obj: object, path: Path, what: str) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path}: expected a dict ({what}), got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
