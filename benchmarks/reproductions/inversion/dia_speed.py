"""Cost of one Dropout Inversion iteration against one Inverting Gradients iteration.

The acceptance bound: one DIA iteration ≤ 1.3× one IG iteration on the same model and
batch. Setting: ``vit_dia`` (p = 0.5 on the client), one CIFAR-10 test image, FedSGD,
labels granted; each attack's problem is built once, then single iterations (the
attack's own ``stepper`` on its own variables, exactly what ``optimise`` runs) are timed
interleaved — IG (eval-mode attacker), DIA, IG in train mode with random masks — so
machine load hits all alike. Reported: the median per-iteration time and the ratios.

    python -m fedarena.benchmarks.reproductions.inversion.dia_speed [--iterations 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedarena.attacks.inversion.optimization import Evaluation, OptimizationAttack
from fedarena.attacks.inversion.problem import InversionProblem
from fedarena.attacks.registry import INVERSION_ATTACKS
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.benchmarks.reproductions import run_script
from fedarena.fl_core.models import build_model
from fedarena.fl_core.updates import LocalTraining

from .common import cifar10_test, header, log, write_result
from .dia_common import ATTACKS, REFERENCE, observe, threat_for

MODULE = "fedarena.benchmarks.reproductions.inversion.dia_speed"
ORDER = ("ig", "dia", "random")


def stepper(attack: OptimizationAttack, problem: InversionProblem):  # noqa: ANN201 (a Step)
    """One restart's step function, set up as ``OptimizationAttack.optimise`` does."""
    init = {k: v[0].to(problem.device) for k, v in attack.init(problem).items()}
    variables = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    leaves = list(variables.values())
    objective = attack.objective(problem)

    def value_and_grad():  # noqa: ANN202
        loss = objective(variables)
        return loss, dict(zip(variables, torch.autograd.grad(loss, leaves), strict=True))

    return attack.stepper(problem, variables, Evaluation(variables, lambda: objective(variables), value_and_grad))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per attack")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--p", type=float, default=0.5, help="the client's dropout rate")
    parser.add_argument("--name", default="dia_speed")
    add_device_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model("vit_dia", 10, (3, 32, 32), dropout=args.p, seed=0).to(args.device)
    data = cifar10_test([0])
    training = LocalTraining(algorithm="fedsgd", batch_size=1, model_mode="train")
    steps = {}
    for key in ORDER:
        obs, _ = observe(model, data, training, threat_for(key))
        attack = INVERSION_ATTACKS.build(ATTACKS[key][0], **REFERENCE, iterations=args.warmup + args.iterations)
        steps[key] = stepper(attack, attack.build(obs))
    times: dict[str, list[float]] = {k: [] for k in ORDER}
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else (lambda: None)
    for it in range(args.warmup + args.iterations):
        for key in ORDER:
            sync()
            start = time.perf_counter()
            float(steps[key](it))
            sync()
            if it >= args.warmup:
                times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in ORDER:
        log(f"{ATTACKS[k][1]}: median {med[k] * 1e3:.0f} ms/iteration")
    ratio, ratio_random = med["dia"] / med["ig"], med["dia"] / med["random"]
    lines = header("Dropout Inversion vs Inverting Gradients: cost of one iteration", MODULE, argv)
    lines += [
        f"Setting: `vit_dia` (dropout {args.p} on the client), CIFAR-10 test image 0, batch 1, FedSGD, labels "
        f"granted, device {args.device}; {args.warmup} warm-up + {args.iterations} timed iterations per attack, "
        "interleaved (one IG, one DIA, one random-mask IG, repeat). Each is the attack's own step (matching + "
        "priors, its gradient, the Adam update, the box/clip).", "",
        "| attack | median ms / iteration | min | max |", "| --- | --- | --- | --- |",
    ]
    for k in ORDER:
        lines.append(f"| {ATTACKS[k][1]} | {med[k] * 1e3:.1f} | {min(times[k]) * 1e3:.1f} | "
                     f"{max(times[k]) * 1e3:.1f} |")
    lines += ["", f"DIA / IG (eval-mode attacker): **{ratio:.2f}×** (bound 1.3×: "
                  f"**{'met' if ratio <= 1.3 else 'NOT met'}**); DIA / IG with random masks (both in train mode): "
                  f"{ratio_random:.2f}×."]
    write_result(args.name, lines)
    log(f"DIA/IG {ratio:.2f}x, DIA/random-mask IG {ratio_random:.2f}x; wrote {args.name}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
