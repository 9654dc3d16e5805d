"""GIFD against privacy defenses on the upload, naive and adaptive attacker (issue 16's defended acceptance).

Setting: ``gifd_faces``'s (CelebA-HQ faces at 64×64, the ``dcgan_faces64`` prior, batch 1, FedSGD,
an untrained FL model in eval mode ``--model``, labels by iDLG on what the server sees), GIFD at
``--iterations`` split as in ``gifd_common``. The client's upload passes through one defense,
applied as the simulation applies it (``fedarena.defenses.privacy.apply_defense``: the registered
factory's transforms, the simulation's per-client generator):

- ``gaussian_noise`` σ = 0.01 (GGL / GIFD's ``additive_noise``, at the σ the issue names);
- ``clipping`` to L2 norm 4 (their ``gradient_clipping(bound=4)``, a clip of the total norm, as
  FedArena's ``Clipping`` clips the whole flat update);
- ``pruning`` 20 % (``fraction=0.8`` of the coordinates kept). The reference's compression prunes
  each layer's smallest 20 % by percentile; FedArena's ``Pruning`` keeps the largest 80 % of the
  whole vector (one global threshold).

Attacker: **naive** matches the defended upload as if it were clean; **adaptive** applies the
defense's deterministic part to its own dummy gradient before matching (``attacker_view``: the
same norm clip, the pruning mask read off the upload's zeros), as GIFD does against defended
gradients. Noise has no deterministic part, so its adaptive attacker is the naive one and is not
run twice. The ``none`` row is the undefended GIFD: the same cached unit as ``gifd_faces`` with
the same settings (benchmark cache ``gifd_faces``). Cosine matching is blind to the update's
norm, so clipping alone cannot hide anything from it (expect ≈ the undefended row).

    python -m fedarena.benchmarks.reproductions.inversion.gifd_defended [--images 0-3] [--iterations 600]
        [--model convnet:width=16] [--defenses none gaussian_noise clipping pruning]
        [--attackers naive adaptive] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace
from typing import Any

import torch

from fedarena.attacks.inversion.optimization import OptimizationAttack
from fedarena.benchmarks.figures.plots import GridRow, reconstruction_grid
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.harness.units import UnitCache
from fedarena.benchmarks.reproductions import run_script
from fedarena.defenses.privacy import AdaptiveTransform, apply_defense, attacker_view
from fedarena.defenses.registry import PRIVACY_DEFENSES, ClientDefense
from fedarena.fl_core.threat import Observation

from .common import FIGURES, header, log, write_result
from .dlg_cifar import parse_images
from .gifd_common import Unit, attack_table, attacks, faces, fl_model, model_tag, run_unit
from .gifd_faces import GENERATOR

MODULE = "fedarena.benchmarks.reproductions.inversion.gifd_defended"
#: defense name → (registered factory, its arguments, table label); None: undefended
DEFENSES: dict[str, tuple[str, dict[str, Any], str] | None] = {
    "none": None,
    "gaussian_noise": ("gaussian_noise", {"sigma": 0.01}, "Gaussian noise σ 0.01"),
    "clipping": ("clipping", {"max_norm": 4.0}, "clipping to norm 4"),
    "pruning": ("pruning", {"fraction": 0.8}, "pruning 20 %"),
}
ATTACKERS = ("naive", "adaptive")


def build_defense(name: str) -> ClientDefense | None:
    """The registered defense ``name`` at this benchmark's parameters (None for ``"none"``)."""
    spec = DEFENSES[name]
    return None if spec is None else PRIVACY_DEFENSES.get(spec[0])(**spec[1])


def has_view(defense: ClientDefense | None) -> bool:
    """Whether an adaptive attacker differs from the naive one (the defense has a deterministic part)."""
    return defense is not None and any(isinstance(t, AdaptiveTransform) for t in defense.transforms)


def defended(observation: Observation, defense: ClientDefense | None, seed: int = 0) -> Observation:
    """``observation`` with its upload passed through ``defense`` (as the simulation would for client 0, round 0)."""
    if defense is None:
        return observation
    update = observation.update
    vector = apply_defense(defense, update.vector, kind=update.kind, num_samples=update.num_samples,
                           client_id=update.client_id, seed=seed)
    return replace(observation, update=replace(update, vector=vector))


def adaptive(attack: OptimizationAttack, defense: ClientDefense | None, observation: Observation) -> OptimizationAttack:
    """``attack`` applying the defense's deterministic part (read off the defended upload) to its dummy updates."""
    view = None if defense is None else attacker_view(defense, observation.update.vector)
    if view is None:
        return attack
    out = copy.copy(attack)  # shares the loaded generator; only the settings differ
    out.settings = replace(attack.settings, update_transform=view)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="0-3", help="indices of the 10 faces (female 0-4, male 5-9)")
    parser.add_argument("--iterations", type=int, default=600, help="total iteration budget per face")
    parser.add_argument("--restarts", type=int, default=4, help="latent-search restarts")
    parser.add_argument("--model", default="convnet:width=16", help="the FL model (a gifd_common.model_spec)")
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    parser.add_argument("--attackers", nargs="+", default=list(ATTACKERS), choices=list(ATTACKERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="recompute units even if cached")
    parser.add_argument("--name", default=None, help="result name (default gifd_defended_<model>_<iterations>)")
    add_device_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = parse_images(args.images)
    tag = model_tag(args.model)  # a malformed spec fails here, before any work
    name = args.name or f"gifd_defended_{tag}_{args.iterations}"
    cache = UnitCache("gifd_faces", fresh=args.fresh)  # the undefended units are gifd_faces's own
    gifd = attacks(args.iterations, GENERATOR, args.restarts, args.seed)["gifd"]
    rows: dict[str, list[Unit]] = {}
    labels: dict[str, str] = {}
    for idx in images:
        data = faces([idx])
        model = fl_model(args.model, data, seed=args.seed, device=args.device)
        for defense_name in args.defenses:
            defense = build_defense(defense_name)
            for attacker in args.attackers:
                if attacker == "adaptive" and not has_view(defense):
                    continue  # no deterministic part to replay: the adaptive attacker is the naive one
                key, extra = "gifd", {"model": args.model, "setting": "celeba_hq_64"}
                if defense is not None:
                    key = f"gifd/{defense_name}/{attacker}"
                    extra = {**extra, "defense": DEFENSES[defense_name], "attacker": attacker,
                             "defense_seed": args.seed}

                def prepare(obs: Observation, d: ClientDefense | None = defense,
                            a: str = attacker) -> tuple[Observation, OptimizationAttack]:
                    seen = defended(obs, d, args.seed)
                    return seen, (adaptive(gifd, d, seen) if a == "adaptive" else gifd)

                unit = run_unit(cache, f"celeba_hq_64_{args.model}", key, gifd, model, data, idx, extra, prepare)
                row = f"{defense_name}/{attacker}"
                spec = DEFENSES[defense_name]
                labels[row] = "none" if spec is None else f"{spec[2]}, {attacker}"
                rows.setdefault(row, []).append(unit)
                log(f"face {idx} {labels[row]}: PSNR {unit.psnr:.2f}, SSIM {unit.ssim:.3f}, LPIPS "
                    f"{'n/a' if unit.lpips is None else f'{unit.lpips:.3f}'}, labels ok {unit.label_ok}, "
                    f"{unit.seconds:.0f} s")
        write_result(name, _report(args, argv, rows, labels, name, figures=False))
    write_result(name, _report(args, argv, rows, labels, name, figures=True))
    log(f"wrote {name}.md")
    return 0


def _report(args: argparse.Namespace, argv: list[str] | None, rows: dict[str, list[Unit]], labels: dict[str, str],
            name: str, figures: bool) -> list[str]:
    lines = header(f"GIFD against upload defenses: CelebA-HQ 64×64, {GENERATOR} prior, {args.model}, "
                   f"{args.iterations} iterations", MODULE, argv)
    lines += [f"Setting: `{args.model}` (untrained, seed {args.seed}, eval mode), batch 1, FedSGD, labels by iDLG on "
              f"the defended upload; GIFD at {args.iterations} iterations ({args.restarts} latent restarts), split "
              f"as in gifd_common. Faces: {args.images}. Defenses applied with "
              f"`fedarena.defenses.privacy.apply_defense` (seed {args.seed}); adaptive = the defense's "
              f"`attacker_view` on the dummy update; noise has none (its adaptive row would equal the naive one).",
              "", *attack_table(rows, labels), ""]
    if figures and rows:
        two = {k: v[:2] for k, v in rows.items()}
        truth = torch.stack([u.truth for u in next(iter(two.values()))])
        grid = {labels[k]: GridRow(torch.stack([u.reconstruction for u in v]), [u.psnr for u in v])
                for k, v in two.items()}
        path = reconstruction_grid(truth, grid, FIGURES / f"{name}_grid.png",
                                   title=f"GIFD vs defenses, {args.model}")
        lines.append(f"![defended](figures/{path.name})")
    return lines


if __name__ == "__main__":
    raise SystemExit(run_script(main))
