"""Does FedArena run on this machine's accelerator? A few minutes of real work on CUDA, compared with the CPU.

Checks, each through the harness's own task code (the path ``fedarena run --device`` takes):

- DLG (30 L-BFGS steps, sigmoid LeNet-like MLP, digits) and Inverting Gradients (40
  iterations, sample images): the privacy task on CPU and on CUDA. The client's upload is
  deterministic, so it must agree closely (float tolerance); the reconstructions are
  iterative optimisations whose float rounding differs by device, so their PSNRs are
  printed side by side with a loose tolerance (a device bug gives nonsense, not 0.5 dB).
- Krum on a random ``[50, 100000]`` stack: the same selection and aggregate on both.
- FedAvg, digits, MLP, 10 clients, 4 rounds (the robustness task): accuracy within 2 points.

Without CUDA it prints ``no CUDA device: nothing checked`` and exits 0, so it is safe in
CI. Exit status 1 when a check fails or raises.

    python -m fedarena.benchmarks.device_check [--device cuda:1]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

NO_CUDA = "no CUDA device: nothing checked"

PRIVACY = """
suite: device_check_privacy
runs:
  - task: privacy
    dataset: {name: digits, indices: [0, 7]}
    model: {name: mlp, params: {hidden: [64]}}
    federation: {clients: 1, local: {algorithm: fedsgd, batch_size: 2}}
    attacks:
      - {name: dlg, params: {iterations: 30, line_search: strong_wolfe}}
  - task: privacy
    dataset: {name: sample_images, indices: [17]}
    model: {name: mlp, params: {hidden: [256]}}
    federation: {clients: 1, local: {algorithm: fedsgd, batch_size: 1}}
    attacks:
      - {name: inverting_gradients, params: {iterations: 40}}
"""

FEDAVG = """
suite: device_check_fedavg
runs:
  - task: robustness
    dataset: digits
    model: {name: mlp, params: {hidden: [64]}}
    federation: {clients: 10, rounds: 4, local: {algorithm: fedavg, lr: 0.1, epochs: 1, batch_size: 16}}
    attacks: [none]
    defenses: [fedavg]
"""

PSNR_TOLERANCE_DB = 3.0
PSNR_CAP_DB = 60.0  # near-perfect reconstructions compare as equal
ACCURACY_TOLERANCE = 0.02


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="the CUDA device to check (default cuda)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    from fedarena.benchmarks.harness.device import resolve_device

    device = resolve_device(args.device)
    print(f"checking {device} ({torch.cuda.get_device_name(device)}), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}", flush=True)
    checks: list[tuple[str, Callable[[torch.device], list[str]]]] = [
        ("inversion (DLG, IG) through the privacy task", _check_inversion),
        ("krum on a [50, 100000] stack", _check_krum),
        ("FedAvg rounds through the robustness task", _check_fedavg),
    ]
    failed = 0
    for title, check in checks:
        print(f"- {title}", flush=True)
        try:
            problems = check(device)
        except Exception:  # report every check, then fail
            problems = ["raised:\n" + traceback.format_exc()]
        for problem in problems:
            print(f"  FAIL: {problem}", flush=True)
        failed += bool(problems)
    print(f"{len(checks) - failed} of {len(checks)} checks passed on {device}")
    return 1 if failed else 0


def _run_both(task: str, config: dict[str, Any], device: torch.device) -> tuple[dict[str, Any], dict[str, Any],
                                                                                   float, float]:
    from fedarena.benchmarks.harness.tasks import task_function

    fn = task_function(task)
    out = []
    for dev in (torch.device("cpu"), device):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            metrics, _ = fn(config, Path(tmp), False, dev)
            _sync(dev)
            out.append((metrics, time.perf_counter() - start))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def _check_inversion(device: torch.device) -> list[str]:
    from fedarena.benchmarks.harness.suite import parse_suite

    problems = []
    for spec in parse_suite(PRIVACY).runs:
        name = spec.config["attack"]["name"]
        cpu_upload, gpu_upload = (_upload(spec.config, d) for d in (torch.device("cpu"), device))
        if gpu_upload.device.type != device.type:
            problems.append(f"{name}: the client's upload is on {gpu_upload.device}, not on {device}")
        elif not torch.allclose(cpu_upload, gpu_upload.cpu(), rtol=1e-4, atol=1e-6):
            diff = (cpu_upload - gpu_upload.cpu()).abs().max().item()
            problems.append(f"{name}: the client's FedSGD upload differs by device (max |diff| {diff:.3g})")
        cpu, gpu, t_cpu, t_gpu = _run_both("privacy", spec.config, device)
        print(f"  {name}: PSNR cpu {cpu['psnr']:.2f} dB ({t_cpu:.1f} s), {device} {gpu['psnr']:.2f} dB "
              f"({t_gpu:.1f} s); upload max |cpu - {device}| "
              f"{(cpu_upload - gpu_upload.cpu()).abs().max().item():.3g}", flush=True)
        if gpu["psnr"] is None or math.isnan(gpu["psnr"]):
            problems.append(f"{name}: PSNR on {device} is {gpu['psnr']}")
        elif abs(min(gpu["psnr"], PSNR_CAP_DB) - min(cpu["psnr"], PSNR_CAP_DB)) > PSNR_TOLERANCE_DB:
            problems.append(f"{name}: PSNR {gpu['psnr']:.2f} dB on {device} vs {cpu['psnr']:.2f} dB on cpu "
                            f"(tolerance {PSNR_TOLERANCE_DB} dB)")
    return problems


def _upload(config: dict[str, Any], device: torch.device) -> torch.Tensor:
    """The attacked client's FedSGD upload on ``device`` (undefended): deterministic, so comparable."""
    from fedarena.benchmarks.harness.tasks.common import build_global_model, federation_config, load_data, split_clients
    from fedarena.benchmarks.harness.tasks.privacy import attacked_uploads
    from fedarena.defenses.registry import ClientDefense

    seed, fed = config["seed"], config["federation"]
    data = load_data(config["dataset"], seed)
    model = build_global_model(config["model"], data, seed).to(device)
    uploads = attacked_uploads(model, split_clients(data, fed, seed), federation_config(fed, seed, rounds=1),
                               ClientDefense(), None, 0, {0})
    return uploads.events[0].update.vector.detach()


def _check_krum(device: torch.device) -> list[str]:
    from fedarena.defenses.registry import AGGREGATORS

    gen = torch.Generator().manual_seed(0)
    stack = torch.randn(50, 100_000, generator=gen)
    stack[:10] += 5.0  # ten outliers Krum should not pick
    krum = AGGREGATORS.build("krum")
    start = time.perf_counter()
    cpu = krum(stack)
    t_cpu = time.perf_counter() - start
    moved = stack.to(device)
    krum(moved)  # warm-up (kernels, allocator)
    _sync(device)
    start = time.perf_counter()
    gpu = krum(moved)
    _sync(device)
    t_gpu = time.perf_counter() - start
    print(f"  krum: cpu {t_cpu * 1e3:.1f} ms, {device} {t_gpu * 1e3:.1f} ms; trusted cpu "
          f"{cpu.trusted.nonzero().flatten().tolist()}, {device} {gpu.trusted.cpu().nonzero().flatten().tolist()}",
          flush=True)
    problems = []
    if gpu.aggregate.device != moved.device:
        problems.append(f"krum's aggregate is on {gpu.aggregate.device}, not on the updates' {moved.device}")
    if not torch.equal(cpu.trusted, gpu.trusted.cpu()):
        problems.append("krum trusts other clients on the device than on the CPU")
    elif not torch.allclose(cpu.aggregate, gpu.aggregate.cpu(), rtol=1e-5, atol=1e-6):
        problems.append("krum's aggregate differs between the device and the CPU")
    return problems


def _check_fedavg(device: torch.device) -> list[str]:
    from fedarena.benchmarks.harness.suite import parse_suite

    (spec,) = parse_suite(FEDAVG).runs
    cpu, gpu, t_cpu, t_gpu = _run_both("robustness", spec.config, device)
    print(f"  fedavg: accuracy cpu {cpu['final_accuracy']:.4f} ({t_cpu:.1f} s), {device} "
          f"{gpu['final_accuracy']:.4f} ({t_gpu:.1f} s)", flush=True)
    if abs(cpu["final_accuracy"] - gpu["final_accuracy"]) > ACCURACY_TOLERANCE:
        return [f"FedAvg accuracy {gpu['final_accuracy']:.4f} on {device} vs {cpu['final_accuracy']:.4f} on cpu"]
    return []


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(main())
