"""Hostile and careless dataset files (issue 14, item 12): every one a ``CorruptDataError`` or
``MissingDataError`` that names the file, found before much work is done; nothing coerced."""

from __future__ import annotations

import gzip
import pickle
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedarena.fl_core.data_root import CorruptDataError, DataRootError, MissingDataError, data_root
from fedarena.fl_core.dataset_formats import MAX_IDX_BYTES, parse_idx, read_idx_gz
from fedarena.fl_core.datasets import clear_dataset_cache, load_dataset


@pytest.fixture(autouse=True)
def offline_and_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDARENA_OFFLINE", "1")
    clear_dataset_cache()


def idx_header(*dims: int) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def gzip_bomb(path: Path, head: bytes, zeros: int) -> Path:
    """A gzip file holding ``head`` and then ``zeros`` zero bytes, compressed ~1000:1."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    chunk = bytes(1 << 20)
    parts = [comp.compress(head)]
    for _ in range(zeros >> 20):
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))
    return path


# ----------------------------------------------------------------------------- IDX

def test_gzip_bomb_is_refused_without_decompressing_it(tmp_path: Path) -> None:
    """A header declaring 10×28×28 images followed by 64 MiB of zeros: the old reader
    inflated the whole stream before checking the header (peak ≥ 64 MiB)."""
    path = gzip_bomb(tmp_path / "t10k-images-idx3-ubyte.gz", idx_header(10, 28, 28) + bytes(7840), 64 << 20)
    assert path.stat().st_size < 200_000  # a small file ...
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError, match="IDX header says 10×28×28") as info:
            read_idx_gz(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 8 << 20, f"peak {peak} bytes: the bomb was inflated"  # ... never inflated to 64 MiB


def test_idx_header_declaring_more_than_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = gzip_bomb(tmp_path / "x-idx3-ubyte.gz", idx_header(60000, 1000, 1000), 1 << 20)
    with pytest.raises(CorruptDataError, match=rf"60000×1000×1000 = 60000000000 bytes.*{MAX_IDX_BYTES}-byte limit"):
        read_idx_gz(path)
    small = gzip_bomb(tmp_path / "y-idx1-ubyte.gz", idx_header(100), 0)
    with pytest.raises(CorruptDataError, match="100 = 100 bytes of data, more than the 64-byte limit"):
        read_idx_gz(small, max_bytes=64)


def test_idx_header_lying_about_its_size_costs_only_the_data_present(tmp_path: Path) -> None:
    """A 50-byte file whose header declares 1000×1000×1000 (just under the cap) images."""
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header(1000, 1000, 1000) + bytes(10)))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError, match=r"1000×1000×1000 but the file holds 10 bytes of data"):
            read_idx_gz(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak} bytes: memory followed the declared size"


@pytest.mark.parametrize("dims", [(65536, 65536, 65536, 65536), (2**32 - 1, 2**32 - 1)])
def test_idx_dimensions_whose_product_overflows_are_refused(tmp_path: Path, dims: tuple[int, ...]) -> None:
    """2^16 × 2^16 × 2^16 × 2^16 = 2^64 wrapped to 0 in int64 (then a bare numpy ValueError)."""
    raw = idx_header(*dims)
    with pytest.raises(CorruptDataError, match="more than the .*-byte limit"):
        parse_idx(raw, "raw.idx")
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(CorruptDataError, match="more than the .*-byte limit") as info:
        read_idx_gz(path)
    assert str(path) in str(info.value)


def test_idx_streaming_reader_matches_the_bytes_parser(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    raw = idx_header(*arr.shape) + arr.tobytes()
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx_gz(path), arr) and np.array_equal(parse_idx(raw), arr)
    path.write_bytes(gzip.compress(raw + b"\x00"))  # one byte too many
    with pytest.raises(CorruptDataError, match="holds more"):
        read_idx_gz(path)
    path.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(CorruptDataError, match=r"7×5×3 but the file holds 104 bytes of data \(expected 105\)"):
        read_idx_gz(path)


# ----------------------------------------------------------------------------- CIFAR

def write_batch(folder: Path, name: str, obj: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


PIXELS = np.zeros((3, 3072), np.uint8)


@pytest.mark.parametrize("labels, shown", [
    ([0, 1.7, 2], r"labels\[1\] is 1.7 \(float\)"),
    ([0, "3", 2], r"labels\[1\] is '3' \(str\)"),
    ([True, False, True], r"labels\[0\] is True \(bool\)"),
    ([0, np.float64(2.0), 1], r"labels\[1\] is .*2.0.* \(float64\)"),
    (np.array([0.0, 1.5, 2.0]), "'labels' has dtype float64"),
    (np.array([True, False, True]), "'labels' has dtype bool"),
    ([0, 2**70, 1], "outside the int64 range"),
])
def test_cifar_labels_are_never_coerced(tmp_path: Path, labels: object, shown: str) -> None:
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    path = write_batch(folder, "test_batch", {b"labels": labels, b"data": PIXELS})
    with pytest.raises(CorruptDataError, match=shown) as info:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(path) in str(info.value)


def test_cifar_integer_labels_of_any_int_type_still_load(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    write_batch(folder, "test_batch", {b"labels": [np.int32(4), 7, np.uint8(9)], b"data": PIXELS})
    with pytest.warns(UserWarning, match="3 samples"):
        assert load_dataset("cifar10", "test", root=tmp_path).labels.tolist() == [4, 7, 9]
    clear_dataset_cache()
    write_batch(folder, "test_batch", {b"labels": np.array([1, 2, 3], np.uint16), b"data": PIXELS})
    with pytest.warns(UserWarning, match="3 samples"):
        assert load_dataset("cifar10", "test", root=tmp_path).labels.tolist() == [1, 2, 3]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cifar_errors_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    # ragged 'data' rows: a bare numpy ValueError before
    path = write_batch(folder, "test_batch", {b"labels": [0, 1], b"data": [[1, 2], [3]]})
    with pytest.raises(CorruptDataError, match="'data' is not an array of pixels") as info:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(path) in str(info.value)
    # a class name that is not UTF-8: a bare UnicodeDecodeError before
    write_batch(folder, "test_batch", {b"labels": [0, 1, 2], b"data": PIXELS})
    meta = write_batch(folder, "batches.meta", {b"label_names": [b"\xff"] * 10})
    clear_dataset_cache()
    with pytest.raises(CorruptDataError, match="not UTF-8") as info:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(meta) in str(info.value)
    # a label out of range in the second of several batches: only the folder was named
    write_batch(folder, "data_batch_1", {b"labels": [0, 1, 2], b"data": PIXELS})
    second = write_batch(folder, "data_batch_2", {b"labels": [0, 12, 2], b"data": PIXELS})
    meta.unlink()
    with pytest.raises(CorruptDataError, match=r"labels span \[0, 12\]") as info:
        load_dataset("cifar10", "train", root=tmp_path)
    assert str(info.value).startswith(f"{second}:")


# ----------------------------------------------------------------------------- image folders

def test_empty_class_folder_is_refused_by_name(tmp_path: Path) -> None:
    """An empty class folder used to count as a class (num_classes 3 for images of 2)."""
    root = tmp_path / "pets"
    for name in ("ant", "cat"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / name / "a.png")
    (root / "bee").mkdir()
    (root / "bee" / "notes.txt").write_text("no image here")
    with pytest.raises(MissingDataError, match=r"class folder\(s\) \['bee'\] hold no images") as info:
        load_dataset("image_folder", path=root)
    assert "bee/<image files>" in str(info.value) and str(root) in str(info.value)
    (root / "bee" / "notes.txt").unlink()
    (root / "bee").rmdir()
    ds = load_dataset("image_folder", path=root)
    assert ds.num_classes == 2 and ds.classes == ("ant", "cat")


# ----------------------------------------------------------------------------- data root

def test_unexpandable_data_root_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDARENA_DATA", "~nosuchuser-fedarena/x")
    with pytest.raises(DataRootError, match=r"\$FEDARENA_DATA is '~nosuchuser-fedarena/x': cannot expand "
                                            r"'~nosuchuser-fedarena'.*absolute path"):
        data_root()
    with pytest.raises(DataRootError, match="FEDARENA_DATA"):
        load_dataset("mnist", "test")
    with pytest.raises(DataRootError, match="the data root argument is '~nosuchuser-fedarena'"):
        data_root("~nosuchuser-fedarena")
    with pytest.raises(DataRootError, match="image_folder path"):
        load_dataset("image_folder", root="/tmp", path="~nosuchuser-fedarena/imgs")
