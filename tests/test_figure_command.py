"""``fedarena figure DIR``: a reconstruction grid rebuilt from a tiny stored run, with the
chosen attacks, defenses and images; clear errors for what the store does not hold."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedarena.benchmarks.figures import rebuild
from fedarena.benchmarks.figures.plots import GridRow, grid_figure, reconstruction_grid
from fedarena.benchmarks.harness.cli import main
from fedarena.benchmarks.harness.store import RunResult, Store
from fedarena.benchmarks.harness.suite import RunSpec, Suite

RUNS = [  # (attack, attack label, defense, defense label, block)
    ("dlg", "dlg(iterations=30)", "none", "none", "digits"),
    ("inverting_gradients", "inverting_gradients(iterations=300)", "none", "none", "digits"),
    ("inverting_gradients", "inverting_gradients(iterations=300)", "gaussian_noise", "gaussian_noise(sigma=0.01)",
     "digits"),
    ("dlg", "dlg(iterations=30)", "none", "none", "faces"),  # another block: another image batch
]


def _blob(block: str, run: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed({"digits": 7, "faces": 11}[block])
    truth = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8, generator=gen)
    noise = torch.randint(-40, 40, truth.shape, generator=torch.Generator().manual_seed(run))
    return {"truth": truth, "reconstruction": (truth.int() + noise).clamp(0, 255).to(torch.uint8),
            "psnr": torch.tensor([10.0 + run, 20.0, float("inf"), 30.0 + run])}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    specs, blobs = [], {}
    for i, (attack, attack_label, defense, defense_label, block) in enumerate(RUNS):
        spec = RunSpec(f"{i:016x}", "tiny", {"task": "privacy", "seed": 0, "attack": {"name": attack},
                                             "defense": {"name": defense}},
                       {"attack_label": attack_label, "defense_label": defense_label, "block_label": block})
        specs.append(spec)
        blobs[spec.run_id] = _blob(block, i)
        path = tmp_path / "artefacts" / spec.run_id / "reconstruction.pt"
        path.parent.mkdir(parents=True)
        torch.save(blobs[spec.run_id], path)
    with Store.in_folder(tmp_path) as store:
        store.register_suite(Suite("tiny", "", tuple(specs), "tiny.yaml", ""))
        for spec in specs:
            store.record(spec, RunResult(spec.run_id, "ok", {"psnr": 20.0}),
                         {"reconstruction.pt": f"artefacts/{spec.run_id}/reconstruction.pt"})
    return tmp_path


def test_figure_rebuilds_the_chosen_rows_and_images(folder: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figs" / "grid.png"
    assert main(["figure", str(folder), "--block", "digits", "--attacks", "inverting_gradients", "dlg",
                 "--defenses", "gaussian_noise(sigma=0.01)", "none", "--images", "3", "0", "--title", "T",
                 "--out", str(out)]) == 0
    assert f"figure: {out}" in capsys.readouterr().out
    # rows in --attacks order, then --defenses order; columns are images 3 and 0 of the stored batch
    blob = {i: _blob("digits", i) for i in range(3)}
    pick = torch.tensor([3, 0])
    expected = {f"{RUNS[i][1]}\nvs {RUNS[i][3]}": GridRow(blob[i]["reconstruction"][pick].float() / 255,
                                                        blob[i]["psnr"][pick].tolist()) for i in (2, 1, 0)}
    reference = reconstruction_grid(blob[0]["truth"][pick].float() / 255, expected, tmp_path / "ref.png", "T")
    assert out.read_bytes() == reference.read_bytes()


def test_figure_writes_pdf_and_svg_with_a_title_naming_attacks_and_defenses(folder: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for fmt, magic in (("pdf", b"%PDF"), ("svg", b"<svg")):
        out = tmp_path / f"grid.{fmt}"
        assert main(["figure", str(folder), "--block", "digits", "--defenses", "gaussian_noise", "--out",
                     str(out)]) == 0
        assert magic in out.read_bytes()[:400]
    titles: list[str] = []

    def spy(truth: torch.Tensor, rows: dict[str, GridRow], title: str) -> object:
        titles.append(title)
        return grid_figure(truth, rows, title)

    monkeypatch.setattr(rebuild, "grid_figure", spy)
    rebuild.rebuild_grid(folder, tmp_path / "t.png", rebuild.Selection(defenses=["gaussian_noise"], block="digits"))
    assert titles == ["tiny: digits; inverting_gradients(iterations=300) vs gaussian_noise(sigma=0.01)"]


@pytest.mark.parametrize(("args", "message"), [
    (["--attacks", "zzz"], "no stored privacy run matches --attacks zzz; the store has attacks dlg (dlg(iterations"),
    (["--block", "digits", "--images", "0", "9"], "--images [9]: the stored batch has 4 images (0 to 3)"),
    ([], "attacked 2 different image batches"),
    (["--block", "digits", "--seed", "5"], "no matching run has seed 5; seeds stored: [0]"),
])
def test_figure_says_what_the_store_holds(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], message: str) -> None:
    assert main(["figure", str(folder), *args, "--out", str(tmp_path / "x.png")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_figure_refuses_bad_outputs_missing_stores_and_escaping_artefacts(folder: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["figure", str(folder), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "must end in .png, .pdf, .svg" in capsys.readouterr().err
    assert main(["figure", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 2
    assert "has no results.sqlite" in capsys.readouterr().err
    # a store whose artefact path leaves the folder is never followed
    with Store.in_folder(folder) as store:
        record = store.get(f"{3:016x}")
        spec = RunSpec(record.run_id, record.suite, record.config, record.meta)
        store.record(spec, RunResult(record.run_id, "ok", {"psnr": 20.0}), {"reconstruction.pt": "../" * 6 + "etc/x"})
    assert main(["figure", str(folder), "--block", "faces", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "leaves the result folder" in err and "no usable reconstruction" in err
