"""Reconstruction grid and loss-curve figures: files written, bad input refused."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from benchmarks.figures.plots import GridRow, loss_curves, reconstruction_grid


def test_reconstruction_grid_has_a_row_per_attack(tmp_path) -> None:
    truth = torch.rand(3, 3, 8, 8)
    rows = {"dlg": GridRow(truth.flip(-1), psnr=[20.0, 21.5, 30.2], lpips=[0.1, 0.2, 0.3]),
            "ig": GridRow(torch.rand(3, 3, 8, 8), psnr=[12.0, 11.0, 10.0])}
    one_row = reconstruction_grid(truth, {"dlg": rows["dlg"]}, tmp_path / "one.png")
    two_rows = reconstruction_grid(truth, rows, tmp_path / "grid.png", title="test")
    h1, h2 = Image.open(one_row).size[1], Image.open(two_rows).size[1]
    assert h2 > h1 > 0  # each attack adds a row


def test_grid_accepts_grey_images_and_rejects_mismatches(tmp_path) -> None:
    grey = torch.rand(2, 1, 8, 8)
    assert reconstruction_grid(grey, {"a": GridRow(grey)}, tmp_path / "g.png").is_file()
    with pytest.raises(ValueError, match="row 'a'"):
        reconstruction_grid(grey, {"a": GridRow(torch.rand(3, 1, 8, 8))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="psnr values"):
        reconstruction_grid(grey, {"a": GridRow(grey, psnr=[1.0])}, tmp_path / "x.png")


def test_loss_curves_written(tmp_path) -> None:
    path = loss_curves({"dlg": [10.0, 1.0, 0.1], "ig": [0.5, 0.4, 0.3, 0.2]}, tmp_path / "sub" / "loss.png")
    assert path.is_file() and Image.open(path).size[0] > 100
    with pytest.raises(ValueError, match="at least one"):
        loss_curves({}, tmp_path / "none.png")
