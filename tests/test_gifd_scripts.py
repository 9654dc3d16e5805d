"""The GIFD benchmark scripts' own logic (issue 16): what ``gifd_speed --settings digits`` keeps, model
specs, and ``gifd_defended``'s defended upload and adaptive attacker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedarena.attacks.inversion import GIFD
from fedarena.benchmarks.harness.units import UnitCache
from fedarena.benchmarks.reproductions.inversion.common import observe
from fedarena.benchmarks.reproductions.inversion.gifd_common import TRAINING, fl_model, model_spec, run_unit
from fedarena.benchmarks.reproductions.inversion.gifd_defended import adaptive, build_defense, defended, has_view
from fedarena.benchmarks.reproductions.inversion.gifd_speed import kept_sections
from fedarena.fl_core.data import ImageDataset, Normalization
from fedarena.fl_core.threat import Observation

from .helpers import shared_assets

RESULT = """# GIFD: cost of one iteration

- command: `python -m ...gifd_speed --threads 1`
- date: 2026-12-01 22:37

## digits: generator `mnist_gan`

| digits row |

## faces: generator `dcgan_faces64`

| faces row |
**faces verdict**
"""


def test_speed_keeps_the_sections_it_does_not_remeasure_with_their_date(tmp_path: Path) -> None:
    path = tmp_path / "gifd_speed.md"
    path.write_text(RESULT)
    kept = kept_sections(path, ["digits"])
    assert list(kept) == ["faces"]
    faces = kept["faces"]
    assert faces[0] == "## faces: generator `dcgan_faces64`"
    assert faces[2] == "(kept from the run of 2026-12-01 22:37, not re-measured by this command)"
    assert "| faces row |" in faces and "**faces verdict**" in faces and "| digits row |" not in faces
    # a file that already kept the section (newer date in its header) keeps the original date, one note
    path.write_text("# t\n\n- date: 2026-12-02 03:08\n\n## digits: new\n\n| new |\n\n" + "\n".join(faces) + "\n")
    again = kept_sections(path, ["digits"])["faces"]
    assert again == faces
    assert kept_sections(path, ["digits", "faces"]) == {}
    # blank lines before the end-of-run load line and a hand-written notes section do not pile up
    path.write_text("# t\n\n- date: 2026-12-02 03:08\n\n" + "\n".join(faces)
                    + "\n\n\n\nLoad average (1 min) at the end: 1.0.\n\n## Notes (added by hand)\n\n- a note\n")
    assert kept_sections(path, ["digits"])["faces"] == faces and faces[-1] == "" and faces[-2] != ""
    assert kept_sections(tmp_path / "absent.md", ["digits"]) == {}


def test_model_spec_parses_integer_options_and_names_a_bad_one() -> None:
    assert model_spec("resnet18") == ("resnet18", {})
    assert model_spec("convnet:width=16") == ("convnet", {"width": 16})
    with pytest.raises(ValueError, match="'width' in 'convnet:width' is not key=<integer>"):
        model_spec("convnet:width")
    with pytest.raises(ValueError, match="width=wide"):
        model_spec("convnet:width=wide")


def _digit() -> ImageDataset:
    images = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return ImageDataset("random", images, torch.tensor([3]), 10, Normalization((0.5,), (0.25,)))


def test_defended_upload_and_adaptive_attacker() -> None:
    data = _digit()
    obs, _ = observe(fl_model("lenet", data), data, TRAINING)
    clean = obs.update.vector
    assert defended(obs, None) is obs
    pruned = defended(obs, build_defense("pruning"))
    kept = int((pruned.update.vector != 0).sum())
    assert kept == round(0.8 * clean.numel()) and int((clean != 0).sum()) > kept
    assert torch.equal(pruned.update.vector[pruned.update.vector != 0], clean[pruned.update.vector != 0])
    assert float(defended(obs, build_defense("clipping")).update.vector.norm()) <= 4.0 + 1e-5
    noisy = defended(obs, build_defense("gaussian_noise")).update.vector
    assert 0.005 < float((noisy - clean).std()) < 0.02  # σ 0.01
    attack = GIFD(generator="mnist_gan", iterations=2, feature_iterations=2, restarts=1)
    assert not has_view(build_defense("gaussian_noise")) and not has_view(None)
    assert adaptive(attack, build_defense("gaussian_noise"), obs) is attack
    assert has_view(build_defense("clipping")) and has_view(build_defense("pruning"))
    view = adaptive(attack, build_defense("pruning"), pruned).settings.update_transform
    assert attack.settings.update_transform is None and view is not None
    dummy = torch.ones_like(clean)
    assert torch.equal(view(dummy), (pruned.update.vector != 0).to(dummy.dtype))


def test_defended_unit_runs_the_adaptive_attack_on_the_defended_upload(tmp_path: Path) -> None:
    root = shared_assets()
    if root is None or not (root / "weights" / "csinva-mnist" / "G--300.ckpt").is_file():
        pytest.skip("weights/csinva-mnist/G--300.ckpt absent (set FEDARENA_DATA to the shared assets)")
    data = _digit()
    model = fl_model("lenet", data)
    attack = GIFD(generator="mnist_gan", data_root=str(root), iterations=2, feature_iterations=2, restarts=1)
    defense = build_defense("pruning")
    seen: list[Observation] = []

    def prepare(obs: Observation) -> tuple[Observation, GIFD]:
        seen.append(defended(obs, defense))
        return seen[-1], adaptive(attack, defense, seen[-1])

    with UnitCache("t", root=tmp_path) as cache:
        unit = run_unit(cache, "digits", "gifd/pruning/adaptive", attack, model, data, 0, {"d": "pruning"}, prepare)
        again = run_unit(cache, "digits", "gifd/pruning/adaptive", attack, model, data, 0, {"d": "pruning"}, prepare)
    assert len(seen) == 1  # the second call read the cached unit
    assert unit.psnr == again.psnr and [st["split"] for st in unit.stages] == ["latent", "block1", "block2"]
