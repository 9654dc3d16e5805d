"""Cost of one GIFD iteration against the bare generator + double-backward it needs (issue 16).

"Bare" at a point ``v`` (the latent, or the feature at a split point): the generator run
from ``v`` → ``to_model_input`` → ``model(x)`` → cross-entropy → ``autograd.grad(params,
create_graph=True)`` → ``Σ ⟨g, p⟩`` with a fixed probe ``p`` → ``autograd.grad(·, v)``: the
least a generator-prior gradient-matching attack must compute per iteration. "GIFD": one
iteration of the attack's own loop at the same point (simulated client, cosine matching,
TV and L2 priors, Adam under the lr ramp, the sphere or l1-ball projection, loss trace),
for the latent stage and for one feature stage. IG's iteration (pixels, no generator) is
timed alongside for the per-attack cost. Blocks alternate within each round so a busy
machine slows all alike; ratios are per round, then the median (acceptance ≤ 1.3). Each block
is timed by the wall clock (the bound) and by the process's CPU time: with one thread the
latter leaves out the time spent waiting for a core on a shared machine, so it is reported
beside the wall-clock ratio. ``--settings digits`` re-measures the digits and keeps the faces
section of the existing results file (marked as kept, with its date).

    python -m fedarena.benchmarks.reproductions.inversion.gifd_speed [--settings digits faces] [--model resnet18]
        [--rounds 4] [--digits-rounds 12] [--iters 3] [--digits-iters 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fedarena.attacks.inversion import GIFD, InvertingGradients, build_generator
from fedarena.attacks.inversion.gifd import LATENT
from fedarena.attacks.inversion.problem import InversionProblem
from fedarena.benchmarks.harness.device import add_device_option

from .common import RESULTS, header, log, observe, write_result
from .gifd_common import TRAINING, digits, faces, fl_model

MODULE = "fedarena.benchmarks.reproductions.inversion.gifd_speed"
GENERATOR = {"digits": "mnist_gan", "faces": "dcgan_faces64"}
END_LOAD = "Load average (1 min) at the end"


def measure(setting: str, model_name: str, rounds: int, iters: int, device: str) -> tuple[list[str], list[float]]:
    data = digits("mnist", [0]) if setting == "digits" else faces([0])
    model = fl_model(model_name, data, device=device)
    obs, private = observe(model, data, TRAINING)
    g = build_generator(GENERATOR[setting], device=device)
    attack = GIFD(generator=GENERATOR[setting], iterations=iters, feature_iterations=iters, restarts=1)
    problem = attack.build(obs)
    z0 = attack.init(problem)[LATENT][0].to(problem.device)
    split = attack.feature_splits(g)[len(attack.feature_splits(g)) // 2]  # a middle feature stage
    with torch.no_grad():
        f0 = g.head(z0, split)
    stage_problem = attack.stage_problem(problem, split)
    staged = attack.feature_stage()
    ig = InvertingGradients(iterations=iters, restarts=1)
    ig_problem = ig.build(obs)
    x0 = ig._init(ig_problem)[0]

    net = obs.model
    params = [p for p in net.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(1)
    probes = [torch.randn(p.shape, generator=gen).to(p.device) for p in params]
    y = private.labels.to(problem.device)

    def bare_from(start: torch.Tensor, at: str) -> Callable[[], None]:
        v = start.clone().requires_grad_(True)

        def run() -> None:
            for _ in range(iters):
                x = g.to_model_input(g.tail(v, at), obs.normalization, obs.input_shape)
                loss = F.cross_entropy(net(x), y)
                grads = torch.autograd.grad(loss, params, create_graph=True)
                s = sum((gr * p).sum() for gr, p in zip(grads, probes, strict=True))
                torch.autograd.grad(s, v)

        return run

    def objective_from(start: torch.Tensor, at: str, prob: InversionProblem) -> Callable[[], None]:
        """The attack's objective and its gradient only (no optimiser step, constraint or loop):
        splits GIFD's overhead into the shared objective's part and the step's."""
        variables = {at: start.clone().requires_grad_(True)}
        objective = attack.objective(prob)

        def run() -> None:
            for _ in range(iters):
                torch.autograd.grad(objective(variables), list(variables.values()))

        return run

    blocks: dict[str, Callable[[], object]] = {
        "bare_latent": bare_from(z0, LATENT),
        "objective_latent": objective_from(z0, LATENT, problem),
        "gifd_latent": lambda: attack.optimise(problem, {LATENT: z0}),
        "bare_feature": bare_from(f0, split),
        "objective_feature": objective_from(f0, split, stage_problem),
        "gifd_feature": lambda: staged.optimise(stage_problem, {split: f0}),
        "ig": lambda: ig._optimise_one(ig_problem, x0),
    }

    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        if device != "cpu":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        if device != "cpu":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / iters, (time.process_time() - cpu) / iters

    for fn in blocks.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in blocks}
    cpu: dict[str, list[float]] = {k: [] for k in blocks}
    for r in range(rounds):
        for k, fn in blocks.items():
            wall, used = timed(fn)
            times[k].append(wall)
            cpu[k].append(used)
        log(f"{setting} round {r}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()))

    def per_round(table: dict[str, list[float]], what: str = "gifd") -> dict[str, list[float]]:
        return {stage: [a / b for a, b in zip(table[f"{what}_{stage}"], table[f"bare_{stage}"], strict=True)]
                for stage in ("latent", "feature")}

    ratios, cpu_ratios = per_round(times), per_round(cpu)
    objective_ratios = per_round(cpu, "objective")
    med = {k: statistics.median(v) for k, v in times.items()}
    names = {"bare_latent": "bare: G(z) + model forward + gradient + double-backward",
             "objective_latent": "its objective + gradient only (cosine matching through the simulated client, "
                                 "TV, L2; no step)",
             "gifd_latent": "GIFD latent stage (= generator_latent), one iteration",
             "bare_feature": f"bare from the feature at {split}",
             "objective_feature": "its objective + gradient only",
             "gifd_feature": f"GIFD feature stage {split}, one iteration",
             "ig": "Inverting Gradients (pixels), one iteration"}
    lines = [f"## {setting}: generator `{GENERATOR[setting]}`, model `{model_name}` "
             f"(untrained, eval), input {tuple(obs.input_shape)}, batch 1, FedSGD", "",
             "| what | ms per iteration, wall (median) | CPU ms (median) | all rounds, wall (ms) |",
             "| --- | --- | --- | --- |"]
    for k, v in times.items():
        lines.append(f"| {names[k]} | {med[k] * 1e3:.1f} | {statistics.median(cpu[k]) * 1e3:.1f} | "
                     f"{', '.join(f'{t * 1e3:.1f}' for t in v)} |")
    worst = max(statistics.median(v) for v in ratios.values())
    lines += ["", f"GIFD / bare per round (wall): latent {', '.join(f'{r:.3f}' for r in ratios['latent'])}; "
                  f"feature {', '.join(f'{r:.3f}' for r in ratios['feature'])}.", "",
              f"**GIFD iteration / bare = {statistics.median(ratios['latent']):.3f} (latent), "
              f"{statistics.median(ratios['feature']):.3f} (feature {split})** (wall clock, median over rounds) — "
              f"acceptance ≤ 1.3: {'met' if worst <= 1.3 else 'NOT met'}. By CPU time: "
              f"{statistics.median(cpu_ratios['latent']):.3f} (latent), "
              f"{statistics.median(cpu_ratios['feature']):.3f} (feature).", "",
              f"The objective and its gradient alone (CPU time) / bare: "
              f"{statistics.median(objective_ratios['latent']):.3f} (latent), "
              f"{statistics.median(objective_ratios['feature']):.3f} (feature): the part of the overhead that "
              f"is the shared objective (the simulated client on the flat parameter vector, cosine matching, "
              f"TV and L2 priors), the rest being GIFD's step (Adam, sphere / l1 projection, the loop's checks).",
              ""]
    return lines, [statistics.median(v) for v in ratios.values()]


def kept_sections(path: os.PathLike[str] | str, settings: list[str]) -> dict[str, list[str]]:
    """``{setting: its section's lines}`` of an earlier results file, for the settings not re-measured
    (each marked with the date of the run that measured it)."""
    try:
        text = open(path, encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        return {}
    date = next((line.removeprefix("- date: ") for line in text if line.startswith("- date: ")), "an earlier run")
    out: dict[str, list[str]] = {}
    current: str | None = None
    skip_blank = False
    for line in text:
        if line.startswith("## "):
            name = line[3:].split(":", 1)[0]
            current = name if name not in settings else None
            if current is not None:
                out[current] = [line, "", f"(kept from the run of {kept_date(text, line) or date}, "
                                          f"not re-measured by this command)"]
                continue
        if current is not None:
            if line.startswith("(kept from the run of "):  # kept before: its note and the blank after it go
                skip_blank = True
                continue
            if not (skip_blank and line == "") and not line.startswith(END_LOAD):
                out[current].append(line)
            skip_blank = False
    for kept in out.values():  # one blank line after a section: re-keeping must not pile them up
        while kept and kept[-1] == "":
            kept.pop()
        kept.append("")
    return out


def kept_date(text: list[str], heading: str) -> str | None:
    """The date a section already kept from an earlier run names (None: measured by that file's run)."""
    i = text.index(heading)
    for line in text[i + 1:i + 4]:
        if line.startswith("(kept from the run of "):
            return line.removeprefix("(kept from the run of ").split(",", 1)[0]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=["digits", "faces"], choices=["digits", "faces"])
    parser.add_argument("--model", default="resnet18", help="FL model for the faces (digits: lenet)")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds (faces)")
    parser.add_argument("--digits-rounds", type=int, default=12, help="timed rounds (digits: cheap, so more)")
    parser.add_argument("--iters", type=int, default=3, help="iterations per timed block (faces)")
    parser.add_argument("--digits-iters", type=int, default=30, help="iterations per timed block (digits)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="gifd_speed")
    add_device_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = kept_sections(RESULTS / f"{args.name}.md", args.settings)
    load = os.getloadavg()[0]
    lines = header("GIFD: cost of one iteration", MODULE, argv)
    lines += [f"{args.digits_rounds} (digits) / {args.rounds} (faces) rounds × {args.digits_iters} (digits) / "
              f"{args.iters} (faces) iterations per block, blocks alternating within a round (after one warm-up "
              f"pass); {args.threads} torch thread(s), device {args.device}. Load average (1 min) at the start: "
              f"{load:.2f} on {os.cpu_count()} cores.", ""]
    for setting in ("digits", "faces"):
        if setting not in args.settings:
            lines += kept.get(setting, [])
            continue
        digits_run = setting == "digits"
        body, _ = measure(setting, "lenet" if digits_run else args.model,
                          args.digits_rounds if digits_run else args.rounds,
                          args.digits_iters if digits_run else args.iters, str(args.device))
        lines += body
    lines += [f"{END_LOAD}: {os.getloadavg()[0]:.2f}.", ""]
    log(f"wrote {write_result(args.name, lines)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
