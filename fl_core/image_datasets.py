"""Datasets built from image files (PIL) and from scikit-learn's bundled data.

``load_image_folder`` reads a folder of class sub-folders or a flat folder of
``<prefix>_<NN>_<label>.<ext>`` files; ``load_digits_split`` and
``load_sample_image_tiles`` need no files at all, so tests and demos run anywhere.
The registry entries that expose them by name live in ``fedarena.fl_core.datasets``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fedarena.fl_core.data import ImageDataset, Normalization
from fedarena.fl_core.data_root import CorruptDataError, MissingDataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;L"}

Size = int | tuple[int, int]


def load_image_folder(folder: Path, *, image_size: Size | None = None, mode: str | None = None,
                      prefix: str | None = None, name: str | None = None,
                      normalization: Normalization | None = None, num_classes: int | None = None,
                      classes: Sequence[str] = ()) -> ImageDataset:
    """Load every image under ``folder`` into one ``ImageDataset``.

    Class sub-folder layout (``folder/<class>/**/<image>``): classes are the sub-folder
    names sorted alphabetically, labels their indices; a class folder without images is
    refused (``MissingDataError`` naming it), since it would be a class no sample has. Flat layout (``prefix`` given):
    files ``<prefix>_<NN>_<label>.<ext>`` ordered by ``NN``, label from the file name.

    ``image_size`` (int or (h, w)): each image is scaled to cover that size (aspect ratio
    kept, bicubic, which Pillow antialiases when shrinking) and centre-cropped, like the
    usual Resize + CenterCrop. Without it, all images must already share one size.
    ``mode``: "RGB" or "L" (gray); default gray when every file is single-band, else RGB.
    ``normalization`` defaults to the per-channel mean/std of the loaded pixels, because a
    folder of arbitrary images has no published constants.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingDataError(name or "image folder", folder.parent, [folder.name + "/"])
    if prefix is not None:
        files, labels = _flat_files(folder, prefix)
        n_cls = num_classes if num_classes is not None else int(max(labels)) + 1
        class_names = tuple(classes) or tuple(str(i) for i in range(n_cls))
    else:
        files, labels, class_names = _class_folder_files(folder)
        n_cls = len(class_names) if num_classes is None else num_classes
        class_names = tuple(classes) or class_names
    bad = [int(lab) for lab in labels if not 0 <= lab < n_cls]
    if bad:
        raise CorruptDataError(f"{folder}: labels {sorted(set(bad))[:5]} outside [0, {n_cls})")
    mode = _resolve_mode(mode, files)
    arrays = [_read_image(f, mode, image_size) for f in files]
    _check_same_size(arrays, files)
    pixels = np.stack(arrays)
    images = torch.from_numpy(np.divide(pixels, 255, dtype=np.float32))
    if images.dim() == 3:
        images = images.unsqueeze(1)
    else:
        images = images.permute(0, 3, 1, 2).contiguous()
    norm = normalization or normalization_of(images)
    return ImageDataset(name or f"image_folder:{folder.name}", images,
                        torch.as_tensor(labels, dtype=torch.int64), n_cls, norm, class_names)


def load_digits_split(split: str, test_size: float = 0.2, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8×8 digits (1797 images, values 0..16 scaled to [0, 1]).

    A stratified ``train_test_split`` with ``random_state=seed`` (80/20 by default) keeps the
    split identical across runs and machines; normalisation comes from the train split.
    """
    x, y, train_idx, test_idx = _digits_arrays(float(test_size), int(seed))
    idx = train_idx if split == "train" else test_idx
    images = torch.from_numpy(x[idx].copy())
    norm = normalization_of(torch.from_numpy(x[train_idx]))
    return ImageDataset("digits", images, torch.from_numpy(y[idx].copy()), 10, norm,
                        tuple(str(i) for i in range(10)))


def load_sample_image_tiles(split: str, downscale: int = 2, tile: int = 32,
                            test_every: int = 5) -> ImageDataset:
    """RGB ``tile``×``tile`` crops of scikit-learn's two bundled photos (china.jpg, flower.jpg).

    Each 427×640 photo is shrunk by ``downscale`` (box filter, i.e. area averaging), then
    cut into a centred grid of non-overlapping tiles: 6×10 = 60 tiles per photo at the
    defaults, so 120 natural 32×32 images with CIFAR-like statistics. Label = source photo
    (0 china, 1 flower): the only honest class a tile has. Every ``test_every``-th tile of
    each photo (row-major order) is the test split, the rest train. Normalisation comes
    from the train tiles.
    """
    tiles, labels, is_test = _sample_tiles(int(downscale), int(tile), int(test_every))
    keep = is_test if split == "test" else ~is_test
    images = torch.from_numpy(tiles[keep].copy())
    norm = normalization_of(torch.from_numpy(tiles[~is_test]))
    return ImageDataset("sample_images", images, torch.from_numpy(labels[keep].copy()), 2, norm,
                        ("china", "flower"))


def normalization_of(images: torch.Tensor) -> Normalization:
    """Per-channel mean and (population) std of ``[N, C, H, W]`` images; std 0 becomes 1."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1).double()
    mean = x.mean(dim=1)
    std = x.std(dim=1, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return Normalization(tuple(round(float(m), 4) for m in mean),
                         tuple(round(float(s), 4) for s in std))


def _flat_files(folder: Path, prefix: str) -> tuple[list[Path], list[int]]:
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)_(\d+)(\.[A-Za-z]+)$")
    found: list[tuple[int, Path, int]] = []
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m and p.is_file() and m.group(3).lower() in IMAGE_EXTENSIONS:
            found.append((int(m.group(1)), p, int(m.group(2))))
    if not found:
        raise MissingDataError(f"images with prefix {prefix!r}", folder,
                               [f"{prefix}_<NN>_<label>.png"])
    found.sort(key=lambda t: (t[0], t[1].name))
    return [p for _, p, _ in found], [lab for _, _, lab in found]


def _class_folder_files(folder: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise MissingDataError(f"image folder {folder}", folder, ["<class>/<image files>"],
                               reason="no class sub-folders (for a flat folder of "
                                      "<prefix>_<NN>_<label> files pass prefix=...)")
    files: list[Path] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, d in enumerate(class_dirs):
        imgs = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")
                      and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not imgs:
            empty.append(d.name)
        files += imgs
        labels += [label] * len(imgs)
    if not files:
        raise MissingDataError(f"image folder {folder}", folder, ["<class>/<image files>"],
                               reason=f"class folders {[d.name for d in class_dirs]} hold no "
                                      f"images ({', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        # Refused, not skipped: skipping would shift every later class's label index and
        # counting it would give a class no sample can have (as torchvision's ImageFolder).
        raise MissingDataError(f"image folder {folder}", folder, [f"{name}/<image files>" for name in empty],
                               reason=f"class folder(s) {empty} hold no images "
                                      f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)")
    return files, labels, tuple(d.name for d in class_dirs)


def _resolve_mode(mode: str | None, files: list[Path]) -> str:
    aliases = {"rgb": "RGB", "l": "L", "gray": "L", "grey": "L"}
    if mode is not None:
        if mode.lower() not in aliases:
            raise ValueError(f"mode must be 'RGB' or 'L' (gray), got {mode!r}")
        return aliases[mode.lower()]
    for f in files:
        with _open(f) as im:
            if im.mode not in _GRAY_MODES:
                return "RGB"
    return "L"


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptDataError(f"{path}: cannot read image ({exc})") from exc


def _read_image(path: Path, mode: str, size: Size | None) -> np.ndarray:
    with _open(path) as im:
        try:
            im = im.convert(mode)
        except (OSError, ValueError) as exc:
            raise CorruptDataError(f"{path}: cannot decode image ({exc})") from exc
        if size is not None:
            im = _cover_and_crop(im, size)
        return np.asarray(im, dtype=np.uint8)


def _cover_and_crop(im: Image.Image, size: Size) -> Image.Image:
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if th < 1 or tw < 1:
        raise ValueError(f"image_size must be positive, got {size!r}")
    w, h = im.size
    scale = max(th / h, tw / w)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return im.crop((left, top, left + tw, top + th))


def _check_same_size(arrays: list[np.ndarray], files: list[Path]) -> None:
    first = arrays[0].shape
    for arr, f in zip(arrays, files, strict=True):
        if arr.shape != first:
            raise ValueError(f"images differ in size: {files[0].name} is {first[1]}×{first[0]}, "
                             f"{f.name} is {arr.shape[1]}×{arr.shape[0]}; pass image_size=...")


@functools.lru_cache(maxsize=4)
def _digits_arrays(test_size: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ValueError(f"digits: test_size must be in (0, 1), got {test_size}")
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_size,
                                           stratify=y, random_state=seed)
    return x, y, np.sort(train_idx), np.sort(test_idx)


@functools.lru_cache(maxsize=4)
def _sample_tiles(downscale: int, tile: int, test_every: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    if downscale < 1 or tile < 1 or test_every < 2:
        raise ValueError("sample_images: need downscale >= 1, tile >= 1 and test_every >= 2, got "
                         f"{downscale}, {tile}, {test_every}")
    tiles, labels, is_test = [], [], []
    for label, photo in enumerate(load_sample_images().images):
        im = Image.fromarray(photo)
        if downscale > 1:
            im = im.reduce(downscale)
        arr = np.asarray(im, dtype=np.uint8)
        rows, cols = arr.shape[0] // tile, arr.shape[1] // tile
        if rows * cols == 0:
            raise ValueError(f"sample_images: downscale {downscale} leaves {arr.shape[:2]}, "
                             f"smaller than one {tile}×{tile} tile")
        top, left = (arr.shape[0] - rows * tile) // 2, (arr.shape[1] - cols * tile) // 2
        grid = arr[top:top + rows * tile, left:left + cols * tile]
        # [rows*tile, cols*tile, 3] → [rows*cols, 3, tile, tile], row-major tile order
        grid = grid.reshape(rows, tile, cols, tile, 3).transpose(0, 2, 4, 1, 3)
        tiles.append(grid.reshape(rows * cols, 3, tile, tile))
        labels.append(np.full(rows * cols, label, dtype=np.int64))
        is_test.append(np.arange(rows * cols) % test_every == test_every - 1)
    x = np.divide(np.concatenate(tiles), 255, dtype=np.float32)
    return x, np.concatenate(labels), np.concatenate(is_test)
