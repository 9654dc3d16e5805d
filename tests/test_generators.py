"""Generators for generator-prior inversion (issue 16) and the exact l1-ball projection.

Split round trips run on every architecture without weight files (random DCGAN init) and on
the real weights when the data root holds them; the sample-quality checks need the real
weights and skip with the file they miss.
"""

from __future__ import annotations

import glob
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fedarena.attacks.inversion.generators import (
    GENERATORS,
    LUMA_WEIGHTS,
    DCGANGenerator,
    MLPGenerator,
    SplitGenerator,
    build_generator,
)
from fedarena.attacks.inversion.generators.train_dcgan import TrainConfig, dcgan_init, main, train
from fedarena.attacks.inversion.l1_ball import project_l1_ball
from fedarena.fl_core.data import Normalization
from fedarena.fl_core.data_root import CorruptDataError, MissingDataError
from fedarena.fl_core.datasets import DatasetSizeWarning
from fedarena.fl_core.registry import UnknownNameError

from .helpers import shared_assets

WEIGHT_FILES = {"dcgan_faces64": ("dcgan-digiface1m-64", "weights.tar"),
                "mnist_gan": ("csinva-mnist", "G--300.ckpt")}
LENET_FILE = ("csinva-mnist", "lenet_epoch=12_test_acc=0.991.pth")


def _weights_root(*parts: str) -> Path:
    root = shared_assets()
    if root is None or not root.joinpath("weights", *parts).is_file():
        pytest.skip(f"weights/{'/'.join(parts)} absent from the data root (set FEDARENA_DATA to the shared assets)")
    return root


def _random_dcgan(size: int, nc: int, seed: int = 0, ngf: int = 8) -> DCGANGenerator:
    g = DCGANGenerator(nz=16, ngf=ngf, nc=nc, size=size)
    dcgan_init(g, torch.Generator().manual_seed(seed))
    return g.eval()


def _random_mlp(seed: int = 0) -> MLPGenerator:
    torch.manual_seed(seed)
    return MLPGenerator(nz=64, hidden=32).eval()


ARCHITECTURES = {"dcgan64": lambda: _random_dcgan(64, 3), "dcgan32": lambda: _random_dcgan(32, 3),
                 "dcgan28": lambda: _random_dcgan(28, 1), "mlp": _random_mlp}


def _check_split_round_trip(g: SplitGenerator) -> None:
    # head and tail run the very modules forward runs, in the same order on the same tensors,
    # so the result is bit-identical (torch.equal), not merely close.
    z = g.sample_latent(3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = g(z)
        assert full.shape == (3, *g.image_shape)
        lo, hi = g.output_range
        assert full.min() >= lo and full.max() <= hi
        assert g.split_points[0] == "latent" and g.head(z, "latent") is z
        for s in g.split_points:
            f = g.head(z, s)
            assert tuple(f.shape[1:]) == g.feature_shapes[s], s
            assert torch.equal(g.tail(f, s), full), s
            # the tail really starts from the feature it is given
            assert not torch.equal(g.tail(f + 0.5, s), full), s


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_split_round_trip_every_architecture(arch: str) -> None:
    _check_split_round_trip(ARCHITECTURES[arch]())


@pytest.mark.parametrize("name", sorted(WEIGHT_FILES))
def test_split_round_trip_real_weights(name: str) -> None:
    root = _weights_root(*WEIGHT_FILES[name])
    g = build_generator(name, root=root)
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    _check_split_round_trip(g)


def test_declared_layouts() -> None:
    assert GENERATORS.names() == ["dcgan_faces64", "mnist_gan"]
    faces = DCGANGenerator()
    assert faces.latent_shape == (100, 1, 1) and faces.image_shape == (3, 64, 64)
    assert faces.split_points == ("latent", "block1", "block2", "block3", "block4")
    assert faces.feature_shapes == {"latent": (100, 1, 1), "block1": (512, 4, 4), "block2": (256, 8, 8),
                                    "block3": (128, 16, 16), "block4": (64, 32, 32)}
    # the tutorial's layer indices, so the checkpoint's keys main.{0,1,3,4,...,12} fit
    assert sorted({k.split(".")[1] for k in faces.state_dict()}, key=int) == \
        ["0", "1", "3", "4", "6", "7", "9", "10", "12"]
    mlp = MLPGenerator()
    assert mlp.latent_shape == (64,) and mlp.image_shape == (1, 28, 28)
    assert mlp.feature_shapes == {"latent": (64,), "block1": (256,), "block2": (256,)}
    with pytest.raises(ValueError, match="no split point 'block9'.*latent, block1, block2"):
        mlp.head(torch.zeros(1, 64), "block9")


def test_gradients_reach_features() -> None:
    g = _random_dcgan(32, 3)
    f = g.head(g.sample_latent(2, torch.Generator().manual_seed(0)), "block2").detach().requires_grad_(True)
    x = g.to_model_input(g.tail(f, "block2"), Normalization((0.5,), (0.25,)), (1, 16, 16))
    x.square().sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0


def test_sample_latent_is_seeded_and_standard_normal() -> None:
    g = _random_mlp()
    a = g.sample_latent(4096, torch.Generator().manual_seed(7))
    b = g.sample_latent(4096, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (4096, 64)
    assert not torch.equal(a, g.sample_latent(4096, torch.Generator().manual_seed(8)))
    assert abs(a.mean().item()) < 0.01 and abs(a.std().item() - 1) < 0.01
    with pytest.raises(ValueError, match="n >= 1"):
        g.sample_latent(0)


# ------------------------------------------------------------------ to_model_input

def test_to_model_input_round_trips_range_and_normalization() -> None:
    g = _random_dcgan(32, 3)
    x01 = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    norm = Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    out = g.to_model_input(x01 * 2 - 1, norm, (3, 32, 32))  # tanh range [-1, 1]
    torch.testing.assert_close(out, norm.normalize(x01), rtol=0, atol=1e-6)
    torch.testing.assert_close(norm.denormalize(out), x01, rtol=0, atol=1e-6)
    torch.testing.assert_close(g.to_model_input(x01 * 2 - 1, None, (3, 32, 32)), x01, rtol=0, atol=1e-6)


def test_to_model_input_grey_matches_pil_luma() -> None:
    g = _random_dcgan(32, 3)
    rgb = torch.randint(0, 256, (32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    pil = torch.from_numpy(np.array(Image.fromarray(rgb.numpy()).convert("L"))).float() / 255
    x01 = rgb.permute(2, 0, 1)[None].float() / 255
    grey = g.to_model_input(x01 * 2 - 1, None, (1, 32, 32))
    assert grey.shape == (1, 1, 32, 32)
    assert (grey[0, 0] - pil).abs().max() <= 1 / 255  # PIL rounds its fixed-point luma to uint8
    assert LUMA_WEIGHTS == (0.299, 0.587, 0.114)
    back = _random_dcgan(28, 1).to_model_input(grey * 2 - 1, None, (3, 32, 32))
    assert back.shape == (1, 3, 32, 32) and torch.equal(back[:, 0], back[:, 2])
    with pytest.raises(ValueError, match="3-channel generator images to a 2-channel model"):
        g.to_model_input(x01, None, (2, 32, 32))


def test_to_model_input_resize_is_antialiased_like_pil() -> None:
    g = _random_dcgan(64, 3)
    # one bright column in four: an antialiased 4x shrink keeps its mean (0.25) away from the
    # border (where the filter is renormalised); plain bilinear samples at 1.5, 5.5, ... and
    # misses every bright column
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::4] = 1
    small = g.to_model_input(stripes * 2 - 1, None, (3, 16, 16))[..., 1:-1]
    torch.testing.assert_close(small, torch.full_like(small, 0.25), rtol=0, atol=1e-6)
    aliased = F.interpolate(stripes, size=(16, 16), mode="bilinear", align_corners=False)[..., 1:-1]
    assert aliased.abs().max() == 0
    # and a random image shrunk 64 -> 32 agrees with PIL's bilinear reduce on float pixels
    x01 = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    ours = _random_dcgan(64, 1).to_model_input(x01 * 2 - 1, None, (1, 32, 32))[0, 0]
    pil = np.array(Image.fromarray(x01[0, 0].numpy(), mode="F").resize((32, 32), Image.Resampling.BILINEAR))
    assert (ours - torch.from_numpy(pil)).abs().max() < 1e-5


# ------------------------------------------------------------------ weights: missing and tampered

@pytest.mark.parametrize("name", sorted(WEIGHT_FILES))
def test_missing_weights_one_clear_message(name: str, tmp_path: Path) -> None:
    folder, file = WEIGHT_FILES[name]
    with pytest.raises(MissingDataError) as info:
        build_generator(name, root=tmp_path)
    msg = str(info.value)
    assert f"missing {file} in {tmp_path / 'weights' / folder}" in msg
    assert msg.count(file) == 1 and info.value.__cause__ is None and info.value.__context__ is None


def _write_faces(root: Path, blob: object) -> Path:
    path = root / "weights" / WEIGHT_FILES["dcgan_faces64"][0] / WEIGHT_FILES["dcgan_faces64"][1]
    path.parent.mkdir(parents=True)
    if isinstance(blob, bytes):
        path.write_bytes(blob)
    else:
        torch.save(blob, path)
    return path


class _NotAWeight:
    pass


def _good_faces_state() -> dict[str, torch.Tensor]:
    return DCGANGenerator().state_dict()


TAMPERED = {
    "garbage": (b"not a torch file at all", "not a loadable weights file"),
    "code": (pickle.dumps(_NotAWeight()), "not a loadable weights file"),
    "not-a-dict": ([1, 2, 3], "lacks 'netG_state_dict'"),
    "no-netG": ({"netD_state_dict": {}}, "lacks 'netG_state_dict'"),
    "keys": ({"netG_state_dict": {"main.0.weight": torch.zeros(100, 512, 4, 4)}}, "wrong keys"),
    "shape": ({"netG_state_dict": {**_good_faces_state(), "main.3.weight": torch.zeros(512, 256, 3, 3)}},
              r"main.3.weight: \(512, 256, 3, 3\) \(expected \(512, 256, 4, 4\)\)"),
    "nan": ({"netG_state_dict": {**_good_faces_state(), "main.1.weight": torch.full((512,), float("nan"))}},
            "non-finite values in \\['main.1.weight'\\]"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_weights_name_the_file(case: str, tmp_path: Path) -> None:
    blob, expected = TAMPERED[case]
    path = _write_faces(tmp_path, blob)
    with pytest.raises(CorruptDataError, match=expected) as info:
        build_generator("dcgan_faces64", root=tmp_path)
    assert str(path) in str(info.value)


def test_unknown_generator_lists_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="unknown generator 'stylegan'; known: dcgan_faces64, mnist_gan"):
        build_generator("stylegan", root=tmp_path)
    with pytest.raises(MissingDataError, match="missing generator.pt in .*dcgan_cifar10_32"):
        build_generator("dcgan_cifar10_32", root=tmp_path)


# ------------------------------------------------------------------ sample quality with real weights

class _LeNet5(nn.Module):
    """csinva's LeNet-5 (ReLU): c1 5x5x6, pool, c3 5x5x16, pool, c5 5x5x120, f6 84, f7 10, log-softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.convnet = nn.Sequential()
        for name, layer in [("c1", nn.Conv2d(1, 6, 5)), ("relu1", nn.ReLU()), ("s2", nn.MaxPool2d(2, 2)),
                            ("c3", nn.Conv2d(6, 16, 5)), ("relu3", nn.ReLU()), ("s4", nn.MaxPool2d(2, 2)),
                            ("c5", nn.Conv2d(16, 120, 5)), ("relu5", nn.ReLU())]:
            self.convnet.add_module(name, layer)
        self.fc = nn.Sequential()
        for name, layer in [("f6", nn.Linear(120, 84)), ("relu6", nn.ReLU()), ("f7", nn.Linear(84, 10)),
                            ("sig7", nn.LogSoftmax(dim=-1))]:
            self.fc.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convnet(x).flatten(1))


def test_mnist_gan_samples_are_confident_digits() -> None:
    root = _weights_root(*LENET_FILE)
    _weights_root(*WEIGHT_FILES["mnist_gan"])
    lenet = _LeNet5()
    lenet.load_state_dict(torch.load(root.joinpath("weights", *LENET_FILE), map_location="cpu", weights_only=True))
    lenet.eval()
    g = build_generator("mnist_gan", root=root)
    with torch.no_grad():
        # the classifier is right: 98.6 % on the first 1000 MNIST test digits resized to 32 (measured)
        if root.joinpath("datasets", "mnist", "t10k-images-idx3-ubyte.gz").is_file():
            from fedarena.fl_core.datasets import load_dataset
            test = load_dataset("mnist", "test", root=root)
            x = g.to_model_input(test.images[:500] * 2 - 1, None, (1, 32, 32))
            assert (lenet(x).argmax(1) == test.labels[:500]).float().mean() > 0.97
        samples = g.to_model_input(g(g.sample_latent(64, torch.Generator().manual_seed(0))), None, (1, 32, 32))
        probs = lenet(samples).exp()
        noise = lenet(torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(0))).exp()
    # measured (seeds 0-3): GAN samples 0.964-0.986 mean max-probability over 8-9 classes;
    # uniform noise 0.34-0.38
    assert probs.max(1).values.mean() > 0.9
    assert noise.max(1).values.mean() < 0.6
    assert len(probs.argmax(1).unique()) >= 6  # not one collapsed mode


def _face_stats(images01: torch.Tensor) -> tuple[float, float]:
    """(left-right symmetry of the mean image's luminance, centre-minus-corner redness R-B)."""
    mean = images01.mean(0)
    lum = mean.mean(0)
    symmetry = torch.corrcoef(torch.stack([lum.flatten(), lum.flip(-1).flatten()]))[0, 1].item()
    red = mean[0] - mean[2]
    corners = torch.stack([red[:10, :10].mean(), red[:10, -10:].mean()]).mean()
    return symmetry, (red[20:44, 20:44].mean() - corners).item()


def test_dcgan_faces_have_face_statistics() -> None:
    root = _weights_root(*WEIGHT_FILES["dcgan_faces64"])
    g = build_generator("dcgan_faces64", root=root)
    z = g.sample_latent(256, torch.Generator().manual_seed(0))
    with torch.no_grad():
        faces = g.to_model_input(g(z), None, (3, 64, 64))
        shuffled = build_generator("dcgan_faces64", root=root)
        for p in shuffled.parameters():  # same weight values, structure destroyed
            p.copy_(p.flatten()[torch.randperm(p.numel(), generator=torch.Generator().manual_seed(0))].view_as(p))
        broken = shuffled.to_model_input(shuffled(z), None, (3, 64, 64))
    # Centred faces: the mean image is mirror-symmetric and its centre is skin (red above blue)
    # more than the top corners (background, hair). Measured with 256 samples (seed 0): symmetry
    # 0.90, redness gap 0.093 (128 samples, seeds 0-3: 0.74-0.90 / 0.067-0.109); the 10 CelebA-HQ
    # samples give 0.94 / 0.20; the shuffled weights 0.09 / -0.003.
    symmetry, redness = _face_stats(faces)
    assert symmetry > 0.6 and redness > 0.05
    b_sym, b_red = _face_stats(broken)
    assert b_sym < 0.6 and b_red < 0.05
    files = sorted(glob.glob(str(root / "datasets" / "celeba-hq-stargan-v2-samples" / "src" / "*" / "*.jpg")))
    if files:
        celeba = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((64, 64))))
                              .permute(2, 0, 1).float() / 255 for f in files])
        c_sym, c_red = _face_stats(celeba)
        assert c_sym > 0.6 and c_red > 0.05  # the statistic does describe real faces


# ------------------------------------------------------------------ l1-ball projection

def _bisection_theta(a: np.ndarray, r: float) -> float:
    """The threshold with sum(max(|v| - theta, 0)) = r, by bisection of the 1-D dual (float64)."""
    lo, hi = 0.0, float(a.max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(a - mid, 0).sum() > r:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _check_kkt(v: np.ndarray, w: np.ndarray, r: float, tol: float) -> None:
    assert np.abs(w).sum() <= r + tol
    if r == 0:
        assert not w.any()
        return
    if np.abs(v).sum() <= r:
        assert np.array_equal(v, w)
        return
    assert abs(np.abs(w).sum() - r) <= tol  # the constraint is active
    nz = w != 0
    theta = np.abs(v[nz]) - np.abs(w[nz])
    assert np.all(np.abs(theta - theta.mean()) <= tol)  # one shrinkage threshold for all kept entries
    assert np.all(np.sign(w[nz]) == np.sign(v[nz]))
    assert np.all(np.abs(v[~nz]) <= theta.mean() + tol)  # dropped entries are below the threshold


def test_l1_projection_matches_bisection_and_kkt() -> None:
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(6, 3, 5, 7, generator=gen, dtype=torch.float64) * 3
    radii = torch.tensor([0.5, 2.0, 10.0, 50.0, 1e3, 0.0], dtype=torch.float64)
    w = project_l1_ball(v, radii)
    assert w.shape == v.shape
    for i in range(6):
        vi, wi, r = v[i].flatten().numpy(), w[i].flatten().numpy(), radii[i].item()
        if np.abs(vi).sum() > r > 0:
            theta = _bisection_theta(np.abs(vi), r)
            np.testing.assert_allclose(wi, np.sign(vi) * np.maximum(np.abs(vi) - theta, 0), rtol=0, atol=1e-12)
        _check_kkt(vi, wi, r, 1e-9)
    assert torch.equal(w[5], torch.zeros_like(w[5]))  # r = 0
    assert torch.equal(w[4], v[4])  # already inside (||v||_1 ~ 330 < 1000): returned as is


def test_l1_projection_ties_and_edges() -> None:
    ones = torch.ones(1, 10, dtype=torch.float64)
    torch.testing.assert_close(project_l1_ball(ones, 3.0), torch.full_like(ones, 0.3))
    tied = torch.tensor([[2.0, -2.0, 2.0, 0.5, -0.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(project_l1_ball(tied, 3.0), torch.tensor([[1.0, -1.0, 1.0, 0.0, 0.0, 0.0]],
                                                                        dtype=torch.float64))
    on_sphere = torch.tensor([[1.0, -2.0]])
    assert torch.equal(project_l1_ball(on_sphere, 3.0), on_sphere)
    assert torch.equal(project_l1_ball(torch.zeros(2, 4), 0.0), torch.zeros(2, 4))
    # the closest point: no random feasible point is nearer (a brute-force sanity check)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(1, 8, generator=gen, dtype=torch.float64)
    w = project_l1_ball(v, 1.0)
    cand = torch.randn(20000, 8, generator=gen, dtype=torch.float64)
    cand = cand / cand.abs().sum(1, keepdim=True) * torch.rand(20000, 1, generator=gen, dtype=torch.float64)
    assert (cand - v).norm(dim=1).min() >= (w - v).norm() - 1e-12
    with pytest.raises(ValueError, match=">= 0"):
        project_l1_ball(v, -1.0)
    with pytest.raises(ValueError, match=r"\[1\] tensor"):
        project_l1_ball(v, torch.ones(3))


def test_l1_projection_float32_feature_sized() -> None:
    # a GIFD-sized case: a 64x32x32 feature deviation, radius 2000 (the reference's first radius)
    v = torch.randn(2, 64, 32, 32, generator=torch.Generator().manual_seed(2))
    w = project_l1_ball(v, 2000.0)
    for i in range(2):
        a = v[i].double().flatten().numpy()
        theta = _bisection_theta(np.abs(a), 2000.0)
        np.testing.assert_allclose(w[i].flatten().numpy(), np.sign(a) * np.maximum(np.abs(a) - theta, 0),
                                   rtol=0, atol=1e-4)
        assert abs(w[i].abs().sum().item() - 2000.0) < 0.5


# ------------------------------------------------------------------ training command

def _tmp_root_with(tmp_path: Path, folder: str) -> Path:
    root = shared_assets()
    if root is None or not (root / "datasets" / folder).is_dir():
        pytest.skip(f"datasets/{folder} absent from the data root (set FEDARENA_DATA to the shared assets)")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / folder).symlink_to(root / "datasets" / folder)
    return tmp_path


def test_train_dcgan_smoke_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tmp_root_with(tmp_path, "cifar-10-batches-py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetSizeWarning)
        assert main(["--dataset", "cifar10", "--size", "32", "--epochs", "1", "--root", str(root), "--limit", "48",
                     "--batch-size", "16", "--ngf", "8", "--ndf", "8", "--no-progress"]) == 0
    out = root / "weights" / "dcgan_cifar10_32"
    assert {p.name for p in out.iterdir()} == {"generator.pt", "checkpoint.pt", "samples.png"}
    assert "build_generator('dcgan_cifar10_32')" in capsys.readouterr().out
    g = build_generator("dcgan_cifar10_32", root=root)
    assert g.image_shape == (3, 32, 32) and g.split_points == ("latent", "block1", "block2", "block3")
    _check_split_round_trip(g)
    assert Image.open(out / "samples.png").size == (8 * 34 + 2, 8 * 34 + 2)


def test_train_dcgan_resume_is_bit_identical(tmp_path: Path) -> None:
    root = _tmp_root_with(tmp_path, "mnist")
    cfg = TrainConfig(dataset="mnist", size=28, ngf=4, ndf=4, batch_size=16, limit=40, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetSizeWarning)
        straight = train(cfg, 2, root / "weights" / "dcgan_mnist_28", root=root, progress=False)
        resumed_dir = root / "weights" / "dcgan_mnista_28"
        train(cfg, 1, resumed_dir, root=root, progress=False)
        resumed = train(cfg, 2, resumed_dir, root=root, progress=False)  # a killed run picks up here
        with pytest.raises(ValueError, match="was trained with"):
            train(TrainConfig(**{**cfg.__dict__, "seed": 4}), 3, resumed_dir, root=root, progress=False)
    a = build_generator("dcgan_mnist_28", root=root).state_dict()
    b = build_generator("dcgan_mnista_28", root=root).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss_d"] for h in straight] == [h["loss_d"] for h in resumed]
    with pytest.raises(ValueError, match="must look like dcgan_<dataset>_<size>"):
        train(cfg, 1, root / "weights" / "mygan", root=root, progress=False)


def test_trained_file_tampered(tmp_path: Path) -> None:
    path = tmp_path / "weights" / "dcgan_x_32" / "generator.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": "something-else"}, path)
    with pytest.raises(CorruptDataError, match=f"{path} is not a fedarena-dcgan-generator/1 file"):
        build_generator("dcgan_x_32", root=tmp_path)
    torch.save({"format": "fedarena-dcgan-generator/1", "config": {"nz": 8, "ngf": 4, "nc": 3, "size": 48},
                "state_dict": {}}, path)
    with pytest.raises(CorruptDataError, match="DCGAN size must be one of"):
        build_generator("dcgan_x_32", root=tmp_path)


def test_generators_follow_the_device(tmp_path: Path) -> None:
    g = _random_dcgan(32, 3)
    z = g.sample_latent(2, torch.Generator().manual_seed(0))
    assert z.device == g.device
    x = g.to_model_input(g(z), Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), (3, 32, 32))
    assert x.device == g.device and x.dtype == torch.float32
    assert F.mse_loss(x, x).item() == 0
