"""APQ Fig. 7 on measured data: pairwise ranking accuracy on the held-out quantized set vs the number
of quantized training pairs, predictor transfer vs training from scratch, several seeds; plus
prediction throughput at batch 1, 1k and 100k. Writes a table, JSON and a PNG plot.

Run: python benchmarks/bench_predictor.py
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import RESULTS, write

from apqopt import get_space
from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.metrics import pairwise_accuracy
from apqopt.predictor.train import load_xy

ASSETS = Path(__file__).resolve().parents[1] / "apqopt" / "assets" / "fmnist"
SIZES = (10, 20, 50, 100, 200, 400)
SEEDS = (0, 1, 2)
VARIANT = "wide"  # the steadier form at 10-100 pairs; the shipped ensemble uses the bit branch (see README)


def main() -> None:
    torch.set_num_threads(2)
    X_fp, y_fp = load_xy(ASSETS / "fp.jsonl", "fmnist", bits=False)
    X_q, y_q = load_xy(ASSETS / "quant.jsonl", "fmnist", bits=True)
    X_h, y_h = load_xy(ASSETS / "quant_heldout.jsonl", "fmnist", bits=True)
    sizes = [n for n in SIZES if n < len(y_q)] + [len(y_q)]
    preds: dict[str, dict[int, list[np.ndarray]]] = {"transfer": {}, "scratch": {}}
    for seed in SEEDS:
        fp = AccuracyPredictor("fmnist", "fp", seed=seed).fit(X_fp, y_fp)
        order = np.random.default_rng(seed).permutation(len(y_q))
        for n in sizes:
            idx = order[:n]
            tr = AccuracyPredictor.transfer(fp, X_q[idx], y_q[idx], variant=VARIANT, seed=seed)
            sc = AccuracyPredictor("fmnist", VARIANT, seed=seed).fit(X_q[idx], y_q[idx])
            for name, pred in (("transfer", tr), ("scratch", sc)):
                preds[name].setdefault(n, []).append(pred.predict(X_h))
    curves = {k: {n: [pairwise_accuracy(y_h, p) for p in v] for n, v in c.items()} for k, c in preds.items()}
    # the seeds' predictors averaged: what an ensemble of that many networks would rank like
    ensemble = {k: {n: pairwise_accuracy(y_h, np.mean(v, 0)) for n, v in c.items()} for k, c in preds.items()}
    rows = [
        [
            "quantized pairs",
            "transfer (mean ± sd)",
            "scratch (mean ± sd)",
            "gain (points)",
            f"transfer / scratch, {len(SEEDS)} seeds averaged",
        ]
    ]
    for n in sizes:
        t, s = np.array(curves["transfer"][n]), np.array(curves["scratch"][n])
        rows.append(
            [
                n,
                f"{t.mean():.3f} ± {t.std():.3f}",
                f"{s.mean():.3f} ± {s.std():.3f}",
                f"{100 * (t.mean() - s.mean()):+.1f}",
                f"{ensemble['transfer'][n]:.3f} / {ensemble['scratch'][n]:.3f}",
            ]
        )
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, c in (("transfer", "tab:red"), ("scratch", "tab:blue")):
        m = np.array([np.mean(curves[name][n]) for n in sizes])
        sd = np.array([np.std(curves[name][n]) for n in sizes])
        ax.plot(sizes, m, "o-", color=c, label=name)
        ax.fill_between(sizes, m - sd, m + sd, color=c, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("quantized training pairs")
    ax.set_ylabel("pairwise accuracy (held-out)")
    ax.set_title("Predictor transfer (APQ Fig. 7), fmnist")
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "predictor_transfer.png", dpi=120)
    # throughput (does not depend on the weights): one network vs an ensemble of 5
    sp = get_space("fmnist")
    thr: dict[int, dict[int, float]] = {}
    for members in (1, 5):
        q = AccuracyPredictor("fmnist", VARIANT, members=members).init_weights()
        for batch in (1, 1000, 100_000):
            X = sp.encode(sp.sample(batch, 0))
            reps = 200 if batch == 1 else (20 if batch == 1000 else 3)
            t0 = time.perf_counter()
            for _ in range(reps):
                q.predict(X)
            thr.setdefault(batch, {})[members] = batch * reps / (time.perf_counter() - t0)
    rows += [["", "", "", "", ""], ["prediction batch", "candidates/s, 1 network", "5 networks", "ratio", ""]]
    rows += [[b, f"{v[1]:,.0f}", f"{v[5]:,.0f}", f"{v[1] / v[5]:.1f}x", ""] for b, v in thr.items()]
    write(
        "predictor_transfer",
        {
            "sizes": sizes,
            "seeds": list(SEEDS),
            "curves": {k: {str(n): v for n, v in c.items()} for k, c in curves.items()},
            "ensemble_of_seeds": {k: {str(n): v for n, v in c.items()} for k, c in ensemble.items()},
            "throughput_per_s": {
                "members_1": {b: v[1] for b, v in thr.items()},
                "members_5": {b: v[5] for b, v in thr.items()},
            },
            "n_fp": len(y_fp),
            "n_heldout": len(y_h),
        },
        rows,
        notes="Plot: predictor_transfer.png. Held-out quantized pairs were never used for training.",
    )


if __name__ == "__main__":
    main()
