"""Supernet throughput on this machine, side by side in one run:
training step of the largest subnet with channels_last vs the default layout (ratio); subnet
evaluation (BN re-estimation + val accuracy) in subnets/minute; quantized pairs (calibration +
fine-tune + evaluation) per minute; and the recorded wall times of the shipped build.

Run: python benchmarks/bench_supernet.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import write

from apqopt import get_space
from apqopt.supernet.collect import CollectConfig, candidate_genes, load_dataset
from apqopt.supernet.data import load_split
from apqopt.supernet.evaluate import accuracy, bn_slice, evaluate_subnet, reestimate_bn
from apqopt.supernet.network import Supernet
from apqopt.supernet.quant import finetune, quantize
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


def main() -> None:
    sp = get_space("fmnist")
    net = load_supernet(ASSETS / "supernet.pt")
    fp_cfg, q_cfg = CollectConfig(kind="fp"), CollectConfig(kind="quant")
    val = load_split("val").subset(fp_cfg.eval_images)
    train = load_split("train")
    n_eval, n_quant = 6, 3
    t0 = time.perf_counter()
    for i in range(n_eval):
        evaluate_subnet(net.extract(sp.to_candidates(candidate_genes(sp, fp_cfg, i)[None])[0]), val)
    eval_s = (time.perf_counter() - t0) / n_eval
    t0 = time.perf_counter()
    for i in range(n_quant):
        cand = sp.to_candidates(candidate_genes(sp, q_cfg, i)[None])[0]
        sub = net.extract(cand)
        reestimate_bn(sub, bn_slice())
        q = quantize(sub, cand, bn_slice(q_cfg.finetune.calib_images))
        finetune(q, train.images, train.labels, q_cfg.finetune, seed=i)
        reestimate_bn(q, bn_slice())
        accuracy(q, val)
    quant_s = (time.perf_counter() - t0) / n_quant
    cl, plain = train_step_seconds(True), train_step_seconds(False)
    build = {}
    log = ASSETS / "train.log"
    if log.exists():
        build["supernet_train_s"] = [json.loads(x) for x in log.read_text().splitlines() if '"wall_s"' in x][-1][
            "wall_s"
        ]
    for name in ("fp", "quant", "quant_heldout"):
        path = ASSETS / f"{name}.jsonl"
        if path.exists() or list(ASSETS.glob(f"{name}.shard*")):
            _, recs = load_dataset(path)
            build[f"{name}_records"] = len(recs)
            build[f"{name}_cpu_s"] = round(sum(r["seconds"] for r in recs), 1)
    write(
        "supernet",
        {
            "eval_s_per_subnet": eval_s,
            "quant_s_per_pair": quant_s,
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
            *[[f"shipped build: {k}", v] for k, v in build.items()],
        ],
        notes="Timed with both cores free; collection runs two single-thread shards in parallel.",
    )


if __name__ == "__main__":
    main()
