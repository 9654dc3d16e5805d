"""The resumable benchmarks' caches: what goes in comes back, and only whole entries exist."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.harness.units import UnitCache
from benchmarks.reproductions.inversion.ig_cifar import ImageResult, _load, _save
from benchmarks.reproductions.privacy_utility.table import Plan, _plan_part


def test_ig_image_result_round_trips_through_a_weights_only_load(tmp_path: Path) -> None:
    result = ImageResult(index=3, psnr=18.5, ssim=0.4, lpips=None, lpips_note="weights missing", label=2,
                         true_label=2, final_loss=0.004, seconds=12.0, reconstruction=torch.rand(3, 8, 8),
                         truth=torch.rand(3, 8, 8), trace=[1.0, 0.5, 0.25])
    path = tmp_path / "cache" / "image_3.pt"
    assert _load(path) is None
    _save(path, result)
    back = _load(path)
    assert back is not None and back.psnr == 18.5 and back.lpips is None and back.trace == [1.0, 0.5, 0.25]
    assert torch.equal(back.reconstruction, result.reconstruction) and torch.equal(back.truth, result.truth)
    assert [p.name for p in path.parent.iterdir()] == ["image_3.pt"]  # no temporary left behind


def test_privacy_utility_unit_cache_and_plan_keys(tmp_path: Path) -> None:
    cache = UnitCache(tmp_path)
    assert cache.get("dlg_none_naive_image0") is None
    stored = cache.put("dlg_none_naive_image0", {"psnr": 38.7, "lpips": None})
    assert cache.get("dlg_none_naive_image0") == stored == {"psnr": 38.7, "lpips": None}
    assert UnitCache(tmp_path, enabled=False).get("dlg_none_naive_image0") is None  # --fresh
    plan = Plan()
    assert _plan_part(plan, "images", "seed") == _plan_part(replace(plan, mnist_rounds=2), "images", "seed")
    assert _plan_part(plan, "images", "seed") != _plan_part(replace(plan, images=(0, 1)), "images", "seed")
