"""Supernet throughput on this machine, side by side in one run:
training step of the largest subnet with channels_last vs the default layout (ratio); subnet
evaluation (BN re-estimation + val accuracy) in subnets/minute; quantized pairs (calibration +
fine-tune + evaluation) per minute, with the fused fake quantizer vs the plain-ops one (ratio);
and the recorded wall times of the shipped build.

Run: python benchmarks/bench_supernet.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from _common import write

from apqopt import get_space
from apqopt.supernet import quant
from apqopt.supernet.collect import CollectConfig, candidate_genes, measure, summarize
from apqopt.supernet.data import Split, load_split
from apqopt.supernet.evaluate import evaluate_subnet
from apqopt.supernet.network import Supernet
from apqopt.supernet.train import load_supernet

ASSETS = Path(__file__).resolve().parents[1] / "apqopt" / "assets" / "fmnist"


def train_step_seconds(channels_last: bool, steps: int = 4) -> float:
    sp = get_space("fmnist")
    torch.manual_seed(0)
    net = Supernet(sp)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x, sp.uniform()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def quant_measurements(net: Supernet, cfg: CollectConfig, val: Split, n: int) -> tuple[float, list[float]]:
    """(mean seconds, accuracies) of the first n quantized measurements, exactly as the datasets take them."""
    sp = get_space(cfg.space)
    t0 = time.perf_counter()
    accs = [
        measure(net, sp.to_candidates(candidate_genes(sp, cfg, i)[None])[0], cfg, seed=i, split=val) for i in range(n)
    ]
    return (time.perf_counter() - t0) / n, accs


def main() -> None:
    sp = get_space("fmnist")
    net = load_supernet(ASSETS / "supernet.pt")
    fp_cfg, q_cfg = CollectConfig(kind="fp"), CollectConfig(kind="quant")
    val = load_split("val").subset(fp_cfg.eval_images)
    n_eval, n_quant = 6, 4
    t0 = time.perf_counter()
    for i in range(n_eval):
        evaluate_subnet(net.extract(sp.to_candidates(candidate_genes(sp, fp_cfg, i)[None])[0]), val)
    eval_s = (time.perf_counter() - t0) / n_eval
    quant_s, accs = quant_measurements(net, q_cfg, val, n_quant)
    with mock.patch.object(quant, "fake_quant", quant.fake_quant_plain):
        quant_plain_s, plain_accs = quant_measurements(net, q_cfg, val, n_quant)
    delta = 100 * np.abs(np.subtract(accs, plain_accs))
    cl, plain = train_step_seconds(True), train_step_seconds(False)
    build: dict[str, dict[str, float]] = {}
    log = ASSETS / "train.log"
    if log.exists():  # each training run appends a "done" line (v2 = the first four phases, then `refine`)
        walls = [json.loads(x)["wall_s"] for x in log.read_text().splitlines() if '"wall_s"' in x]
        build["supernet training"] = {"runs_wall_s": walls, "wall_s": round(sum(walls), 1)}
    for name in ("fp", "quant", "quant_heldout"):
        if (ASSETS / f"{name}.jsonl").exists() or list(ASSETS.glob(f"{name}.shard*")):
            s = summarize(ASSETS / f"{name}.jsonl")  # the same figures as `apqopt dataset`
            keys = ("records", "seconds_total", "median_s_per_record", "slowest_shard_s")
            build[f"{name} dataset"] = {k: s[k] for k in keys}
    report = ASSETS / "predictor" / "report.json"
    if report.exists() and "wall_s" in (rep := json.loads(report.read_text())):
        build["predictors (fp, transfer, wide, scratch)"] = {"wall_s": rep["wall_s"]}
    # end to end: the steps run one after another; a dataset's shards run side by side
    total = sum(v.get("slowest_shard_s", v.get("wall_s", 0.0)) for v in build.values())
    build["end to end (sum of the steps)"] = {"wall_s": round(total, 1), "hours": round(total / 3600, 2)}
    write(
        "supernet",
        {
            "eval_s_per_subnet": eval_s,
            "quant_s_per_pair": quant_s,
            "quant_plain_s_per_pair": quant_plain_s,
            "fused_quant_speedup": quant_plain_s / quant_s,
            "fused_vs_plain_accuracy": {"fused": accs, "plain": plain_accs},
            "train_step_channels_last_s": cl,
            "train_step_default_s": plain,
            "channels_last_speedup": plain / cl,
            "shipped_build": build,
        },
        [
            ["measure", "value"],
            ["largest-subnet training step, batch 256, channels_last", f"{cl:.3f} s"],
            ["same, default (NCHW) layout", f"{plain:.3f} s"],
            ["channels_last speed-up", f"{plain / cl:.2f}x"],
            [
                f"fp measurement (BN on 2,000 + {len(val):,} val images)",
                f"{eval_s:.2f} s = {60 / eval_s:.1f} subnets/min",
            ],
            [
                f"quantized pair (calibrate + {q_cfg.finetune.steps}-step fine-tune + eval)",
                f"{quant_s:.2f} s = {60 / quant_s:.1f} pairs/min",
            ],
            ["same, plain-ops fake quantization (the first records' code)", f"{quant_plain_s:.2f} s"],
            ["fused fake-quantization speed-up", f"{quant_plain_s / quant_s:.2f}x"],
            [
                f"fused vs plain quantized accuracy, same {n_quant} pairs",
                f"mean abs. difference {delta.mean():.2f} points, max {delta.max():.2f} (float-order noise; SE 0.5)",
            ],
            *[[f"shipped build: {k}", ", ".join(f"{a} {b}" for a, b in v.items())] for k, v in build.items()],
        ],
        notes="Timed with both cores free; collection runs two single-thread shards in parallel. "
        "Dataset seconds are the records' own wall-clock times (a paused collector's pause included), "
        "so the sums bound the CPU time from above; the medians are the per-record cost. A dataset's "
        "wall time is its slowest shard's sum (shards run side by side); the end-to-end figure adds "
        "the training runs, the three datasets' wall times and the predictor training.",
    )


if __name__ == "__main__":
    main()
