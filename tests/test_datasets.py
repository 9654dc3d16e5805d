"""Datasets, data root, restricted unpickling: real files when present, synthetic files always."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedarena.fl_core.data_root import (
    ChecksumError,
    CorruptDataError,
    MissingDataError,
    RemoteFile,
    data_root,
    dataset_dir,
    download,
    fetch_archive_members,
    weights_path,
)
from fedarena.fl_core.datasets import DATASETS, DatasetSizeWarning, clear_dataset_cache, load_dataset
from fedarena.fl_core.registry import UnknownNameError
from fedarena.fl_core.safe_pickle import ForbiddenGlobalError, safe_load_pickle

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_SUBSET_TRAIN_COUNTS = [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]
CIFAR_SUBSET_TEST_COUNTS = [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


# ----------------------------------------------------------------------------- helpers

def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(payload)
    return path


def write_mnist_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    stem = "train" if split == "train" else "t10k"
    write_gz(folder / f"{stem}-images-idx3-ubyte.gz", idx_bytes(images.astype(np.uint8)))
    write_gz(folder / f"{stem}-labels-idx1-ubyte.gz", idx_bytes(labels.astype(np.uint8)))


def write_pickle(path: Path, obj: object, protocol: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def cifar_batch(n: int, seed: int, label_key: bytes = b"labels",
                num_classes: int = 10) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n)
    return {b"batch_label": b"synthetic", label_key: labels.tolist(), b"data": data}, data, labels


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs offline; a network attempt fails the test loudly."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("FEDARENA_OFFLINE", "1")


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    clear_dataset_cache()


def shared_root() -> Path:
    return data_root()


def needs(*relative: str) -> pytest.MarkDecorator:
    missing = [r for r in relative if not (shared_root() / r).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"data root {shared_root()} lacks {missing} "
                                                    "(set FEDARENA_DATA to ../shared/assets)")


# ----------------------------------------------------------------------------- data root

def test_data_root_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDARENA_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("FEDARENA_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "fedarena"
    assert dataset_dir("mnist", tmp_path) == tmp_path / "datasets" / "mnist"
    assert weights_path("lpips", "v0.1", "alex.pth", root=tmp_path) == \
        tmp_path / "weights" / "lpips" / "v0.1" / "alex.pth"


@pytest.mark.parametrize("name, folder, expected", [
    ("mnist", "mnist", ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]),
    ("fashion_mnist", "fashion-mnist", ["train-images-idx3-ubyte.gz"]),
    ("cifar10", "cifar-10-batches-py", ["data_batch_1", "data_batch_5"]),
    ("cifar100", "cifar-100-python", ["train"]),
])
def test_missing_files_name_files_and_folder(tmp_path: Path, name: str, folder: str,
                                             expected: list[str]) -> None:
    with pytest.raises(MissingDataError) as info:
        load_dataset(name, "train", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "datasets" / folder) in msg
    assert "FEDARENA_DATA" in msg and "FEDARENA_OFFLINE" in msg
    for f in expected:
        assert f in msg
    assert isinstance(info.value, FileNotFoundError)


def test_download_false_never_touches_network(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDARENA_OFFLINE")
    with pytest.raises(MissingDataError, match="download=False"):
        load_dataset("mnist", "test", root=tmp_path, download=False)


def test_unreachable_network_gives_missing_data_error(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDARENA_OFFLINE")
    calls: list[str] = []

    def unreachable(url: str, timeout: float) -> None:
        calls.append(url)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(MissingDataError, match="no route to host") as info:
        load_dataset("mnist", "test", root=tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    assert calls and all(c.endswith("t10k-images-idx3-ubyte.gz") for c in calls)
    assert not any((tmp_path / "datasets" / "mnist").glob("*.gz"))


def test_download_verifies_checksum_and_writes_atomically(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDARENA_OFFLINE")
    payload = b"some official bytes"
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout: io.BytesIO(payload))
    dest = tmp_path / "x" / "file.bin"
    with pytest.raises(ChecksumError, match="expected 0+"):
        download("https://example.invalid/file.bin", dest, md5="0" * 32)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    download("https://example.invalid/file.bin", dest, md5=hashlib.md5(payload).hexdigest())
    assert dest.read_bytes() == payload


def test_archive_extraction_writes_only_the_named_members(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDARENA_OFFLINE")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("cifar-10-batches-py/test_batch", b"batch"),
                           ("cifar-10-batches-py/readme.html", b"other"),
                           ("../escape", b"evil"), ("/abs/test_batch", b"evil")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(archive))
    remote = RemoteFile("a.tar.gz", ("https://example.invalid/a.tar.gz",),
                        hashlib.md5(archive).hexdigest())
    folder = tmp_path / "root" / "cifar"
    fetch_archive_members("cifar10 test split", folder, remote, "cifar-10-batches-py",
                          ["test_batch"])
    assert sorted(p.name for p in folder.iterdir()) == ["test_batch"]
    assert (folder / "test_batch").read_bytes() == b"batch"
    assert not (tmp_path / "root" / "escape").exists()
    with pytest.raises(CorruptDataError, match="archive lacks"):
        fetch_archive_members("x", folder, remote, "cifar-10-batches-py", ["data_batch_1"])


# ----------------------------------------------------------------------------- MNIST format

def test_idx_round_trip_and_small_set_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50)
    write_mnist_split(tmp_path / "datasets" / "mnist", "test", images, labels)
    with pytest.warns(DatasetSizeWarning, match=r"50 samples.*official file 10000"):
        ds = load_dataset("mnist", "test", root=tmp_path)
    assert ds.images.shape == (50, 1, 28, 28) and ds.images.dtype == torch.float32
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images).float() / 255)
    assert torch.equal(ds.labels, torch.from_numpy(labels))
    assert ds.num_classes == 10 and ds.normalization.mean == (0.1307,)


def test_official_looking_idx_with_wrong_checksum_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "fashion-mnist"
    write_mnist_split(folder, "test", np.zeros((10000, 28, 28)), np.zeros(10000))
    path = folder / "t10k-images-idx3-ubyte.gz"
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as info:
        load_dataset("fashion_mnist", "test", root=tmp_path)
    msg = str(info.value)
    assert str(path) in msg and actual in msg and "bef4ecab320f06d8554ea6380940ec79" in msg


def test_truncated_idx_payload_names_file_and_shape(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "mnist"
    write_mnist_split(folder, "test", np.zeros((10, 28, 28)), np.zeros(10))
    bad = idx_bytes(np.zeros((10000, 28, 28), dtype=np.uint8))[:5000]
    path = write_gz(folder / "t10k-images-idx3-ubyte.gz", bad)
    with pytest.raises(CorruptDataError, match="10000×28×28") as info:
        load_dataset("mnist", "test", root=tmp_path)
    assert str(path) in str(info.value)


def test_truncated_gzip_stream_names_file(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "mnist"
    write_mnist_split(folder, "test", np.ones((40, 28, 28)), np.zeros(40))
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptDataError, match="gzip") as info:
        load_dataset("mnist", "test", root=tmp_path)
    assert str(path) in str(info.value)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "mnist"
    write_mnist_split(folder, "test", np.zeros((12, 28, 28)), np.zeros(11))
    with pytest.raises(CorruptDataError, match="12 images but .* 11 labels"):
        load_dataset("mnist", "test", root=tmp_path)


def test_cache_returns_fresh_tensors_and_sees_file_changes(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "mnist"
    write_mnist_split(folder, "test", np.full((5, 28, 28), 10), np.arange(5))
    with pytest.warns(DatasetSizeWarning):
        a = load_dataset("mnist", "test", root=tmp_path)
        a.images.zero_()
        b = load_dataset("mnist", "test", root=tmp_path)
    assert torch.allclose(b.images, torch.full_like(b.images, 10 / 255))
    write_mnist_split(folder, "test", np.full((7, 28, 28), 20), np.arange(7))
    os.utime(folder / "t10k-images-idx3-ubyte.gz", ns=(1, 10**18))
    os.utime(folder / "t10k-labels-idx1-ubyte.gz", ns=(1, 10**18))
    with pytest.warns(DatasetSizeWarning):
        c = load_dataset("mnist", "test", root=tmp_path)
    assert len(c) == 7 and torch.allclose(c.images, torch.full_like(c.images, 20 / 255))


# ----------------------------------------------------------------------------- CIFAR format

@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_round_trip(tmp_path: Path, protocol: int) -> None:
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    b1, d1, l1 = cifar_batch(30, 1)
    b2, d2, l2 = cifar_batch(20, 2)
    bt, dt, lt = cifar_batch(10, 3)
    write_pickle(folder / "data_batch_1", b1, protocol)
    write_pickle(folder / "data_batch_2", b2, protocol)
    write_pickle(folder / "test_batch", bt, protocol)
    names = [f"class{i}".encode() for i in range(10)]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072}, protocol)
    with pytest.warns(DatasetSizeWarning, match=r"50 samples .*official split has 50000"):
        train = load_dataset("cifar10", "train", root=tmp_path)
    expected = np.concatenate([d1, d2]).reshape(50, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(expected).float() / 255)
    assert torch.equal(train.labels, torch.from_numpy(np.concatenate([l1, l2])))
    assert train.classes == tuple(f"class{i}" for i in range(10))
    assert train.images[0, 1, 0, 0] == d1[0, 1024] / 255  # channel-major rows
    with pytest.warns(DatasetSizeWarning, match="10 samples"):
        test = load_dataset("cifar10", "test", root=tmp_path)
    assert torch.equal(test.images, torch.from_numpy(dt.reshape(10, 3, 32, 32)).float() / 255)
    assert torch.equal(test.labels, torch.from_numpy(lt))


def test_cifar100_fine_labels_and_meta(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "cifar-100-python"
    batch, data, labels = cifar_batch(25, 4, label_key=b"fine_labels", num_classes=100)
    batch[b"coarse_labels"] = [0] * 25
    write_pickle(folder / "train", batch)
    write_pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    with pytest.warns(DatasetSizeWarning, match="25 samples"):
        ds = load_dataset("cifar100", "train", root=tmp_path)
    assert ds.num_classes == 100 and ds.classes[42] == "f42"
    assert torch.equal(ds.labels, torch.from_numpy(labels))
    assert torch.equal(ds.images, torch.from_numpy(data.reshape(25, 3, 32, 32)).float() / 255)


def test_official_looking_cifar_batch_with_wrong_checksum_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    batch = {b"labels": [0] * 10000, b"data": np.zeros((10000, 3072), dtype=np.uint8)}
    path = write_pickle(folder / "test_batch", batch, protocol=4)
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as info:
        load_dataset("cifar10", "test", root=tmp_path)
    msg = str(info.value)
    assert str(path) in msg and actual in msg and "40351d587109b95175f43aff81a1287e" in msg


def test_truncated_cifar_pickle_names_file(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    path = write_pickle(folder / "test_batch", cifar_batch(10, 0)[0])
    path.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(CorruptDataError, match="truncated or corrupt pickle") as info:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(path) in str(info.value)


def test_cifar_batch_with_wrong_structure(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    write_pickle(folder / "test_batch", {b"labels": [1, 2], b"data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(CorruptDataError, match=r"shape \(2, 100\)"):
        load_dataset("cifar10", "test", root=tmp_path)


# ----------------------------------------------------------------------------- restricted unpickler

class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch '{self.marker}'",)


def test_restricted_unpickler_refuses_code_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _RunsShell(marker), b"labels": [0]}, protocol=2)
    pickle.loads(payload)  # the payload is live: plain pickle runs the command
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(ForbiddenGlobalError) as info:
        safe_load_pickle(path)
    assert "system" in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, pickle.UnpicklingError)
    assert not marker.exists()

    batch_path = tmp_path / "datasets" / "cifar-10-batches-py" / "test_batch"
    batch_path.parent.mkdir(parents=True)
    batch_path.write_bytes(payload)
    with pytest.raises(ForbiddenGlobalError):
        load_dataset("cifar10", "test", root=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [eval, getattr, np.load, Path])
def test_restricted_unpickler_refuses_other_globals(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "g.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ForbiddenGlobalError, match="refusing to load global"):
        safe_load_pickle(path)


def test_restricted_unpickler_builds_arrays_and_plain_types(tmp_path: Path) -> None:
    obj = {b"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, 2.5, "x", b"y"],
           "c": np.int64(7), "d": (True, None)}
    for protocol in (2, 4, 5):
        out = safe_load_pickle(write_pickle(tmp_path / f"p{protocol}", obj, protocol))
        assert np.array_equal(out[b"a"], obj[b"a"]) and out[b"a"].dtype == np.float32
        assert out["b"] == obj["b"] and out["c"] == 7 and out["d"] == (True, None)


# ----------------------------------------------------------------------------- bundled data

def test_digits_split_is_stratified_and_deterministic() -> None:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert train.images.shape[1:] == (1, 8, 8)
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    frac = test.labels.bincount(minlength=10).float() / (
        test.labels.bincount(minlength=10) + train.labels.bincount(minlength=10)).float()
    assert torch.all((frac - 0.2).abs() < 0.02)
    assert torch.equal(load_dataset("digits", "train").images, train.images)
    mean, std = float(train.images.mean()), float(train.images.std(correction=0))
    assert train.normalization.mean[0] == pytest.approx(mean, abs=1e-4)
    assert train.normalization.std[0] == pytest.approx(std, abs=1e-4)
    assert test.normalization == train.normalization
    # train ∪ test is exactly the bundled set: every image once, none in both splits
    from sklearn.datasets import load_digits

    full = sorted(r.tobytes() for r in (load_digits().images / 16).astype(np.float32))
    both = sorted(r.tobytes() for r in torch.cat([train.images, test.images]).numpy()[:, 0])
    assert both == full


def test_sample_images_tiles() -> None:
    train, test = load_dataset("sample_images", "train"), load_dataset("sample_images", "test")
    assert train.images.shape == (96, 3, 32, 32) and test.images.shape == (24, 3, 32, 32)
    assert train.labels.bincount().tolist() == [48, 48] and train.classes == ("china", "flower")
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    assert float(train.images.std(dim=(1, 2, 3)).min()) > 0.01  # real content, not flat tiles
    coarse = load_dataset("sample_images", "train", downscale=4)
    assert len(coarse) == 24  # 3×5 tiles per photo, 1 in 5 held out


# ----------------------------------------------------------------------------- image folders

def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_classes_resize_and_normalisation(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    _png(root / "zebra" / "a.png", np.full((40, 60, 3), 200, np.uint8))
    _png(root / "ant" / "b.png", np.full((20, 20, 3), 50, np.uint8))
    _png(root / "ant" / "sub" / "c.png", np.full((30, 30, 3), 100, np.uint8))
    (root / "ant" / "notes.txt").write_text("not an image")
    ds = load_dataset("image_folder", path=root, image_size=16)
    assert ds.classes == ("ant", "zebra") and ds.labels.tolist() == [0, 0, 1]
    assert ds.images.shape == (3, 3, 16, 16)
    assert torch.allclose(ds.images[:, 0, 8, 8], torch.tensor([50, 100, 200]) / 255, atol=1e-6)
    assert ds.normalization.mean[0] == pytest.approx(float(ds.images[:, 0].mean()), abs=1e-4)
    with pytest.raises(ValueError, match="pass image_size"):
        load_dataset("image_folder", path=root)


def test_image_folder_relative_to_root_gray_and_splits(tmp_path: Path) -> None:
    base = tmp_path / "datasets" / "digits-png"
    _png(base / "train" / "0" / "x.png", np.zeros((8, 8), np.uint8))
    _png(base / "train" / "1" / "y.png", np.full((8, 8), 255, np.uint8))
    _png(base / "test" / "1" / "z.png", np.full((8, 8), 255, np.uint8))
    train = load_dataset("image_folder", "train", root=tmp_path, path="digits-png")
    test = load_dataset("image_folder", "test", root=tmp_path, path="digits-png")
    assert train.images.shape == (2, 1, 8, 8) and len(test) == 1
    assert test.classes == ("1",)


def test_flat_prefix_folder(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "foolbox-samples"
    for i, label in enumerate([3, 8, 0]):
        _png(folder / f"cifar10_{i:02d}_{label}.png", np.full((32, 32, 3), i * 40, np.uint8))
    _png(folder / "mnist_00_7.png", np.zeros((28, 28), np.uint8))
    ds = load_dataset("samples", root=tmp_path, prefix="cifar10")
    assert ds.labels.tolist() == [3, 8, 0] and ds.images.shape == (3, 3, 32, 32)
    assert ds.classes[3] == "cat" and ds.normalization.mean == (0.4914, 0.4822, 0.4465)
    with pytest.raises(MissingDataError, match="cifar100_<NN>_<label>"):
        load_dataset("samples", root=tmp_path, prefix="cifar100")


# ----------------------------------------------------------------------------- API errors

def test_registry_and_argument_errors() -> None:
    assert {"mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "samples",
            "digits", "sample_images"} <= set(DATASETS.names())
    with pytest.raises(UnknownNameError, match="known: .*mnist"):
        load_dataset("mnsit")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", "validation")
    with pytest.raises(TypeError, match="accepts: test_size, seed"):
        load_dataset("digits", alpha=1)


# ----------------------------------------------------------------------------- shared assets

@needs("datasets/mnist/train-images-idx3-ubyte.gz", "datasets/mnist/t10k-labels-idx1-ubyte.gz")
def test_real_mnist() -> None:
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert train.labels.bincount().tolist() == MNIST_TRAIN_COUNTS
    assert test.labels.bincount().tolist() == MNIST_TEST_COUNTS
    assert float(train.images.mean()) == pytest.approx(0.1307, abs=1e-4)


@needs("datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
def test_real_fashion_mnist_test() -> None:
    test = load_dataset("fashion_mnist", "test")
    assert len(test) == 10000 and test.labels.bincount().tolist() == [1000] * 10


@needs("datasets/cifar-10-batches-py/data_batch_1", "datasets/cifar-10-batches-py/test_batch")
def test_real_cifar10_subset_loads_with_warning() -> None:
    with pytest.warns(DatasetSizeWarning, match="4000 samples.*50000"):
        train = load_dataset("cifar10", "train")
    with pytest.warns(DatasetSizeWarning, match="1000 samples.*10000"):
        test = load_dataset("cifar10", "test")
    assert train.images.shape == (4000, 3, 32, 32) and len(test) == 1000
    assert train.labels.bincount().tolist() == CIFAR_SUBSET_TRAIN_COUNTS
    assert test.labels.bincount().tolist() == CIFAR_SUBSET_TEST_COUNTS
    assert train.classes[0] == "airplane" and train.classes[9] == "truck"


@needs("datasets/foolbox-samples/cifar10_00_3.png", "datasets/cifar-10-batches-py/test_batch")
def test_real_foolbox_cifar10_samples_equal_test_images() -> None:
    samples = load_dataset("samples", prefix="cifar10")
    with pytest.warns(DatasetSizeWarning):
        test = load_dataset("cifar10", "test")
    assert len(samples) == 20
    assert torch.equal(samples.labels, test.labels[:20])
    assert torch.equal(samples.images, test.images[:20])
