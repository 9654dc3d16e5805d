"""Cost of one Inverting Gradients iteration against the bare double-backward it needs.

"Bare": ``model(x)`` → cross-entropy → ``autograd.grad(params, create_graph=True)`` →
``Σ ⟨g, v⟩`` with a fixed ``v`` → ``autograd.grad(·, x)``: the least any gradient-matching
attack must compute per iteration. "IG": one full iteration of the attack's loop
(simulated client, cosine loss, TV, signed Adam step, box projection, loss trace).
Both run on the same model and batch, alternating in rounds within one process so a
busy machine slows both alike; the ratio of the medians is reported (acceptance ≤ 1.3).
Also timed: restarts batched with ``torch.func.vmap`` against the same restarts run one
after another, per restart.

    python -m fedarena.benchmarks.reproductions.inversion.ig_speed [--width 64] [--batch 1] [--rounds 5] [--iters 20]
    [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from fedarena.attacks.inversion import InvertingGradients
from fedarena.attacks.inversion.problem import build_problem
from fedarena.benchmarks.harness.device import add_device_option
from fedarena.fl_core.models import build_model
from fedarena.fl_core.updates import LocalTraining

from .common import cifar10_test, header, log, observe, write_result

MODULE = "fedarena.benchmarks.reproductions.inversion.ig_speed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20, help="iterations per timed block")
    parser.add_argument("--restarts", type=int, default=4, help="restarts for the vmap comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="width 16, 2 rounds of 5 iterations")
    add_device_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.rounds, args.iters = 16, 2, 5
    torch.set_num_threads(args.threads)

    model = build_model("convnet", 10, (3, 32, 32), seed=0, width=args.width).to(args.device)
    training = LocalTraining(algorithm="fedsgd", batch_size=args.batch, model_mode="eval")
    obs, private = observe(model, cifar10_test(range(args.batch)), training)
    attack = InvertingGradients(iterations=args.iters, restarts=args.restarts, seed=0)
    problem = build_problem(obs, loss="cosine", assumptions=attack.settings.assumptions, labels="auto",
                            batch_label_method="bias")
    init = attack._init(problem)

    net = obs.model.eval()
    params = [p for p in net.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(1)
    probes = [torch.randn(p.shape, generator=gen) for p in params]
    x = init[0].clone().requires_grad_(True)
    y = private.labels

    def bare() -> None:
        for _ in range(args.iters):
            loss = F.cross_entropy(net(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            s = sum((g * v).sum() for g, v in zip(grads, probes, strict=True))
            torch.autograd.grad(s, x)

    def ig() -> None:
        attack._optimise_one(problem, init[0])

    def batched() -> None:
        attack._optimise_batched(problem, init)

    def sequential() -> None:
        for r in range(args.restarts):
            attack._optimise_one(problem, init[r])

    def timed(fn) -> float:  # noqa: ANN001
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) / args.iters

    for fn in (bare, ig, batched):  # warm-up: one-time imports, allocator, oneDNN primitives
        fn()
    times: dict[str, list[float]] = {"bare": [], "ig": [], "batched": [], "sequential": []}
    for r in range(args.rounds):
        times["bare"].append(timed(bare))
        times["ig"].append(timed(ig))
        times["batched"].append(timed(batched) / args.restarts)
        times["sequential"].append(timed(sequential) / args.restarts)
        log(f"round {r}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()))
    med = {k: statistics.median(v) for k, v in times.items()}
    # Pair the blocks of each round (same machine load) and take the median of the ratios.
    ig_ratios = [i / b for i, b in zip(times["ig"], times["bare"], strict=True)]
    vmap_ratios = [b / s for b, s in zip(times["batched"], times["sequential"], strict=True)]
    ratio, vmap_ratio = statistics.median(ig_ratios), statistics.median(vmap_ratios)
    lines = header("Inverting Gradients: cost of one iteration", MODULE, argv)
    lines += [
        f"Model: IG ConvNet width {args.width} (untrained, eval mode), CIFAR-10 batch of {args.batch}, "
        f"{args.threads} torch threads. {args.rounds} rounds × {args.iters} iterations per block, blocks "
        f"alternating; ratios are taken within each round, where the blocks share the machine's load.", "",
        "| what | ms per iteration (median) | all rounds (ms) |",
        "| --- | --- | --- |",
    ]
    labels = {"bare": "bare forward + gradient + double-backward", "ig": "one IG iteration (1 restart)",
              "batched": f"{args.restarts} restarts batched with vmap, per restart",
              "sequential": f"{args.restarts} restarts one after another, per restart"}
    for k, v in times.items():
        lines.append(f"| {labels[k]} | {med[k] * 1e3:.1f} | {', '.join(f'{t * 1e3:.1f}' for t in v)} |")
    lines += [
        "",
        f"Per-round ratios IG / bare: {', '.join(f'{r:.3f}' for r in ig_ratios)}; batched / sequential restarts: "
        f"{', '.join(f'{r:.2f}' for r in vmap_ratios)}.", "",
        f"**IG iteration / bare = {ratio:.3f}** (median of the per-round ratios; acceptance ≤ 1.3 → "
        f"{'met' if ratio <= 1.3 else 'NOT met'}). Restarts batched with vmap cost {vmap_ratio:.2f}× the same "
        f"restarts run one after another, per restart (median per-round ratio).",
    ]
    name = "ig_speed_quick" if args.quick else f"ig_speed_w{args.width}_b{args.batch}"
    log(f"ratio {ratio:.3f}; wrote {write_result(name, lines)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
