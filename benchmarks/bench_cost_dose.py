"""How much does more cost-stratified data teach the predictor? (#32 item 2, the dose after the first 48.)

``bench_stratified.py`` measured 48 cost-drawn networks against 48 new uniform ones: the front error fell by a
third, held-out error did not move. This benchmark keeps going along the same cost draw (the same file,
resumed: ``apqopt collect quant --draw cost --seed 0 --n N --out benchmarks/results/stratified/quant_cost_more.jsonl``;
its first 48 records are bench_stratified's) and fine-tunes the shipped quantized predictor exactly as
bench_stratified does (warm start: the shipped 800 records plus the extra ones repeated 10 times, 200
epochs at most, lr 3e-4, seed 0) on its first 48, 96, ... records. Each predictor is scored on the 200
held-out networks and on the refine_pick front networks that no dose learnt from (the same set for all).

Run: python benchmarks/bench_cost_dose.py   (2 torch threads; collecting is the long part, ~10 s a network)
Published numbers (2026-12-07): ``--predictor`` the fmnist predictor shipped before that day's rebuild
(``git show a07bf03:apqopt/assets/fmnist/predictor/quant.pt``, and its ``.json``); the rebuilt one learnt
these networks, so against it this measures nothing new.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, error_scores, paired, score_rows, warm_fit, write
from bench_stratified import front_set, key

from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.train import load_xy
from apqopt.shipped import asset_dir, predictor_path
from apqopt.supernet.collect import load_dataset

DATA = RESULTS / "stratified" / "quant_cost_more.jsonl"


def noise_ceiling(measured: np.ndarray, stderr: np.ndarray, draws: int = 200) -> dict[str, float]:
    """What a *perfect* predictor would score against these measurements, given their binomial noise: the
    true accuracies are the measured ones shrunk to the variance left after the noise (var - mean SE^2),
    each draw adds fresh noise; pairwise agreement and MAE of truth against the noisy measurement."""
    rng = np.random.default_rng(0)
    left = max(measured.var() - np.mean(stderr**2), 0.0)
    true = measured.mean() + (measured - measured.mean()) * np.sqrt(left / measured.var())
    i, j = np.triu_indices(len(measured), 1)
    agree, mae = [], []
    for _ in range(draws):
        noisy = true + rng.normal(0, stderr)
        agree.append(np.mean(np.sign(true[i] - true[j]) == np.sign(noisy[i] - noisy[j])))
        mae.append(np.mean(np.abs(noisy - true)))
    return {
        "pairwise": float(np.mean(agree)),
        "pairwise_sd": float(np.std(agree)),
        "mae_points": 100 * float(np.mean(mae)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--predictor", type=Path, default=predictor_path("fmnist"), help="the one fine-tuned")
    args = ap.parse_args()
    torch.set_num_threads(2)
    records = [json.loads(x) for x in DATA.read_text().splitlines()[1:]]
    n_all = len(records)
    doses = sorted({d for d in (48, 96, 144, 192, 240, n_all) if d <= n_all})
    X_base, y_base = load_xy(asset_dir("fmnist") / "quant.jsonl", "fmnist", bits=True)
    X_all, y_all = load_xy(DATA, "fmnist", bits=True)
    Xh, yh = load_xy(asset_dir("fmnist") / "quant_heldout.jsonl", "fmnist", bits=True)
    held = load_dataset(asset_dir("fmnist") / "quant_heldout.jsonl")[1]
    assert np.allclose([r["accuracy"] for r in held], yh)  # the same networks, in the same order
    se_h = np.array([r["stderr"] for r in held])
    Xf, yf, left_out = front_set({key(r["genes"]) for r in records})
    ceiling = noise_ceiling(yh, se_h)
    result: dict = {"doses": {}, "front_left_out": left_out, "collected": n_all, "heldout_noise_ceiling": ceiling}
    errors = {}
    for dose in (0, *doses):
        pred = AccuracyPredictor.load(args.predictor)
        if dose:
            warm_fit(pred, (X_base, y_base), (X_all[:dose], y_all[:dose]))
        held, e_h = error_scores(pred.predict(Xh), yh)
        front, e_f = error_scores(pred.predict(Xf), yf)
        result["doses"][str(dose)] = {"heldout": held, "front": front}
        errors[dose] = {"heldout": e_h, "front": e_f}
        print(dose, held, front, flush=True)
    top = doses[-1]
    result["paired_vs_48"] = {w: paired(errors[top][w], errors[48][w]) for w in ("heldout", "front")}
    result["paired_vs_shipped"] = {w: paired(errors[top][w], errors[0][w]) for w in ("heldout", "front")}
    labelled = {(d if d != "0" else "0 (shipped)"): r for d, r in result["doses"].items()}
    rows = score_rows("extra cost-drawn networks", labelled, len(yf))
    p48, p0 = result["paired_vs_48"], result["paired_vs_shipped"]
    notes = (
        f"{n_all} networks of the cost draw collected. Front networks: the {len(yf)} distinct picks of refine_pick "
        f"that no dose learnt ({left_out} left out). Paired |error| difference, {top} minus 48 (negative: more "
        f"data taught more): held-out {p48['heldout']['mean_points']:+.2f} ± {p48['heldout']['se_points']:.2f}, "
        f"front {p48['front']['mean_points']:+.2f} ± {p48['front']['se_points']:.2f} points; {top} minus the "
        f"shipped predictor: held-out {p0['heldout']['mean_points']:+.2f} ± {p0['heldout']['se_points']:.2f}, "
        f"front {p0['front']['mean_points']:+.2f} ± {p0['front']['se_points']:.2f}. #32's held-out targets: "
        f"pairwise >= 0.85, MAE <= 0.5 points; a perfect predictor would score pairwise {ceiling['pairwise']:.3f} ± "
        f"{ceiling['pairwise_sd']:.3f} and MAE {ceiling['mae_points']:.2f} points on them (their measurement noise, "
        "SE ~0.49 points each). Command: python benchmarks/bench_cost_dose.py (2 torch threads)."
    )
    write("cost_dose", {**result, "torch_threads": 2}, rows, notes)


if __name__ == "__main__":
    main()
