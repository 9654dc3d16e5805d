"""What the GIFD scripts share (issue 16): the attacked images, the FL model, the three
attacks at one total iteration budget, one cached (image, attack) unit, and the tables.

Budget: every attack gets the same number of optimiser iterations in total (each one
simulated client update + matching loss + step): IG ``budget`` iterations, 1 restart;
``generator_latent`` ``restarts`` restarts of ``budget / restarts``; ``gifd`` half the budget
for the latent stage (``restarts`` restarts of ``budget / (2 · restarts)``) and the other half
split evenly over its feature stages.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from fedarena.attacks.inversion import GIFD, GeneratorLatent, InvertingGradients, build_generator
from fedarena.attacks.inversion.optimization import OptimizationAttack
from fedarena.benchmarks.figures.plots import GridRow
from fedarena.benchmarks.harness.units import UnitCache, digest
from fedarena.benchmarks.metrics.privacy import to_unit
from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.data_root import data_root
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.image_datasets import load_image_folder
from fedarena.fl_core.models import build_model
from fedarena.fl_core.threat import Observation
from fedarena.fl_core.updates import LocalTraining

from .common import Stopwatch, fmt, log, observe, score

ATTACKS = ("inverting_gradients", "generator_latent", "gifd")
LABELS = {"inverting_gradients": "IG", "generator_latent": "latent only", "gifd": "GIFD"}
FACES_FOLDER = ("datasets", "celeba-hq-stargan-v2-samples", "src")
# FedSGD on one image, model in eval mode (the GIFD paper's setting: an untrained network, batch 1)
TRAINING = LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="eval")


def digits(name: str, indices: list[int]) -> ImageDataset:
    """MNIST / Fashion-MNIST test images ``indices`` from the data root."""
    return load_dataset(name, "test").subset(indices)


def faces(indices: list[int]) -> ImageDataset:
    """The CelebA-HQ sample faces (female/, male/ sub-folders: 2 classes) at 64×64 RGB (cover + centre crop)."""
    folder = data_root().joinpath(*FACES_FOLDER)
    return load_image_folder(folder, image_size=64, mode="RGB", name="celeba_hq_64").subset(indices)


def model_spec(spec: str) -> tuple[str, dict[str, int]]:
    """``"convnet:width=16"`` → ``("convnet", {"width": 16})``: a registered model and its integer options."""
    name, *options = spec.split(":")
    out: dict[str, int] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key or not value.lstrip("-").isdigit():
            raise ValueError(f"model option {option!r} in {spec!r} is not key=<integer> (e.g. convnet:width=16)")
        out[key] = int(value)
    return name, out


def model_tag(spec: str) -> str:
    """``spec`` (checked as a ``model_spec``, so a malformed one fails before any work) as a
    results-file name fragment: ``"convnet:width=16"`` → ``"convnet_width16"``."""
    model_spec(spec)
    return spec.replace(":", "_").replace("=", "")


def fl_model(name: str, data: ImageDataset, seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
    """The untrained FL model ``name`` (a ``model_spec``: options after colons) for ``data``'s images, in eval mode."""
    shape = tuple(int(s) for s in data.images.shape[1:])
    model, options = model_spec(name)
    return build_model(model, data.num_classes, shape, seed=seed, **options).to(device).eval()


def attacks(budget: int, generator: str, restarts: int, seed: int = 0) -> dict[str, OptimizationAttack]:
    """The three attacks at the same total ``budget`` of iterations (module docstring)."""
    stages = len(GIFD(generator=generator).feature_splits(build_generator(generator)))
    latent_half = max(1, budget // (2 * restarts))
    feature = max(1, (budget - latent_half * restarts) // max(1, stages))
    return {
        "inverting_gradients": InvertingGradients(iterations=budget, restarts=1, seed=seed),
        "generator_latent": GeneratorLatent(generator=generator, iterations=max(1, budget // restarts),
                                            restarts=restarts, seed=seed),
        "gifd": GIFD(generator=generator, iterations=latent_half, restarts=restarts, feature_iterations=feature,
                     seed=seed),
    }


def iterations_used(attack: OptimizationAttack) -> int:
    """Total optimiser iterations the attack's settings ask for."""
    s = attack.settings
    total = s.iterations * s.restarts
    if isinstance(attack, GIFD):
        g = build_generator(s.generator)  # type: ignore[attr-defined]
        total += s.feature_iterations * len(attack.feature_splits(g))  # type: ignore[attr-defined]
    return total


@dataclass
class Unit:
    """One (image, attack): scores, the returned image and, for GIFD, every stage's."""

    index: int
    attack: str
    psnr: float
    ssim: float
    lpips: float | None
    lpips_note: str
    label_ok: bool
    loss: float
    seconds: float
    iterations: int
    reconstruction: torch.Tensor  # [C, H, W] in [0, 1]
    truth: torch.Tensor
    stages: list[dict[str, Any]] = field(default_factory=list)  # split, loss, psnr, chosen, image


def settings_digest(attack: OptimizationAttack, extra: dict[str, Any]) -> str:
    return digest({**attack.settings.record(), **extra})


def run_unit(cache: UnitCache, setting: str, key: str, attack: OptimizationAttack, model: nn.Module,
             data: ImageDataset, index: int, extra: dict[str, Any],
             prepare: Callable[[Observation], tuple[Observation, OptimizationAttack]] | None = None) -> Unit:
    """Attack image ``index`` of ``data`` (a one-image dataset) with ``attack``, or read the cached unit.

    ``prepare(observation) -> (observation, attack)``: what the server sees and the attack it runs
    instead (a defended upload, an adaptive attacker built from it); ``extra`` must then name it,
    since the unit's key is ``attack``'s settings and ``extra``."""
    unit_key = f"{setting}/{key}/image_{index}/{settings_digest(attack, extra)}"
    cached = cache.get_tensors(unit_key)
    if cached is not None:
        return Unit(**cached)
    obs, private = observe(model, data, TRAINING)
    if prepare is not None:
        obs, attack = prepare(obs)
    with Stopwatch() as t:
        if isinstance(attack, GIFD):
            rec, stages = attack.reconstruct_stages(obs)
        else:
            rec, stages = attack.reconstruct(obs), []
    s = score(rec.images, rec.labels, private, data.normalization)
    chosen = rec.config.get("chosen_stage")
    staged = []
    for st in stages:
        ss = score(st.images, rec.labels, private, data.normalization)
        staged.append({"split": st.split, "loss": st.loss, "psnr": ss.psnr[0], "chosen": st.split == chosen,
                       "image": to_unit(st.images, data.normalization)[0]})
    unit = Unit(index=index, attack=key, psnr=s.psnr[0], ssim=s.ssim[0], lpips=None if s.lpips is None else s.lpips[0],
                lpips_note=s.lpips_note, label_ok=bool(rec.labels[0] == private.labels[0]),
                loss=float(min(rec.restart_losses) if not stages else min(st.loss for st in stages)),
                seconds=t.seconds, iterations=iterations_used(attack),
                reconstruction=to_unit(rec.images, data.normalization)[0],
                truth=to_unit(private.inputs, data.normalization)[0], stages=staged)
    cache.put_tensors(unit_key, asdict(unit))
    return unit


def collect(cache: UnitCache, setting: str, load: Callable[[int], ImageDataset], model_name: str,
            chosen: dict[str, OptimizationAttack], images: list[int], seed: int, device: str | torch.device,
            results: dict[str, list[Unit]], after_image: Callable[[], None]) -> None:
    """Run (or read) every (image, attack) unit of one setting into ``results[attack]``."""
    for idx in images:
        data = load(idx)
        model = fl_model(model_name, data, seed=seed, device=device)
        for key, attack in chosen.items():
            unit = run_unit(cache, f"{setting}_{model_name}", key, attack, model, data, idx,
                            {"model": model_name, "setting": setting})
            results.setdefault(key, []).append(unit)
            log(f"{setting} image {idx} {key}: PSNR {unit.psnr:.2f}, SSIM {unit.ssim:.3f}, LPIPS {fmt(unit.lpips, 3)}, "
                f"loss {unit.loss:.4f}, {unit.seconds:.0f} s ({unit.seconds / unit.iterations * 1e3:.0f} ms/iteration)")
        after_image()


def attack_table(units: dict[str, list[Unit]], labels: dict[str, str] | None = None) -> list[str]:
    """Mean PSNR/SSIM/LPIPS per attack (row names: ``labels``, default ``LABELS``), with time per iteration."""
    labels = LABELS if labels is None else labels
    lines = ["| attack | images | PSNR (dB) | SSIM | LPIPS | labels ok | ms / iteration |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, rows in units.items():
        if not rows:
            continue
        lp = [u.lpips for u in rows if u.lpips is not None]
        ms = statistics.fmean(u.seconds / u.iterations for u in rows) * 1e3
        lines.append(f"| {labels[key]} | {len(rows)} | {statistics.fmean(u.psnr for u in rows):.2f} | "
                     f"{statistics.fmean(u.ssim for u in rows):.3f} | {fmt(statistics.fmean(lp) if lp else None, 3)} | "
                     f"{sum(u.label_ok for u in rows)}/{len(rows)} | {ms:.0f} |")
    note = next((u.lpips_note for rows in units.values() for u in rows if u.lpips_note), "")
    return lines + (["", f"LPIPS: {note}"] if note else [])


def stage_table(rows: list[Unit]) -> list[str]:
    """GIFD's matching loss and PSNR after every stage, per image; the returned stage in bold."""
    if not rows or not rows[0].stages:
        return []
    splits = [st["split"] for st in rows[0].stages]
    lines = ["| image | " + " | ".join(f"{s}: loss / PSNR" for s in splits) + " | returned | lowest loss |",
             "| --- | " + " | ".join("---" for _ in splits) + " | --- | --- |"]
    for u in rows:
        cells = []
        for st in u.stages:
            cell = f"{st['loss']:.4f} / {st['psnr']:.2f}"
            cells.append(f"**{cell}**" if st["chosen"] else cell)
        chosen = next(st["split"] for st in u.stages if st["chosen"])
        lowest = min(u.stages, key=lambda st: st["loss"])["split"]
        lines.append(f"| {u.index} | " + " | ".join(cells) + f" | {chosen} | {lowest} |")
    return lines


def grid_rows(per: dict[str, list[Unit]]) -> dict[str, GridRow]:
    """Grid rows: each attack's returned images, then GIFD's output after every stage."""
    rows = {LABELS[k]: GridRow(torch.stack([u.reconstruction for u in us]), [u.psnr for u in us])
            for k, us in per.items() if us}
    gifd = per.get("gifd") or []
    for st, stage in enumerate(gifd[0].stages if gifd else []):
        rows[f"GIFD {stage['split']}"] = GridRow(torch.stack([u.stages[st]["image"] for u in gifd]),
                                                 [u.stages[st]["psnr"] for u in gifd])
    return rows


def mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan
