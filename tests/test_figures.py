"""Figures: files written in every format, bad input refused, and what makes them paper-ready
(integer round ticks, a visible "n/a", labels that never overlap, legends outside the data)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from fedarena.benchmarks.figures import report as figs
from fedarena.benchmarks.figures.plots import GridRow, grid_figure, loss_curves, loss_figure, reconstruction_grid
from fedarena.benchmarks.figures.style import layout_problems, save_figure, wrap_label


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


# --------------------------------------------------------------------- paper-ready figures (issue #18)

LONG_DEFENSES = ["none", "gaussian_noise(sigma=0.01)", "gaussian_noise(sigma=0.1)", "krum(f=2)", "multi_krum(f=2, m=5)",
                 "trimmed_mean(beta=0.2)", "coordinate_median", "flame(noise_multiplier=0.001)", "fltrust",
                 "clipped_clustering(max_tau=100000)"]


def test_figures_are_written_as_png_pdf_and_svg_at_the_chosen_dpi(tmp_path) -> None:
    truth = torch.rand(2, 3, 8, 8)
    rows = {"dlg\nvs none": GridRow(truth, psnr=[20.0, 30.0])}
    first = reconstruction_grid(truth, rows, tmp_path / "grid.png", "t", formats=("png", "pdf", "svg"))
    assert first == tmp_path / "grid.png"
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "grid.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (tmp_path / "grid.svg").read_bytes()[:400]
    assert loss_curves({"a": [3.0, 2.0, 1.0]}, tmp_path / "loss.svg").suffix == ".svg"  # format from the suffix
    # the same figure gives the same bytes (no creation dates, fixed SVG ids): a rebuilt figure diffs only if it changed
    for fmt in ("pdf", "svg"):
        once, again = (reconstruction_grid(truth, rows, tmp_path / f"{name}.{fmt}", "t").read_bytes()
                       for name in ("once", "again"))
        assert once == again, fmt
    pdf = (tmp_path / "again.pdf").read_bytes()
    assert b"/Subtype /Type3" not in pdf and b"/Subtype /CIDFontType2" in pdf  # TrueType (Type 42), not Type 3
    small = Image.open(reconstruction_grid(truth, rows, tmp_path / "s.png", dpi=100)).size
    large = Image.open(reconstruction_grid(truth, rows, tmp_path / "l.png", dpi=200)).size
    assert abs(large[0] - 2 * small[0]) <= 2 and abs(large[1] - 2 * small[1]) <= 2
    curves = [figs.Curve("fedavg", [1, 2, 3], [0.5, 0.6, 0.7], [0.0, 0.0, 0.0])]
    assert figs.accuracy_curves(curves, "t", format="pdf").startswith(b"%PDF")
    assert b"<svg" in figs.detection_bars([figs.Bars("krum", 0.5, 1.0)], "t", format="svg")[:400]
    with pytest.raises(ValueError, match="unknown figure format 'jpg'"):
        save_figure(plt.figure(), tmp_path / "x", formats=("jpg",))


def _drawn_ticks(ax) -> list[float]:  # noqa: ANN001 (matplotlib Axes)
    ax.figure.draw_without_rendering()
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_round_and_iteration_ticks_are_whole_numbers() -> None:
    curves = [figs.Curve("fedavg", [1, 2, 3], [0.5, 0.6, 0.7], [0.01, 0.02, 0.0])]
    for fig in (figs.accuracy_figure(curves, "3 rounds"), loss_figure({"a": [3.0, 2.0, 1.0]})):
        ticks = _drawn_ticks(fig.axes[0])
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # matplotlib alone puts 1.25, 1.5, ...
        plt.close(fig)


def test_not_applicable_is_hatched_and_marked_never_drawn_as_zero() -> None:
    fig = figs.detection_figure([figs.Bars("fedavg", None, 0.0), figs.Bars("krum", 0.0, 0.5)], "sign_flip vs ...")
    ax = fig.axes[0]
    na = [p for p in ax.patches if p.get_gid() == "not-applicable"]
    assert len(na) == 1 and na[0].get_hatch() and na[0].get_height() == 1.0  # full height, hatched: not a 0
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("n/a") == 1 and texts.count("0.00") == 2  # the two real zeros carry their value
    assert "n/a (undefined, not 0)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    fig = figs.detection_figure([figs.Bars("krum", 0.0, 0.5)], "no undefined value")
    assert not [p for p in fig.axes[0].patches if p.get_gid() == "not-applicable"]
    assert "n/a (undefined, not 0)" not in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)


def test_long_defense_names_never_make_labels_overlap() -> None:
    bars = [figs.Bars(d, None if i % 3 == 0 else 0.25 * (i % 4), 1.0 if i % 2 else 0.0)
            for i, d in enumerate(LONG_DEFENSES)]
    curves = [figs.Curve(f"sign_flip(scale=3)×1 / {d}", [1, 2, 3], [0.5, 0.6, 0.7], [0.01] * 3) for d in LONG_DEFENSES]
    points = [figs.Point(d, a, 0.5 + i / 30, 20.0 + i) for i, d in enumerate(LONG_DEFENSES)
              for a in ("dlg(iterations=300, line_search=strong_wolfe)", "inverting_gradients(iterations=1000)")]
    truth = torch.rand(8, 3, 8, 8)
    rows = {f"inverting_gradients (adaptive)\nvs {d}": GridRow(truth, psnr=[float("inf"), *[20.0] * 7])
            for d in LONG_DEFENSES[:4]}
    many = [figs.Bars(f"{a} / {d}", 0.5, 0.5) for a in ("sign_flip×4", "alie×4") for d in LONG_DEFENSES]
    figures = {"detection": figs.detection_figure(bars, "robustness: poisoning on digits, " * 3),
               "detection per attack": figs.detection_figure(many, "two attacks"),
               "accuracy": figs.accuracy_figure(curves, "robustness: poisoning"),
               "privacy-utility": figs.privacy_utility_figure(points, "privacy_utility: privacy vs utility"),
               "grid": grid_figure(truth, rows, "privacy: inversion, sample images (4 clients x 1 image) " * 2),
               "loss": loss_figure({f"client {i} under {d}": [3.0, 2.0, 1.0] for i, d in enumerate(LONG_DEFENSES)},
                                   "dlg vs gaussian_noise(sigma=0.01): matching loss")}
    for name, fig in figures.items():
        assert layout_problems(fig) == [], name
        plt.close(fig)


def test_legends_sit_outside_the_data() -> None:
    curves = [figs.Curve(d, [1, 2, 3], [0.5, 0.6, 0.7], [0.0] * 3) for d in LONG_DEFENSES[:3]]
    fig = figs.accuracy_figure(curves, "t")
    fig.draw_without_rendering()
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    plt.close(fig)


def test_many_curves_get_a_panel_per_attack_with_one_legend() -> None:
    attacks, defenses = ["none", "sign_flip×4", "alie×4", "ipm×4"], LONG_DEFENSES[:4]
    curves = [figs.Curve(f"{a} / {d}", list(range(1, 21)), [0.5] * 20, [0.0] * 20) for a in attacks for d in defenses]
    fig = figs.accuracy_figure(curves, "robustness")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == attacks
    assert all(len(ax.get_lines()) == len(defenses) for ax in shown)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [wrap_label(d, 30) for d in defenses]
    assert layout_problems(fig) == []
    plt.close(fig)


def test_layout_check_finds_overlaps_cut_off_text_and_legends_over_data() -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.text(0.5, 0.5, "one label")
    ax.text(0.5, 0.5, "another label")
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend(loc="center")  # over the data
    fig.text(0.95, 0.5, "this runs off the right edge")
    problems = layout_problems(fig)
    assert any("'one label' overlaps" in p and "'another label'" in p for p in problems), problems
    assert any("'this runs off the right edge' is cut off" in p for p in problems), problems
    assert any("legend lies over the data of axes 0" in p for p in problems), problems
    plt.close(fig)


def test_wrap_label_breaks_between_a_name_and_its_parameters() -> None:
    assert wrap_label("gaussian_noise(sigma=0.01)", 16) == "gaussian_noise(\nsigma=0.01)"
    assert wrap_label("sign_flip(scale=3)×1 / krum(f=2)", 20) == "sign_flip(scale=3)×1\n/ krum(f=2)"
    assert wrap_label("clipped_clustering_long_name", 8) == "clipped_clustering_long_name"  # one word: kept whole
    assert wrap_label("none", 8) == "none"
