"""What the report's tables mean (issue 18): detection "–" where it does not apply, PSNR with
exact reconstructions, privacy–utility pairs on the same dataset and model only, suite-order
columns with parameters, block settings and warnings, iDLG labels, a caption on every table.

Most tests store hand-made metrics for the runs a real suite expands to (the report is the
thing under test, and it only reads the store); the iDLG test runs a real tiny attack.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedarena.benchmarks.harness.report import write_report
from fedarena.benchmarks.harness.runner import run_suite
from fedarena.benchmarks.harness.store import RunResult, Store
from fedarena.benchmarks.harness.suite import RunSpec, parse_suite
from fedarena.benchmarks.metrics.privacy import summarize_psnr

Metrics = Callable[[RunSpec], dict[str, Any] | None]


def _report(folder: Path, suite_text: str, metrics: Metrics,
            artefacts: Callable[[RunSpec], dict[str, bytes]] | None = None) -> str:
    """Store ``metrics(spec)`` as each planned run's result (None: the run stays pending), report."""
    suite = parse_suite(suite_text, "semantics.yaml")
    with Store.in_folder(folder) as store:
        store.register_suite(suite)
        for spec in suite.runs:
            m = metrics(spec)
            if m is None:
                continue
            stored = {}
            for name, data in (artefacts(spec) if artefacts else {}).items():
                path = folder / "artefacts" / spec.run_id / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                stored[name] = f"artefacts/{spec.run_id}/{name}"
            store.record(spec, RunResult(spec.run_id, "ok", m, {}, None, 0.0, 1.0, "test", "cpu"), stored)
    return write_report(folder).markdown.read_text()


def _table(md: str, header_start: str, nth: int = 0) -> list[dict[str, str]]:
    """The ``nth`` Markdown table whose header starts with ``header_start``, as dicts by column."""
    lines = md.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    assert len(starts) > nth, f"no table {nth} starting {header_start!r}"
    i = starts[nth]
    header = [c.strip() for c in lines[i].strip("|").split(" | ")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, [c.strip() for c in line.strip().strip("|").split(" | ")], strict=True)))
    return rows


ROBUST = """
suite: detection
runs:
  - task: robustness
    label: poisoning
    dataset: {name: digits, size: 100}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 5, rounds: 2}
    attacks: [none, {name: sign_flip, clients: 1}]
    defenses: [fedavg, median, krum]
    seeds: [0, 1]
"""


def _detection(spec: RunSpec) -> dict[str, Any]:
    """Last-round verdicts: fedavg and median keep everyone; krum keeps one client (the honest 0)."""
    attacked = bool(spec.config["attack"]["groups"])
    defense = spec.config["defense"]["name"]
    honest = 4 if attacked else 5
    roles = {"honest": honest, **({"sign_flip": 1} if attacked else {})}
    if defense == "krum":
        det = {"honest": {"precision": 1.0, "recall": 1 / honest, "support": honest, "predicted": 1},
               "malicious": {"precision": 0.25 if attacked else 0.0, "recall": 1.0 if attacked else None,
                             "support": int(attacked), "predicted": 4}}
        if attacked:
            det["sign_flip"] = {"precision": None, "recall": 1.0, "support": 1, "predicted": 1}
    else:
        det = {"honest": {"precision": honest / 5, "recall": 1.0, "support": honest, "predicted": 5},
               "malicious": {"precision": None, "recall": 0.0 if attacked else None, "support": int(attacked),
                             "predicted": 0}}
        if attacked:
            det["sign_flip"] = {"precision": None, "recall": 0.0, "support": 1, "predicted": 0}
    return {"final_accuracy": 0.5, "detection": det, "roles": roles, "fl_seconds": 1.0,
            "malicious_precision": det["malicious"]["precision"], "malicious_recall": det["malicious"]["recall"],
            "accuracy_curve": [[1, 0.4], [2, 0.5]]}


def test_detection_is_a_dash_without_attackers_and_for_rules_that_exclude_nobody(tmp_path: Path) -> None:
    md = _report(tmp_path, ROBUST, _detection)
    rows = {(r["attack"], r["defense"]): r for r in _table(md, "| attack | defense | accuracy (%)")}
    for key in [("none", "fedavg"), ("none", "median"), ("none", "krum"), ("sign_flip×1", "fedavg"),
                ("sign_flip×1", "median")]:
        assert (rows[key]["detection precision"], rows[key]["detection recall"]) == ("–", "–"), key
    assert (rows[("sign_flip×1", "krum")]["detection precision"],
            rows[("sign_flip×1", "krum")]["detection recall"]) == ("0.25 ± 0.00", "1.00 ± 0.00")
    roles = _table(md, "| attack | defense | role |")
    assert {r["defense"] for r in roles} == {"krum"}  # fedavg and median exclude nobody: no rows
    by_attack = {a: [(r["role"], r["clients"]) for r in roles if r["attack"] == a] for a in ("none", "sign_flip×1")}
    assert by_attack == {"none": [("honest", "5")],  # no malicious row: that role has no client
                         "sign_flip×1": [("honest", "4"), ("sign_flip", "1"), ("malicious", "1")]}
    # the definitions and the cell format are in the report itself
    assert "Per role — honest: precision = share of the clients the defense kept that are honest" in md
    assert "“(k/n)” after a value: only k of the n seeds gave a defined value" in md
    assert "mean ± sample standard deviation over seeds" in md
    assert "Attack success: for targeted attacks" in md and "Training time: wall time" in md
    figures = re.findall(r"\(report_files/([^)]+)\)", md)
    assert any("detection" in f for f in figures)  # krum's bars


def _captions_everywhere(md: str, page: str) -> None:
    lines = md.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("|") and lines[i + 1].startswith("| --- |")]
    assert headers
    for i in headers:
        assert lines[i - 1] == "" and lines[i - 2].startswith("*") and lines[i - 2].endswith("*"), lines[i]
    assert page.count("<table>") == page.count("<table><caption>") == len(headers)


def test_every_table_has_a_caption(tmp_path: Path) -> None:
    md = _report(tmp_path, ROBUST, _detection)
    _captions_everywhere(md, (tmp_path / "report.html").read_text())


PRIVACY = """
suite: psnr
runs:
  - task: privacy
    label: inversion
    dataset: {name: digits, indices: [0, 7, 9, 11]}
    model: {name: mlp, params: {hidden: [16]}}
    federation: {clients: 2, local: {algorithm: fedsgd, batch_size: 2}}
    attacks: [{name: dlg, params: {iterations: 30}}]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}]
"""


def test_psnr_of_exact_reconstructions_is_marked_with_median_and_iqr(tmp_path: Path) -> None:
    per_image = {"none": [20.0, 26.0, None, 110.0], "gaussian_noise": [10.0, 12.0, 14.0, 16.0]}

    def metrics(spec: RunSpec) -> dict[str, Any]:
        values = per_image[spec.config["defense"]["name"]]
        return {"psnr": None if None in values else sum(values) / 4,  # as stored: an ∞ mean is null
                "psnr_per_image": values, "ssim": 0.9, "images": 4, "attack_seconds": 2.0}

    md = _report(tmp_path, PRIVACY, metrics)
    rows = {r["defense"]: r for r in _table(md, "| attack | defense | PSNR mean (dB)")}
    exact = rows["none"]
    assert exact["PSNR mean (dB)"] == "52.00 (+1 ∞)"  # mean of the three finite images, the exact one counted
    assert exact["PSNR median [IQR] (dB)"] == "68.00 [24.50–∞]"
    assert exact["exact (∞) / images"] == "1/4"
    assert exact["PSNR per image (dB)"] == "20.00, 26.00, ∞, 110.00"
    noisy = rows["gaussian_noise(sigma=0.01)"]
    assert (noisy["PSNR mean (dB)"], noisy["PSNR median [IQR] (dB)"], noisy["exact (∞) / images"]) == \
        ("13.00", "13.00 [11.50–14.50]", "0/4")
    matrix = _table(md, "| attack \\ defense |")[0]
    assert matrix["none"] == "52.00 (+1 ∞); median 68.00 [24.50–∞]"
    assert "An exact reconstruction has zero error and infinite PSNR (∞)" in md  # said in the caption


def test_summarize_psnr_matches_numpy_and_ranks_infinity_highest() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(5, 60, size=9).tolist()
    s = summarize_psnr(values)
    assert (s.images, s.exact) == (9, 0)
    assert s.mean == pytest.approx(np.mean(values))
    assert [s.q1, s.median, s.q3] == pytest.approx(np.percentile(values, [25, 50, 75]).tolist())
    s = summarize_psnr([30.0, None, math.inf, 10.0, 20.0])  # None: ∞ as the store keeps it
    assert (s.images, s.exact, s.mean, s.q1, s.median) == (5, 2, 20.0, 20.0, 30.0)
    assert s.q3 == math.inf
    all_exact = summarize_psnr([None, None])
    assert (all_exact.mean, all_exact.median) == (None, math.inf)
    with pytest.raises(ValueError, match="finite or \\+inf"):
        summarize_psnr([1.0, math.nan])


PAIRS = """
suite: pairs
runs:
  - task: privacy
    label: digits inversion
    dataset: {name: digits, indices: [0, 7]}
    model: {name: mlp, params: {hidden: [16]}}
    federation: {clients: 2, local: {algorithm: fedsgd, batch_size: 1}}
    attacks: [{name: dlg, params: {iterations: 5}}]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}]
  - task: privacy
    label: photo inversion
    dataset: {name: sample_images, indices: [0, 1]}
    model: {name: mlp, params: {hidden: [16]}}
    federation: {clients: 2, local: {algorithm: fedsgd, batch_size: 1}}
    attacks: [{name: dlg, params: {iterations: 5}}]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}]
  - task: robustness
    label: digits utility
    dataset: {name: digits, size: 100}
    model: {name: mlp, params: {hidden: [16]}}
    attacks: [none]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}]
  - task: robustness
    label: other model utility
    dataset: {name: digits, size: 100}
    model: {name: mlp, params: {hidden: [32]}}
    attacks: [none]
    defenses: [none, {name: gaussian_noise, params: {sigma: 0.01}}]
"""


def _pair_metrics(spec: RunSpec) -> dict[str, Any]:
    noisy = spec.config["defense"]["name"] != "none"
    if spec.config["task"] == "privacy":
        return {"psnr": 15.0 if noisy else 30.0, "psnr_per_image": [15.0, 15.0] if noisy else [30.0, 30.0]}
    wide = spec.config["model"]["params"]["hidden"] == [32]
    return {"final_accuracy": (0.3 if wide else 0.8) - (0.1 if noisy else 0.0), "detection": {}}


def test_privacy_utility_pairs_only_the_same_dataset_and_model(tmp_path: Path) -> None:
    md = _report(tmp_path, PAIRS, _pair_metrics)
    rows = _table(md, "| attack | defense | PSNR median [IQR] (dB) | PSNR mean (dB) | accuracy (%)")
    assert [(r["defense"], r["PSNR median [IQR] (dB)"], r["accuracy (%)"]) for r in rows] == [
        ("none", "30.00 [30.00–30.00]", "80.0%"), ("gaussian_noise(sigma=0.01)", "15.00 [15.00–15.00]", "70.0%")]
    assert "Privacy from “digits inversion”, utility from “digits utility” (same dataset and model: " \
           "digits / mlp(hidden=[16])" in md
    assert len(re.findall(r"^\| attack \| defense \| PSNR median", md, re.M)) == 1  # no pair with the wider MLP
    assert "No privacy–utility pair for the privacy block(s) “photo inversion” (sample_images / mlp(hidden=[16]))" in md
    assert len([f for f in re.findall(r"\(report_files/([^)]+)\)", md) if "_privacy_" in f]) == 1


ORDER = """
suite: order
runs:
  - task: robustness
    label: order
    dataset: {name: digits, size: 100}
    model: {name: mlp, params: {hidden: [8]}}
    attacks: [none, {name: sign_flip, clients: 1}]
    defenses:
      - median
      - {name: gaussian_noise, params: {sigma: 0.01}, label: noise}
      - {name: gaussian_noise, params: {sigma: 0.1}, label: noise}
      - fedavg
"""


def test_defense_columns_keep_the_suite_order_and_show_parameters(tmp_path: Path) -> None:
    def metrics(spec: RunSpec) -> dict[str, Any] | None:
        if spec.config["attack"]["groups"] == [] and spec.config["defense"]["name"] == "median":
            return None  # not run yet: its column must still come first
        sigma = spec.config["defense"]["params"].get("sigma", 0.0)
        return {"final_accuracy": 0.9 - sigma, "detection": {}}

    md = _report(tmp_path, ORDER, metrics)
    assert "| attack \\ defense | median | noise [gaussian_noise(sigma=0.01)] | noise [gaussian_noise(sigma=0.1)] " \
           "| fedavg |" in md
    matrix = {r["attack \\ defense"]: r for r in _table(md, "| attack \\ defense |")}
    assert matrix["none"]["median"] == ""  # the pending run
    assert (matrix["none"]["noise [gaussian_noise(sigma=0.01)]"],
            matrix["none"]["noise [gaussian_noise(sigma=0.1)]"]) == ("89.0%", "80.0%")  # two σ, two columns


def test_block_settings_and_warnings_above_the_tables(tmp_path: Path) -> None:
    warning = "DatasetSizeWarning: cifar10 test split has 1000 samples (official 10000): a custom subset"

    def metrics(spec: RunSpec) -> dict[str, Any]:
        return {"psnr_per_image": [20.0, 21.0], "images_per_client": [2, 2], "warnings": [warning],
                "reconstructions": [{"config": {"iterations": 30}, "label_method": "optimize"}]}

    md = _report(tmp_path, PRIVACY, metrics)
    block = md.split("### Privacy — inversion", 1)[1].split("| attack \\ defense |", 1)[0]
    for line in ["- data: digits, train split, images 0, 7, 9, 11 (4 images)",
                 "- model: mlp(hidden=[16])",
                 "- federation: 2 clients, federation run up to the attack round 0, partition iid, protocol fedavg",
                 "- local training: fedsgd, one gradient, batch 2, sgd lr 0.01, model in train mode",
                 "- attacked: clients 0, 1; images per client: 2, 2",
                 "- attacks: dlg(iterations=30) — 30 iterations, labels: optimize",
                 "- seeds: 0",
                 f"- {warning} (2 of 2 runs)"]:
        assert line in block.splitlines(), line


def test_lpips_below_64_pixels_is_flagged(tmp_path: Path) -> None:
    suite = PAIRS.split("  - task: robustness")[0]

    def metrics(spec: RunSpec) -> dict[str, Any]:
        return {"psnr_per_image": [20.0, 21.0], "lpips": 0.05}

    def artefacts(spec: RunSpec) -> dict[str, bytes]:
        import io
        side = 32 if spec.config["dataset"]["name"] == "sample_images" else 8
        channels = 3 if side == 32 else 1
        images = torch.zeros(2, channels, side, side, dtype=torch.uint8)
        buffer = io.BytesIO()
        torch.save({"truth": images, "reconstruction": images, "psnr": torch.tensor([20.0, 21.0])}, buffer)
        return {"reconstruction.pt": buffer.getvalue()}

    md = _report(tmp_path, suite, metrics, artefacts)
    photo = md.split("### Privacy — photo inversion", 1)[1]
    assert "on these 32×32 images LPIPS is much less discriminative than at 64×64" in photo
    assert "8×8 images LPIPS" in md.split("### Privacy — photo inversion", 1)[0]


IDLG = """
suite: idlg
runs:
  - task: privacy
    label: one image
    dataset: {name: digits, indices: [0]}
    model: {name: mlp, params: {hidden: [8]}}
    federation: {clients: 1, local: {algorithm: fedsgd, batch_size: 1}}
    attacks:
      - {name: dlg, params: {iterations: 2}}
      - {name: dlg, params: {iterations: 2, labels: optimize}}
    defenses: [none]
"""


def test_dlg_with_analytic_label_is_labelled_idlg(tmp_path: Path) -> None:
    summary = run_suite(parse_suite(IDLG, "idlg.yaml"), tmp_path, progress=False)
    assert (summary.ok, summary.failed) == (2, 0)
    md = write_report(tmp_path).markdown.read_text()
    matrix = [r["attack \\ defense"] for r in _table(md, "| attack \\ defense |")]
    assert matrix == ["dlg(iterations=2) (iDLG: analytic label)", "dlg(iterations=2, labels=optimize)"]
    attacks = [r["attack"] for r in _table(md, "| attack | defense | PSNR mean (dB)")]
    assert attacks == matrix  # the detail table too
