"""How much of the fp dataset's spread is capacity and how much is evaluation noise.

Why: ρ(MACs, fp accuracy) is the issue's check that accuracy tracks capacity. Every stored fp
accuracy comes from one 5k-image evaluation (val[:5000]); this re-measures a sample of stored
candidates on the other 5k val images (same weights, same BN slice), so the only difference is the
evaluation set. The correlation between the two halves is the measurement's reliability; no capacity
measure can correlate with one 5k evaluation much better than its square root.

Run: python benchmarks/fp_eval_noise.py [--n 80]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import write
from scipy.stats import pearsonr, spearmanr
from tqdm import tqdm

from apqopt import get_space
from apqopt.shipped import asset_dir, supernet_path
from apqopt.supernet.collect import load_dataset
from apqopt.supernet.data import Split, load_split
from apqopt.supernet.evaluate import evaluate_subnet
from apqopt.supernet.train import load_supernet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=80, help="stored fp records to re-measure (evenly spaced)")
    args = ap.parse_args()
    space = get_space("fmnist")
    header, records = load_dataset(asset_dir("fmnist") / "fp.jsonl")
    records = sorted(records, key=lambda r: r["index"])
    picked = [records[i] for i in np.linspace(0, len(records) - 1, args.n).round().astype(int)]
    val = load_split("val")
    n_eval = header["config"]["eval_images"]
    other = Split(val.images[n_eval : 2 * n_eval], val.labels[n_eval : 2 * n_eval])
    net = load_supernet(supernet_path("fmnist"))
    first, second, macs = [], [], []
    for rec in tqdm(picked, desc="re-measure"):
        cand = space.to_candidates(np.asarray(rec["genes"])[None])[0]
        with torch.no_grad():
            second.append(evaluate_subnet(net.extract(cand), other, header["config"]["bn_images"]))
        first.append(rec["accuracy"])
        macs.append(rec["macs"])
    a, b, m = np.array(first), np.array(second), np.array(macs)
    reliability = float(pearsonr(a, b)[0])
    both = (a + b) / 2
    data = {
        "records": len(picked),
        "eval_images_each": n_eval,
        "reliability_pearson_halves": round(reliability, 3),
        "ceiling_for_one_half": round(float(np.sqrt(max(reliability, 0.0))), 3),
        "spearman_macs_first_half": round(float(spearmanr(m, a)[0]), 3),
        "spearman_macs_second_half": round(float(spearmanr(m, b)[0]), 3),
        "spearman_macs_both_halves": round(float(spearmanr(m, both)[0]), 3),
        "sd_first_half_points": round(float(a.std() * 100), 3),
        "sd_difference_points": round(float((a - b).std() * 100), 3),
    }
    table = [["figure", "value"], *[[k, v] for k, v in data.items()]]
    write("fp_eval_noise", data, table, notes=__doc__.split("\n\n")[1].replace("\n", " "))


if __name__ == "__main__":
    main()
