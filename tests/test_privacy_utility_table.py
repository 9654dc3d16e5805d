"""The privacy–utility reproduction table says what its numbers mean (issue 18): exact
reconstructions counted instead of silently dropped from the PSNR mean, median and IQR,
the different datasets and models of privacy and utility, LPIPS at 32×32, data warnings."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from fedarena.benchmarks.reproductions.privacy_utility import table
from fedarena.fl_core.datasets import DatasetSizeWarning


def _image(index: int, psnr: float | None) -> dict[str, Any]:
    return {"image": index, "psnr": psnr, "ssim": 0.5, "lpips": 0.2, "label_accuracy": 1.0, "seconds": 1.0,
            "lpips_note": ""}


def test_table_marks_exact_reconstructions_and_states_the_pairing(tmp_path: Path) -> None:
    plan = table.Plan(images=(0, 1, 2, 3))
    none = table.ROWS[0]
    dlg = [_image(0, None), _image(1, 30.0), _image(2, 35.0), _image(3, 40.0)]  # image 0 exact: cached as null
    ig = [_image(i, 10.0 + i) for i in range(4)]
    results = {none.key: {"utility": {"accuracy": 0.98, "epsilon": None, "epsilon_by_adjacency": {}},
                          "attacks": {"dlg": {"epsilon_upload": None, "naive": {"images": dlg, **table._means(dlg)}},
                                      "ig": {"epsilon_upload": None, "naive": {"images": ig, **table._means(ig)}}}}}
    out = tmp_path / "pu.md"
    note = "cifar10 test: 1000 samples in test_batch, the official split has 10000 (a custom subset)"
    table._write(out, [none], results, plan, "python -m x", 1.0, True, [note])
    md = out.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| none | naive |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "35.00 (+1 ∞); median 37.50 [33.75–∞]"  # mean of the three finite images
    assert cells[5] == "11.50; median 11.50 [10.75–12.25]"
    means = table._means(dlg)
    assert (means["psnr"], means["psnr_exact"], means["psnr_median"], means["psnr_q3"]) == (35.0, 1, 37.5, None)
    assert "it is not a trade-off measured on one model" in md and "MNIST on lenet5" in md
    assert "LPIPS on these 32×32 CIFAR-10 images is much less discriminative" in md
    assert f"Data: {note}" in md
    caption = md.splitlines()[md.splitlines().index(next(x for x in md.splitlines() if x.startswith("| defense"))) - 2]
    assert caption.startswith("*Inversion attacks") and caption.endswith("*")


def test_data_size_warnings_are_kept_for_the_table(monkeypatch: Any) -> None:
    def fake(name: str, split: str) -> str:
        warnings.warn(f"{name} {split}: 1000 samples, official 10000", DatasetSizeWarning, stacklevel=2)
        warnings.warn("something else", UserWarning, stacklevel=2)
        return "data"

    monkeypatch.setattr(table, "load_dataset", fake)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as passed:
        warnings.simplefilter("always")
        assert table._load("cifar10", "test", notes) == "data"
        table._load("cifar10", "test", notes)
    assert notes == ["cifar10 test: 1000 samples, official 10000"]  # once, however often loaded
    assert [str(w.message) for w in passed] == ["something else", "something else"]  # other warnings pass through
