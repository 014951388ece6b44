"""Supernet training steps per second and quantized measurements per minute, on each device here.

Why: `--device` moves the measured pipeline to a GPU; this says what that buys, measured with the real
code paths (`train_supernet`'s sandwich steps in the refine phase at the default batch of 256, and
`measure()` with the default quantized configuration: calibration, 40 fine-tune steps, 5,000 val
images). Devices: the CPU (at the thread count stated) and every CUDA GPU PyTorch sees.

Run: python benchmarks/bench_devices.py [--steps 30] [--measurements 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _common import write

from apqopt.shipped import supernet_path
from apqopt.supernet.collect import CollectConfig, measure
from apqopt.supernet.train import Phase, TrainConfig, load_supernet, phase_report, phase_steps, train_supernet


def train_rate(device: str, steps: int) -> float:
    """Sandwich steps per second (largest + smallest + 2 random subnets per step), report excluded."""
    n = 55_000
    epochs = steps * 256 / n
    cfg = TrainConfig(phases=(Phase("refine", epochs, 0.03, ("kernel", "depth", "width"), 2),), eval_images=1)
    assert phase_steps(cfg, cfg.phases[0], n) == steps
    with tempfile.TemporaryDirectory() as tmp:
        net = train_supernet(cfg, tmp, progress=False, device=device)
        seconds = torch.load(f"{tmp}/supernet.pt", weights_only=True)["history"][0]["seconds"]
    t0 = time.perf_counter()  # the phase's "seconds" include its end-of-phase report: time that alone
    phase_report(net, net.space, cfg.eval_images)
    return steps / max(1e-9, seconds - (time.perf_counter() - t0))


def measure_rate(device: str, n: int) -> float:
    net = load_supernet(supernet_path("fmnist"), device=device)
    cands = net.space.to_candidates(net.space.sample(n, 0))
    t0 = time.perf_counter()
    for i, cand in enumerate(cands):
        measure(net, cand, CollectConfig(kind="quant"), seed=i)
    return 60 * n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--measurements", type=int, default=3)
    args = ap.parse_args()
    found = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    rows, table = [], [["device", "supernet training (steps/s)", "quantized measurements (per min)"]]
    for device in found:
        cpu = f"CPU, {torch.get_num_threads()} threads"
        name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu
        steps, per_min = train_rate(device, args.steps), measure_rate(device, args.measurements)
        rows.append({"device": device, "name": name, "train_steps_per_s": steps, "measurements_per_min": per_min})
        table.append([f"{device} ({name})", f"{steps:.2f}", f"{per_min:.2f}"])
    notes = __doc__.split("\n\n")[1].replace("\n", " ")
    if len(found) == 1:
        notes += " No GPU on this machine: the CUDA path is tested on the CPU only (tests/test_devices.py)."
    write("devices", {"steps": args.steps, "measurements": args.measurements, "rows": rows}, table, notes=notes)


if __name__ == "__main__":
    main()
