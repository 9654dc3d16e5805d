"""The generator architectures, their checkpoints in the data root, and the ``GENERATORS`` registry.

Every checkpoint loads with ``torch.load(..., map_location="cpu", weights_only=True)`` (no code
runs from a weights file). A missing file raises ``MissingDataError`` naming the file and its
folder; a file that is not the expected state dict (unreadable, wrong keys, wrong shapes,
non-finite values) raises ``CorruptDataError`` naming the file.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fedarena.fl_core.data_root import CorruptDataError, MissingDataError, data_root, weights_path
from fedarena.fl_core.registry import Registry, UnknownNameError

from .base import SplitGenerator

GENERATORS: Registry[Callable[..., SplitGenerator]] = Registry("generator")

# Files (relative to <root>/weights/), as listed in shared/assets/MANIFEST.md.
FACES64_FILE = ("dcgan-digiface1m-64", "weights.tar")
MNIST_GAN_FILE = ("csinva-mnist", "G--300.ckpt")
TRAINED_FILE = "generator.pt"  # what ``train_dcgan`` writes into <root>/weights/<name>/
TRAINED_FORMAT = "fedarena-dcgan-generator/1"
DCGAN_SIZES = (28, 32, 64)


class DCGANGenerator(SplitGenerator):
    """The PyTorch DCGAN-tutorial generator (Radford et al. 2016), for 64, 32 or 28 pixels.

    64×64 is the tutorial exactly: ConvT(nz, 8g, 4, 1, 0) then four ConvT(·, ·, 4, 2, 1), each
    but the last followed by BatchNorm + ReLU, the last by Tanh; all convolutions bias-free.
    32×32 drops the widest block (4g, 2g, g: 4→8→16→32) and 28×28 starts from a 7×7 map
    (ConvT(nz, 2g, 7, 1, 0), then 2g, g: 7→14→28), the usual MNIST variant. Split points:
    ``"latent"`` and ``"block1"``… after each BatchNorm + ReLU, the features GIFD optimises.
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, size: int = 64) -> None:
        super().__init__()
        if size not in DCGAN_SIZES:
            raise ValueError(f"DCGAN size must be one of {DCGAN_SIZES}, got {size}")
        widths = {64: [8, 4, 2, 1], 32: [4, 2, 1], 28: [2, 1]}[size]
        first_kernel = 7 if size == 28 else 4
        layers: list[nn.Module] = []
        ends = {"latent": 0}
        c_in = nz
        for i, mult in enumerate(widths):
            c_out = ngf * mult
            conv = (nn.ConvTranspose2d(c_in, c_out, first_kernel, 1, 0, bias=False) if i == 0
                    else nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False))
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU()]
            ends[f"block{i + 1}"] = len(layers)
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.config = {"nz": nz, "ngf": ngf, "nc": nc, "size": size}
        self._init_layout(ends, (nz, 1, 1), (nc, size, size), (-1.0, 1.0))


class MLPGenerator(SplitGenerator):
    """The csinva MNIST GAN generator: Linear(z, 256) ReLU Linear(256, 256) ReLU Linear(256, 784) Tanh.

    Output reshaped to 1×28×28; split points ``"latent"``, ``"block1"``, ``"block2"`` (after
    each ReLU).
    """

    def __init__(self, nz: int = 64, hidden: int = 256, image_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        out = image_shape[0] * image_shape[1] * image_shape[2]
        self.main = nn.Sequential(nn.Linear(nz, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, out), nn.Tanh())
        self._init_layout({"latent": 0, "block1": 2, "block2": 4}, (nz,), image_shape, (-1.0, 1.0))


def read_weights(path: Path, what: str) -> Any:
    """``torch.load`` of a weights file, with the missing / unreadable cases named."""
    if not path.is_file():
        raise MissingDataError(what, path.parent, [path.name])
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            AttributeError, ImportError, OSError) as exc:
        raise CorruptDataError(f"{what}: {path} is not a loadable weights file ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def load_state(module: nn.Module, state: Any, path: Path, what: str) -> None:
    """``module.load_state_dict(state)`` after checking keys, shapes and values, naming ``path``."""
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CorruptDataError(f"{what}: {path} does not hold a state dict of tensors "
                               f"(found {type(state).__name__})")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CorruptDataError(f"{what}: {path} has the wrong keys: missing {missing[:8]}, "
                               f"unexpected {unexpected[:8]}")
    bad = [f"{k}: {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
           if tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise CorruptDataError(f"{what}: {path} has tensors of the wrong shape: {'; '.join(bad[:8])}")
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise CorruptDataError(f"{what}: {path} has non-finite values in {nonfinite[:8]}")
    module.load_state_dict(state)


def _as_prior(g: SplitGenerator) -> SplitGenerator:
    return g.eval().requires_grad_(False)


@GENERATORS.register("dcgan_faces64")
def dcgan_faces64(root: str | Path | None = None) -> SplitGenerator:
    """DCGAN, 64×64 RGB faces (synthetic DigiFace-1M), z (100, 1, 1); MANIFEST ``weights/dcgan-digiface1m-64``.

    A prior for faces outside its training distribution (real CelebA-HQ faces, issue 16).
    """
    path = weights_path(*FACES64_FILE, root=root)
    what = "generator dcgan_faces64"
    blob = read_weights(path, what)
    if not isinstance(blob, Mapping) or "netG_state_dict" not in blob:
        keys = sorted(blob)[:6] if isinstance(blob, Mapping) else type(blob).__name__
        raise CorruptDataError(f"{what}: {path} lacks 'netG_state_dict' (found {keys})")
    g = DCGANGenerator(nz=100, ngf=64, nc=3, size=64)
    load_state(g, blob["netG_state_dict"], path, what)
    return _as_prior(g)


@GENERATORS.register("mnist_gan")
def mnist_gan(root: str | Path | None = None) -> SplitGenerator:
    """MLP GAN, 1×28×28 MNIST digits, z (64,); MANIFEST ``weights/csinva-mnist/G--300.ckpt``."""
    path = weights_path(*MNIST_GAN_FILE, root=root)
    what = "generator mnist_gan"
    g = MLPGenerator(nz=64, hidden=256)
    load_state(g.main, read_weights(path, what), path, what)  # the file holds the Sequential's keys 0.*, 2.*, 4.*
    return _as_prior(g)


def load_trained_dcgan(name: str, root: str | Path | None = None) -> SplitGenerator:
    """A DCGAN written by ``train_dcgan`` to ``<root>/weights/<name>/generator.pt``."""
    path = weights_path(name, TRAINED_FILE, root=root)
    what = f"generator {name}"
    blob = read_weights(path, what)
    if not isinstance(blob, Mapping) or blob.get("format") != TRAINED_FORMAT:
        found = blob.get("format") if isinstance(blob, Mapping) else type(blob).__name__
        raise CorruptDataError(f"{what}: {path} is not a {TRAINED_FORMAT} file (format: {found!r})")
    cfg = blob.get("config")
    if not isinstance(cfg, Mapping) or set(cfg) != {"nz", "ngf", "nc", "size"} or \
            not all(isinstance(v, int) for v in cfg.values()):
        raise CorruptDataError(f"{what}: {path} has a bad 'config' {cfg!r} (want ints nz, ngf, nc, size)")
    try:
        g = DCGANGenerator(**cfg)
    except ValueError as exc:
        raise CorruptDataError(f"{what}: {path}: {exc}") from None
    load_state(g, blob.get("state_dict"), path, what)
    return _as_prior(g)


TRAINED_NAME = re.compile(r"^dcgan_[a-z0-9][a-z0-9_-]*_\d+$")  # dcgan_<dataset>_<size>


def trained_generator_names(root: str | Path | None = None) -> list[str]:
    """Folders ``<root>/weights/dcgan_<dataset>_<size>/`` holding a ``generator.pt``."""
    folder = data_root(root) / "weights"
    if not folder.is_dir():
        return []
    return sorted(p.parent.name for p in folder.glob(f"*/{TRAINED_FILE}") if TRAINED_NAME.match(p.parent.name))


def build_generator(name: str, root: str | Path | None = None,
                    device: str | torch.device | None = None) -> SplitGenerator:
    """The one entry point: a registered generator, or a trained ``dcgan_<dataset>_<size>`` folder.

    Returned in eval mode with frozen parameters, on ``device`` (default CPU).
    """
    if name in GENERATORS:
        g = GENERATORS.build(name, root=root)
    elif TRAINED_NAME.match(name):
        g = load_trained_dcgan(name, root=root)
    else:
        trained = trained_generator_names(root)
        raise UnknownNameError(f"unknown generator {name!r}; known: {', '.join(GENERATORS.names())}"
                               + (f"; trained in the data root: {', '.join(trained)}" if trained else "")
                               + " (train one with python -m fedarena.attacks.inversion.generators.train_dcgan)")
    return g.to(device) if device is not None else g
