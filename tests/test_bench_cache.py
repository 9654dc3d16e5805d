"""The resumable benchmarks' unit cache (a view over the result store): what goes in comes
back, keys name what changes a unit, ``--fresh`` never reads, other code's units are refused,
and shards in separate processes write to one file."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fedarena.benchmarks.harness.provenance import Provenance
from fedarena.benchmarks.harness.store import STORE_NAME, Store
from fedarena.benchmarks.harness.units import StaleUnitError, UnitCache, digest, unit_key
from fedarena.benchmarks.reproductions.inversion.ig_cifar import ImageResult, _load, _save
from fedarena.benchmarks.reproductions.privacy_utility.table import Plan, _plan_part

CODE = Provenance("0.1.0", "abc123abc123", False, "2.13.0")
OTHER = Provenance("0.1.0", "def456def456", False, "2.13.0")


def test_ig_image_result_round_trips_through_a_weights_only_load(tmp_path: Path) -> None:
    result = ImageResult(index=3, psnr=18.5, ssim=0.4, lpips=None, lpips_note="weights missing", label=2,
                         true_label=2, final_loss=0.004, seconds=12.0, reconstruction=torch.rand(3, 8, 8),
                         truth=torch.rand(3, 8, 8), trace=[1.0, 0.5, 0.25])
    cache = UnitCache("ig_cifar", root=tmp_path, provenance=CODE)
    assert _load(cache, "w64/image_3") is None
    assert not (tmp_path / STORE_NAME).exists()  # reading nothing creates nothing
    _save(cache, "w64/image_3", result)
    back = _load(cache, "w64/image_3")
    assert back is not None and back.psnr == 18.5 and back.lpips is None and back.trace == [1.0, 0.5, 0.25]
    assert torch.equal(back.reconstruction, result.reconstruction) and torch.equal(back.truth, result.truth)
    assert _load(UnitCache("ig_cifar", root=tmp_path, provenance=CODE, fresh=True), "w64/image_3") is None
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(STORE_NAME + "-")) == [STORE_NAME]


def test_privacy_utility_unit_cache_and_plan_keys(tmp_path: Path) -> None:
    cache = UnitCache("privacy_utility", root=tmp_path, provenance=CODE)
    assert cache.get("dlg_none_naive_image0") is None
    stored = cache.put("dlg_none_naive_image0", {"psnr": 38.7, "lpips": None, "inf": float("inf")})
    assert cache.get("dlg_none_naive_image0") == stored == {"psnr": 38.7, "lpips": None, "inf": float("inf")}
    assert UnitCache("privacy_utility", root=tmp_path, fresh=True, provenance=CODE).get("dlg_none_naive_image0") \
        is None  # --fresh
    assert UnitCache("alie_ipm", root=tmp_path, provenance=CODE).get("dlg_none_naive_image0") is None  # per script
    plan = Plan()
    assert _plan_part(plan, "images", "seed") == _plan_part(replace(plan, mnist_rounds=2), "images", "seed")
    assert _plan_part(plan, "images", "seed") != _plan_part(replace(plan, images=(0, 1)), "images", "seed")
    assert unit_key("alie vs krum, f=2", digest({"rounds": 3})) == "alie_vs_krum_f=2_" + digest({"rounds": 3})
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1}) != digest({"a": 1, "b": 3})


def test_a_unit_cached_by_other_code_is_refused_and_fresh_replaces_it(tmp_path: Path) -> None:
    UnitCache("alie_ipm", root=tmp_path, provenance=OTHER).put("alie_vs_krum", {"accuracy": 0.5})
    with pytest.raises(StaleUnitError, match=r"commit def456def456 .*this is fedarena 0\.1\.0 at commit abc123abc123.*"
                                             r"--fresh"):
        UnitCache("alie_ipm", root=tmp_path, provenance=CODE).get("alie_vs_krum")
    UnitCache("alie_ipm", root=tmp_path, provenance=CODE, fresh=True).put("alie_vs_krum", {"accuracy": 0.7})
    assert UnitCache("alie_ipm", root=tmp_path, provenance=CODE).get("alie_vs_krum") == {"accuracy": 0.7}
    dirty = replace(CODE, dirty=True, changes="0f0f0f0f0f0f")
    with pytest.raises(StaleUnitError, match="uncommitted changes"):  # same commit, uncommitted edits: other code
        UnitCache("alie_ipm", root=tmp_path, provenance=dirty).get("alie_vs_krum")
    with Store(tmp_path / STORE_NAME) as store:
        _, _, prov = store.unit("alie_ipm", "alie_vs_krum")
    assert prov == CODE


def test_stale_unit_stops_a_script_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fedarena.benchmarks.reproductions import run_script

    def main() -> int:
        UnitCache("x", root=tmp_path, provenance=OTHER).put("k", 1)
        UnitCache("x", root=tmp_path, provenance=CODE).get("k")
        return 0

    assert run_script(main) == 2
    assert "error: cached unit 'k' of x" in capsys.readouterr().err


def test_shards_in_separate_processes_share_one_unit_store(tmp_path: Path) -> None:
    code = ("import sys; from fedarena.benchmarks.harness.units import UnitCache; from fedarena.benchmarks.harness.provenance import "  # noqa: E501
            "Provenance; c = UnitCache('shard', root=sys.argv[1], provenance=Provenance('0', None, False, 't')); "
            "[c.put(f'{sys.argv[2]}_{i}', i) for i in range(40)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name],
                              cwd=Path(__file__).resolve().parents[1]) for name in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    cache = UnitCache("shard", root=tmp_path, provenance=Provenance("0", None, False, "t"))
    assert all(cache.get(f"{n}_{i}") == i for n in "abc" for i in range(40))
