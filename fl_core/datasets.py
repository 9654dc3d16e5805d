"""Datasets by name: ``load_dataset("mnist", "train")`` → ``ImageDataset`` (pixels in [0, 1]).

Registered names (``DATASETS.names()``):

- ``mnist``, ``fashion_mnist``: the four official IDX ``.gz`` files in
  ``<root>/datasets/mnist`` / ``<root>/datasets/fashion-mnist``.
- ``cifar10`` (``datasets/cifar-10-batches-py``: every ``data_batch_*`` present; test =
  ``test_batch``) and ``cifar100`` (``datasets/cifar-100-python``: ``train``/``test``, fine
  labels, names from ``meta``), read through the restricted unpickler.
- ``image_folder`` (``path``, ``image_size``, ``mode``, ``prefix``) and ``samples`` (the
  foolbox sample images, ``prefix`` = mnist | fashionMNIST | cifar10 | cifar100 | imagenet).
- ``digits``, ``sample_images``: scikit-learn's bundled data, no files needed.

File checks: a file with an official name *and* the official sample count must have the
official md5, else it is refused (``ChecksumError``); a parseable file with another count
is a custom set and loads with a ``DatasetSizeWarning`` giving both sizes; a truncated or
malformed file raises ``CorruptDataError``. Missing files are downloaded from the official
URLs when allowed (``download=None`` means "unless ``FEDARENA_OFFLINE`` is set"), else a
``MissingDataError`` names them and the folder. Parsed files are cached in-process, keyed
by path, mtime and size, so repeated loads only pay the uint8 → float conversion.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedarena.fl_core.data import ImageDataset, Normalization
from fedarena.fl_core.data_root import (
    ChecksumError,
    CorruptDataError,
    RemoteFile,
    data_root,
    dataset_dir,
    ensure_files,
    expand_user,
    fetch_archive_members,
    file_digest,
)
from fedarena.fl_core.dataset_formats import read_cifar_batch, read_cifar_meta, read_idx_gz, read_idx_gz_shape
from fedarena.fl_core.image_datasets import (
    load_digits_split,
    load_image_folder,
    load_sample_image_tiles,
)
from fedarena.fl_core.registry import Registry

DatasetLoader = Callable[..., ImageDataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset")
SPLITS = ("train", "test")

# Normalisation constants. MNIST/Fashion: the usual values (PyTorch MNIST example;
# Fashion-MNIST train-set mean/std). CIFAR-10: as in the Inverting Gradients code
# (Geiping et al. 2020, inversefed/consts.py). CIFAR-100: train-set mean/std.
MNIST_NORM = Normalization((0.1307,), (0.3081,))
FASHION_MNIST_NORM = Normalization((0.2860,), (0.3530,))
CIFAR10_NORM = Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_NORM = Normalization((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_NORM = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


class DatasetSizeWarning(UserWarning):
    """A dataset file holds a different number of samples than the official one."""


@dataclass(frozen=True)
class DatasetFacts:
    """What a split holds, known without converting its pixels: suites are checked against
    it (index ranges, partitions, model shapes) before any run loads the data."""

    size: int
    num_classes: int
    input_shape: tuple[int, ...]
    labels: torch.Tensor  # int64 [size]

    @classmethod
    def of(cls, data: ImageDataset) -> DatasetFacts:
        return cls(len(data), data.num_classes, data.input_shape, data.labels)


def dataset_facts(name: str, split: str = "train", root: str | Path | None = None,
                  **kwargs: Any) -> DatasetFacts:
    """``DatasetFacts`` of dataset ``name``'s ``split``, taking the loader's own file steps.

    Missing files are fetched or reported exactly as ``load_dataset`` does
    (``MissingDataError``); IDX files are read for their header and labels only, CIFAR
    batches are parsed into the same in-process cache the loader reads. A loader without
    a cheaper way (image folders, bundled sets) is simply loaded.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    facts = _FACTS.get(name)
    if facts is None:
        return DatasetFacts.of(load_dataset(name, split, root, **kwargs))
    inspect.signature(facts).bind(split, root, **kwargs)  # the loader's signature: same arguments
    return facts(split, root, **kwargs)


def load_dataset(name: str, split: str = "train", root: str | Path | None = None,
                 **kwargs: Any) -> ImageDataset:
    """Load dataset ``name``'s ``split`` ("train" or "test") from the data root ``root``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    loader = DATASETS.get(name)
    try:
        inspect.signature(loader).bind(split=split, root=root, **kwargs)
    except TypeError as exc:
        accepted = [p for p in inspect.signature(loader).parameters if p not in ("split", "root")]
        raise TypeError(f"dataset {name!r}: {exc}; it accepts: {', '.join(accepted) or 'nothing'}"
                        ) from None
    return loader(split=split, root=root, **kwargs)


def clear_dataset_cache() -> None:
    """Forget every parsed file (they are otherwise kept for the life of the process)."""
    for fn in (_idx_cached, _cifar_cached, _meta_cached, _digest_cached):
        fn.cache_clear()


# --------------------------------------------------------------------- MNIST family

@dataclass(frozen=True)
class _IdxSpec:
    name: str
    folder: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    counts: dict[str, int]
    normalization: Normalization
    classes: tuple[str, ...]


_IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

_MNIST = _IdxSpec(
    "mnist", "mnist",
    ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
     "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
     "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
     "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    {"train": 60000, "test": 10000}, MNIST_NORM, MNIST_CLASSES)

_FASHION = _IdxSpec(
    "fashion_mnist", "fashion-mnist",
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
     "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
     "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
     "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    {"train": 60000, "test": 10000}, FASHION_MNIST_NORM, FASHION_MNIST_CLASSES)


@DATASETS.register("mnist")
def mnist(split: str = "train", root: str | Path | None = None,
          download: bool | None = None) -> ImageDataset:
    """MNIST digits, 1×28×28 (LeCun et al. 1998); official IDX files."""
    return _load_idx(_MNIST, split, root, download)


@DATASETS.register("fashion_mnist")
def fashion_mnist(split: str = "train", root: str | Path | None = None,
                  download: bool | None = None) -> ImageDataset:
    """Fashion-MNIST, 1×28×28 (Xiao et al. 2017); official IDX files."""
    return _load_idx(_FASHION, split, root, download)


def _idx_files(spec: _IdxSpec, split: str, root: str | Path | None, download: bool | None) -> list[Path]:
    """The split's (images, labels) files, fetched when missing and allowed."""
    _check_split(split)
    folder = dataset_dir(spec.folder, root)
    remote = [RemoteFile(f, tuple(m + f for m in spec.mirrors), spec.md5[f])
              for f in _IDX_FILES[split]]
    return ensure_files(f"{spec.name} {split} split", folder, remote, download)


def _idx_facts(spec: _IdxSpec, split: str, root: str | Path | None, download: bool | None = None) -> DatasetFacts:
    img_path, lbl_path = _idx_files(spec, split, root, download)
    shape = read_idx_gz_shape(img_path)
    labels = _idx_cached(*_stamp(lbl_path)).to(torch.int64)
    if len(shape) != 3 or labels.ndim != 1 or shape[0] != len(labels):
        raise CorruptDataError(f"{spec.name} {split}: {img_path.name} holds images of shape {shape}, "
                               f"{lbl_path.name} labels of shape {tuple(labels.shape)}")
    return DatasetFacts(len(labels), len(spec.classes), (1, *shape[1:]), labels)


def _load_idx(spec: _IdxSpec, split: str, root: str | Path | None,
              download: bool | None) -> ImageDataset:
    img_path, lbl_path = _idx_files(spec, split, root, download)
    pixels, labels = _idx_cached(*_stamp(img_path)), _idx_cached(*_stamp(lbl_path))
    if pixels.ndim != 3:
        raise CorruptDataError(f"{img_path}: expected a 3-d IDX image array, got {pixels.shape}")
    if labels.ndim != 1:
        raise CorruptDataError(f"{lbl_path}: expected a 1-d IDX label array, got {labels.shape}")
    if len(labels) != len(pixels):
        raise CorruptDataError(f"{spec.name} {split}: {img_path.name} holds {len(pixels)} images "
                               f"but {lbl_path.name} holds {len(labels)} labels")
    official = spec.counts[split]
    for path in (img_path, lbl_path):
        _verify_if_official(path, spec.md5[path.name], len(pixels), official)
    if len(pixels) != official:
        _warn_size(f"{spec.name} {split}: {img_path.name} holds {len(pixels)} samples, the "
                   f"official file {official}; loading it as a custom set")
    y = labels.to(torch.int64)
    _check_labels(y, len(spec.classes), lbl_path)
    x = _to_unit_float(pixels).unsqueeze(1)
    return ImageDataset(spec.name, x, y, len(spec.classes), spec.normalization, spec.classes)


# --------------------------------------------------------------------- CIFAR

@dataclass(frozen=True)
class _CifarSpec:
    name: str
    folder: str
    archive: RemoteFile
    train_md5: dict[str, str]
    test_md5: dict[str, str]
    count_per_file: dict[str, int]
    label_key: str
    meta: tuple[str, str]
    num_classes: int
    normalization: Normalization
    fallback_classes: tuple[str, ...]


_CIFAR10 = _CifarSpec(
    "cifar10", "cifar-10-batches-py",
    RemoteFile("cifar-10-python.tar.gz",
               ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
               "c58f30108f718f92721af3b95e74349a"),
    {"data_batch_1": "c99cafc152244af753f735de768cd75f",
     "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
     "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
     "data_batch_4": "634d18415352ddfa80567beed471001a",
     "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb"},
    {"test_batch": "40351d587109b95175f43aff81a1287e"},
    {f"data_batch_{i}": 10000 for i in range(1, 6)} | {"test_batch": 10000},
    "labels", ("batches.meta", "label_names"), 10, CIFAR10_NORM, CIFAR10_CLASSES)

_CIFAR100 = _CifarSpec(
    "cifar100", "cifar-100-python",
    RemoteFile("cifar-100-python.tar.gz",
               ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
               "eb9058c3a382ffc7106e4002c42a8d85"),
    {"train": "16019d7e3df5f24257cddd939b257f8d"},
    {"test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
    {"train": 50000, "test": 10000},
    "fine_labels", ("meta", "fine_label_names"), 100, CIFAR100_NORM,
    tuple(str(i) for i in range(100)))


@DATASETS.register("cifar10")
def cifar10(split: str = "train", root: str | Path | None = None,
            download: bool | None = None) -> ImageDataset:
    """CIFAR-10, 3×32×32 (Krizhevsky 2009); every ``data_batch_*`` present is read."""
    return _load_cifar(_CIFAR10, split, root, download)


@DATASETS.register("cifar100")
def cifar100(split: str = "train", root: str | Path | None = None,
             download: bool | None = None) -> ImageDataset:
    """CIFAR-100 with its 100 fine labels, 3×32×32 (Krizhevsky 2009)."""
    return _load_cifar(_CIFAR100, split, root, download)


def _cifar_split_files(spec: _CifarSpec, split: str, root: str | Path | None, download: bool | None) -> list[Path]:
    """The split's batch files, the archive fetched when none is there and fetching is allowed."""
    _check_split(split)
    folder = dataset_dir(spec.folder, root)
    official = spec.train_md5 if split == "train" else spec.test_md5
    files = _cifar_files(spec, folder, split)
    if not files:
        wanted = list(official) + ([spec.meta[0]] if not (folder / spec.meta[0]).is_file() else [])
        fetch_archive_members(f"{spec.name} {split} split", folder, spec.archive,
                              spec.folder, wanted, download)
        files = _cifar_files(spec, folder, split)
    return files


def _cifar_facts(spec: _CifarSpec, split: str, root: str | Path | None,
                 download: bool | None = None) -> DatasetFacts:
    labels = [_cifar_cached(*_stamp(p), spec.label_key)[1] for p in _cifar_split_files(spec, split, root, download)]
    y = torch.cat(labels) if len(labels) > 1 else labels[0]
    return DatasetFacts(len(y), spec.num_classes, (3, 32, 32), y)


def _load_cifar(spec: _CifarSpec, split: str, root: str | Path | None,
                download: bool | None) -> ImageDataset:
    folder = dataset_dir(spec.folder, root)
    official = spec.train_md5 if split == "train" else spec.test_md5
    files = _cifar_split_files(spec, split, root, download)
    parts = [_cifar_cached(*_stamp(p), spec.label_key) for p in files]
    for path, (data, _) in zip(files, parts, strict=True):
        if path.name in official:
            _verify_if_official(path, official[path.name], len(data),
                                spec.count_per_file[path.name])
    pixels = torch.cat([d for d, _ in parts]) if len(parts) > 1 else parts[0][0]
    y = torch.cat([lab for _, lab in parts]) if len(parts) > 1 else parts[0][1].clone()
    official_total = sum(spec.count_per_file[f] for f in official)
    if len(pixels) != official_total:
        per_file = ", ".join(f"{p.name}: {len(d)}" for p, (d, _) in zip(files, parts, strict=True))
        _warn_size(f"{spec.name} {split}: {len(pixels)} samples ({per_file}), the official split "
                   f"has {official_total}; loading it as a custom set")
    for path, (_, labels) in zip(files, parts, strict=True):  # name the file that holds a bad label
        _check_labels(labels, spec.num_classes, path)
    x = _to_unit_float(pixels)
    meta_path = folder / spec.meta[0]
    classes = spec.fallback_classes
    if meta_path.is_file():
        names = _meta_cached(*_stamp(meta_path), spec.meta[1])
        if len(names) != spec.num_classes:
            raise CorruptDataError(f"{meta_path}: {len(names)} class names, expected "
                                   f"{spec.num_classes}")
        classes = names
    return ImageDataset(spec.name, x, y, spec.num_classes, spec.normalization, classes)


def _cifar_files(spec: _CifarSpec, folder: Path, split: str) -> list[Path]:
    if split == "test" or spec.name != "cifar10":
        name = next(iter(spec.test_md5 if split == "test" else spec.train_md5))
        return [folder / name] if (folder / name).is_file() else []
    if not folder.is_dir():
        return []
    batches = [p for p in folder.iterdir() if re.fullmatch(r"data_batch_\d+", p.name) and p.is_file()]
    return sorted(batches, key=lambda p: int(p.name.rsplit("_", 1)[1]))


# --------------------------------------------------------------------- image files

_SAMPLE_PREFIXES: dict[str, tuple[int, Normalization, str, tuple[str, ...], int | None]] = {
    # prefix: (num_classes, normalisation of the source dataset, mode, classes, default size)
    "mnist": (10, MNIST_NORM, "L", MNIST_CLASSES, None),
    "fashionMNIST": (10, FASHION_MNIST_NORM, "L", FASHION_MNIST_CLASSES, None),
    "cifar10": (10, CIFAR10_NORM, "RGB", CIFAR10_CLASSES, None),
    "cifar100": (100, CIFAR100_NORM, "RGB", (), None),
    "imagenet": (1000, IMAGENET_NORM, "RGB", (), 224),
}


@DATASETS.register("image_folder")
def image_folder(split: str = "train", root: str | Path | None = None, *, path: str | Path,
                 image_size: int | tuple[int, int] | None = None, mode: str | None = None,
                 prefix: str | None = None) -> ImageDataset:
    """A folder of class sub-folders (or flat ``<prefix>_<NN>_<label>`` files), resized.

    A relative ``path`` is taken under ``<root>/datasets/``. When the folder has both
    ``train/`` and ``test/`` sub-folders, ``split`` picks one; otherwise the whole folder
    is returned for either split. Normalisation = per-channel mean/std of the loaded
    images (see ``fedarena.fl_core.image_datasets.load_image_folder``).
    """
    _check_split(split)
    folder = expand_user(path, "image_folder path")
    if not folder.is_absolute():
        folder = data_root(root) / "datasets" / folder
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        folder = folder / split
    return load_image_folder(folder, image_size=image_size, mode=mode, prefix=prefix)


@DATASETS.register("samples")
def samples(split: str = "test", root: str | Path | None = None, *, prefix: str,
            image_size: int | tuple[int, int] | None = None) -> ImageDataset:
    """The 20 foolbox sample images of one dataset (``datasets/foolbox-samples``).

    They are that dataset's first 20 test (ImageNet: validation) images, so they carry its
    normalisation and class count; ``split`` is ignored. ImageNet files differ in size and
    default to ``image_size=224`` (shorter side to 224, centre crop).
    """
    _check_split(split)
    folder = dataset_dir("foolbox-samples", root)
    if prefix not in _SAMPLE_PREFIXES:
        return load_image_folder(folder, image_size=image_size, prefix=prefix,
                                 name=f"samples:{prefix}")
    n_cls, norm, mode, classes, default_size = _SAMPLE_PREFIXES[prefix]
    return load_image_folder(folder, image_size=image_size or default_size, mode=mode,
                             prefix=prefix, name=f"samples:{prefix}", normalization=norm,
                             num_classes=n_cls, classes=classes)


# --------------------------------------------------------------------- bundled (no files)

@DATASETS.register("digits")
def digits(split: str = "train", root: str | Path | None = None, *, test_size: float = 0.2,
           seed: int = 0) -> ImageDataset:
    """scikit-learn's 8×8 handwritten digits, stratified 80/20 split (no files needed)."""
    _check_split(split)
    return load_digits_split(split, test_size=test_size, seed=seed)


@DATASETS.register("sample_images")
def sample_images(split: str = "train", root: str | Path | None = None, *, downscale: int = 2,
                  tile: int = 32, test_every: int = 5) -> ImageDataset:
    """32×32 RGB tiles of scikit-learn's china.jpg and flower.jpg, label = photo (no files)."""
    _check_split(split)
    return load_sample_image_tiles(split, downscale=downscale, tile=tile, test_every=test_every)


# Loaders with a cheaper way to their facts than loading (``dataset_facts``); same arguments.
_FACTS: dict[str, Callable[..., DatasetFacts]] = {
    "mnist": functools.partial(_idx_facts, _MNIST),
    "fashion_mnist": functools.partial(_idx_facts, _FASHION),
    "cifar10": functools.partial(_cifar_facts, _CIFAR10),
    "cifar100": functools.partial(_cifar_facts, _CIFAR100),
}


# --------------------------------------------------------------------- helpers

def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def _verify_if_official(path: Path, md5: str, count: int, official_count: int) -> None:
    """Refuse an official-looking file (official name and sample count) with a wrong md5."""
    if count != official_count:
        return
    actual = _digest_cached(*_stamp(path), "md5")
    if actual != md5:
        raise ChecksumError(
            f"{path}: has the official name and sample count ({count}) but md5 {actual}, "
            f"expected {md5}; refusing it. Replace it with the official file (or delete it "
            "to download again).")


def _warn_size(message: str) -> None:
    warnings.warn(message, DatasetSizeWarning, stacklevel=4)


def _check_labels(labels: torch.Tensor, num_classes: int, source: Path) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise CorruptDataError(f"{source}: labels span [{int(labels.min())}, {int(labels.max())}],"
                               f" expected [0, {num_classes})")


def _to_unit_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 → float32 in [0, 1]; a new tensor, so the cached uint8 one is never exposed."""
    return pixels.to(torch.float32).div_(255)


# Cached tensors are uint8/int64 and never handed out: loaders convert or clone them.
@functools.lru_cache(maxsize=16)
def _idx_cached(path: str, mtime_ns: int, size: int) -> torch.Tensor:
    return torch.from_numpy(np.array(read_idx_gz(path)))


@functools.lru_cache(maxsize=16)
def _cifar_cached(path: str, mtime_ns: int, size: int,
                  label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = read_cifar_batch(path, label_key)
    return torch.from_numpy(np.array(data)), torch.from_numpy(np.array(labels, dtype=np.int64))


@functools.lru_cache(maxsize=8)
def _meta_cached(path: str, mtime_ns: int, size: int, key: str) -> tuple[str, ...]:
    return tuple(read_cifar_meta(path, key))


@functools.lru_cache(maxsize=64)
def _digest_cached(path: str, mtime_ns: int, size: int, algo: str) -> str:
    return file_digest(path, algo)

