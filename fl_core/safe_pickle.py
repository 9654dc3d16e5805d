"""A restricted unpickler for CIFAR-style python batches.

``pickle.load`` runs whatever callables a file names, so a downloaded or shared dataset
file could execute code. ``SafeUnpickler`` only resolves the few globals that CIFAR
batches contain (numpy array reconstruction, for protocols 2 to 5, and the latin-1 byte
encoding numpy uses under protocol 2); dicts, lists, strings, bytes and numbers need no globals at all.
Anything else is refused before it is called.
"""

from __future__ import annotations

import functools
import importlib
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from fedarena.fl_core.data_root import CorruptDataError


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; nothing it names was called."""


def safe_load_pickle(path: str | Path, encoding: str = "bytes") -> Any:
    """Unpickle ``path`` with ``SafeUnpickler``.

    ``encoding="bytes"`` keeps Python-2 ``str`` objects (CIFAR keys such as ``b"data"``)
    as bytes, like ``pickle.load(f, encoding="bytes")``. A refused global raises
    ``ForbiddenGlobalError``; a truncated or malformed file raises ``CorruptDataError``;
    both name the file.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return SafeUnpickler(f, encoding=encoding, source=str(path)).load()
        except ForbiddenGlobalError:
            raise
        except (EOFError, pickle.UnpicklingError, ValueError, KeyError, IndexError, TypeError,
                AttributeError, struct.error, OverflowError, MemoryError) as exc:
            raise CorruptDataError(f"{path}: truncated or corrupt pickle "
                                   f"({type(exc).__name__}: {exc})") from exc


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns allow-listed objects."""

    def __init__(self, file: Any, *, encoding: str = "bytes", source: str = "<stream>") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed().get((module, name))
        if obj is None:
            raise ForbiddenGlobalError(
                f"{self.source}: refusing to load global {module}.{name}; only numpy array "
                "reconstruction is allowed in dataset pickles (is this file really a CIFAR batch?)")
        return obj


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``, which numpy's protocol-2 pickles use for raw bytes."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() not in {
            "latin1", "iso88591"}:
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1", errors)


@functools.cache
def _allowed() -> dict[tuple[str, str], Any]:
    """(module, name) → the object to return; both numpy 1 and numpy 2 module paths."""
    try:  # numpy >= 2; importing numpy.core there emits a DeprecationWarning
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = multiarray._reconstruct
        table[(mod, "scalar")] = multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):  # protocol-5 arrays
        table[(mod, "_frombuffer")] = numeric._frombuffer
    return table
