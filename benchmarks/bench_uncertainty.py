"""How far to trust a prediction: the shipped fmnist ensemble's spread, calibrated, checked where it was
not fitted (#32 item 1).

The shipped quantization-aware predictor is an ensemble of 5; ``predict(X, return_std=True)`` gives the
members' spread times one scale fitted by ``calibrate`` so that 80% intervals cover 80%. Measured:

* 2-fold on the shipped held-out set (200 measured networks, none in any training data): calibrate on
  one half (even rows or odd rows), count the other half inside its 80% intervals;
* the raw spread (scale 1) on the same halves, to show what the calibration changes;
* the refinement rounds' measured search picks (``benchmarks/results/refine_fmnist/refine.jsonl``: 24
  networks at the front of evolution searches, measured by ``apqopt refine``; in no dataset the shipped
  predictor saw), with the scale fitted on the whole held-out set.

``--ship`` writes that last scale into the shipped ``quant.pt.json`` (its weights file is untouched).

Run: python benchmarks/bench_uncertainty.py [--ship]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, write

from apqopt import get_space
from apqopt.fileio import atomic_write
from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.metrics import interval_coverage
from apqopt.predictor.train import load_xy
from apqopt.shipped import asset_dir, predictor_path

NOMINAL = 0.8


def picks() -> tuple[np.ndarray, np.ndarray]:
    """Encodings and measured accuracies of the refinement rounds' measured search picks."""
    rows = [json.loads(line) for line in (RESULTS / "refine_fmnist" / "refine.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("type") != "header"]
    sp = get_space("fmnist")
    return sp.encode(np.array([r["genes"] for r in rows]), bits=True), np.array([r["accuracy"] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ship", action="store_true", help="write the held-out scale into the shipped quant.pt.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pred = AccuracyPredictor.load(predictor_path("fmnist"))
    X, y = load_xy(asset_dir("fmnist") / "quant_heldout.jsonl", "fmnist", bits=True)
    halves = [np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1]
    folds = []
    for fit, check in (halves, halves[::-1]):
        pred.calibrate(X[fit], y[fit], NOMINAL)
        mean, std = pred.predict(X[check], return_std=True)
        raw = std / pred.std_scale_
        folds.append(
            {
                "scale": pred.std_scale_,
                "coverage": interval_coverage(y[check], mean, std, NOMINAL),
                "coverage_raw_spread": interval_coverage(y[check], mean, raw, NOMINAL),
                "median_std_points": float(100 * np.median(std)),
                "n": int(check.sum()),
            }
        )
    pred.calibrate(X, y, NOMINAL)
    Xp, yp = picks()
    mean, std = pred.predict(Xp, return_std=True)
    on_picks = {
        "scale": pred.std_scale_,
        "coverage": interval_coverage(yp, mean, std, NOMINAL),
        "coverage_raw_spread": interval_coverage(yp, mean, std / pred.std_scale_, NOMINAL),
        "median_std_points": float(100 * np.median(std)),
        "mae_points": float(100 * np.mean(np.abs(yp - mean))),
        "n": len(yp),
    }
    if args.ship:
        meta_path = Path(str(predictor_path("fmnist")) + ".json")
        meta = json.loads(meta_path.read_text())
        meta["calibration"] = pred.metadata_["calibration"]
        atomic_write(meta_path, json.dumps(meta, indent=2) + "\n")
        meta_path.chmod(0o644)
    rows = [["checked on", "n", "scale", "80% interval coverage", "raw spread's coverage", "median std (points)"]]
    for i, f in enumerate(folds):
        rows.append(
            [
                f"held-out half {['odd', 'even'][i]} (scale from the other half)",
                f["n"],
                f"{f['scale']:.2f}",
                f"{f['coverage']:.2f}",
                f"{f['coverage_raw_spread']:.2f}",
                f"{f['median_std_points']:.2f}",
            ]
        )
    rows.append(
        [
            "refinement picks (scale from all 200 held-out)",
            on_picks["n"],
            f"{on_picks['scale']:.2f}",
            f"{on_picks['coverage']:.2f}",
            f"{on_picks['coverage_raw_spread']:.2f}",
            f"{on_picks['median_std_points']:.2f}",
        ]
    )
    write(
        "uncertainty",
        {"nominal": NOMINAL, "folds": folds, "picks": on_picks, "torch_threads": 1, "shipped": args.ship},
        rows,
        notes=f"Shipped fmnist ensemble (5 members). Target: 80% intervals cover 70-90%. On the refinement picks "
        f"the predictor's MAE is {on_picks['mae_points']:.2f} points. Command: python benchmarks/bench_uncertainty.py"
        + (" --ship" if args.ship else ""),
    )


if __name__ == "__main__":
    main()
