"""The shipped predictor before and after a rebuild, on every yardstick the project has (#32).

A rebuild (``apqopt predictor train``, then ``bench_uncertainty.py --ship`` for the calibration) changes the
predictor every search uses, so it is judged side by side with the one it replaces, on networks neither was
trained on:

* the 200 held-out random networks, against three labels: their record (first 5,000 val images), the
  15,000 other images (``bench_heldout_images.py``) and the two averaged (the least noisy);
* search picks measured on the validation images (Table 2, bench_related, the refine runs), and among them
  the good policies (measured >= 89%), where #32 asks for pairwise >= 0.75 and bias within +-0.5;
* search picks measured on the test images (the head-to-heads' picks, Table 2's and bench_related's again).

Every set leaves out networks that a quantized training dataset of the assets holds. Differences are paired
(the same networks): |error| after - before with its SE, and the pairwise-accuracy difference with a
bootstrap SE over networks.

Run: git show a07bf03:apqopt/assets/fmnist/predictor/quant.pt > /tmp/before/quant.pt  (and quant.pt.json)
     python benchmarks/bench_predictor_rebuild.py --before /tmp/before/quant.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import RESULTS, error_scores, paired, write
from bench_heldout_images import other_labels

from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.metrics import interval_coverage, pairwise_accuracy
from apqopt.shipped import asset_dir, predictor_path, quant_training_paths
from apqopt.supernet.collect import dataset_arrays

GOOD = 0.89  # #32: "among policies measured >= 89%"
VAL_PICKS = {  # file -> the key of its val-measured accuracy
    "table2.rows.jsonl": "measured",
    "related_methods.rows.jsonl": "measured",
    "refine_fmnist/refine.jsonl": "accuracy",
    "refine_pick/spread/refine.jsonl": "accuracy",
    "refine_pick/uncertainty/refine.jsonl": "accuracy",
    "refine_pick/common.jsonl": "accuracy",
}
TEST_PICKS = {  # file -> the key of its test-image accuracy
    "picks_compare_fmnist_1000_test.jsonl": "measured",
    "picks_compare_fmnist_5000_test.jsonl": "measured",
    "table2.test.jsonl": "test",
    "related_methods.test.jsonl": "test",
}


def read_picks(files: dict[str, str], exclude: set[bytes]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Distinct measured networks of the files that exist (the first measurement of each kept)."""
    seen: dict[bytes, float] = {}
    used = []
    for name, key in files.items():
        path = RESULTS / name
        if not path.exists():
            continue
        used.append(name)
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if "genes" not in r or r.get(key) is None:
                continue
            g = np.array(r["genes"], dtype=np.int64).tobytes()
            if g not in exclude:
                seen.setdefault(g, float(r[key]))
    genes = np.array([np.frombuffer(g, dtype=np.int64) for g in seen])
    return genes, np.array(list(seen.values())), used


def bootstrap_pairwise_diff(y: np.ndarray, a: np.ndarray, b: np.ndarray, reps: int = 400) -> float:
    """SE of pairwise(b) - pairwise(a) over resampled networks (the same resample for both)."""
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(reps):
        i = rng.integers(0, len(y), len(y))
        diffs.append(pairwise_accuracy(y[i], b[i]) - pairwise_accuracy(y[i], a[i]))
    return float(np.nanstd(diffs, ddof=1))


def scores(pred: AccuracyPredictor, genes: np.ndarray, y: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    mean, std = pred.predict_genes(genes, return_std=True)
    s, err = error_scores(mean, y)
    s["worst_points"] = 100 * float(err.max())
    s["coverage_80"] = interval_coverage(y, mean, std)
    return s, err, mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, type=Path, help="the predictor the rebuild replaces (quant.pt)")
    ap.add_argument("--after", type=Path, default=predictor_path("fmnist"), help="the rebuilt one (default: shipped)")
    ap.add_argument("--name", default="predictor_rebuild", help="results/NAME.{json,md} (default: %(default)s)")
    args = ap.parse_args()
    preds = {"before": AccuracyPredictor.load(args.before), "after": AccuracyPredictor.load(args.after)}
    trained = set()
    for path in quant_training_paths("fmnist"):
        _, g, _ = dataset_arrays(path)
        trained.update(row.astype(np.int64).tobytes() for row in g)
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    _, held, y_rec = dataset_arrays(asset_dir("fmnist") / "quant_heldout.jsonl")
    other = other_labels()
    if other is not None:
        sets["200 held-out, record labels"] = (held, y_rec)
        sets["200 held-out, other 15,000 images"] = (held, other)
        sets["200 held-out, both averaged"] = (held, (y_rec + other) / 2)
    else:
        sets["200 held-out, record labels"] = (held, y_rec)
    g_val, y_val, val_files = read_picks(VAL_PICKS, trained)
    sets["search picks, val images"] = (g_val, y_val)
    good = y_val >= GOOD
    sets[f"  of them measured >= {100 * GOOD:.0f}%"] = (g_val[good], y_val[good])
    g_test, y_test, test_files = read_picks(TEST_PICKS, trained)
    sets["search picks, test images"] = (g_test, y_test)

    rows = [["set", "n", "predictor", "MAE (points) ± SE", "bias ± SE", "pairwise", "worst", "80% coverage",
             "after − before: |error|, pairwise"]]  # fmt: skip
    result: dict = {"sets": {}, "val_files": val_files, "test_files": test_files, "excluded_training": len(trained)}
    for name, (genes, y) in sets.items():
        out, errs, means = {}, {}, {}
        for which, pred in preds.items():
            out[which], errs[which], means[which] = scores(pred, genes, y)
        d = paired(errs["after"], errs["before"])
        d["pairwise_diff"] = out["after"]["pairwise"] - out["before"]["pairwise"]
        d["pairwise_diff_se"] = bootstrap_pairwise_diff(y, means["before"], means["after"])
        result["sets"][name] = {**out, "after_minus_before": d}
        for which in preds:
            s = out[which]
            rows.append(
                [name if which == "before" else "", s["n"] if which == "before" else "", which,
                 f"{s['mae_points']:.2f} ± {s['mae_se']:.2f}", f"{s['bias_points']:+.2f} ± {s['bias_se']:.2f}",
                 f"{s['pairwise']:.3f}", f"{s['worst_points']:.2f}", f"{s['coverage_80']:.2f}",
                 "" if which == "before" else f"{d['mean_points']:+.2f} ± {d['se_points']:.2f}, "
                 f"{d['pairwise_diff']:+.3f} ± {d['pairwise_diff_se']:.3f}"]
            )  # fmt: skip
    shipped = args.after.resolve() == predictor_path("fmnist").resolve()
    after = "the shipped predictor" if shipped else str(args.after)
    notes = (
        f"before: {args.before} ({preds['before'].metadata_.get('fit', {}).get('n', '?')} training pairs); after: "
        f"{after} ({preds['after'].metadata_.get('fit', {}).get('n', '?')} training pairs). Networks a training "
        f"dataset holds ({len(trained)}) are left out of every set. "
        f"Val picks from {', '.join(val_files)}; test picks from {', '.join(test_files)}. "
        "Coverage: the calibrated 80% intervals (each predictor's own scale). "
        f"Command: python benchmarks/bench_predictor_rebuild.py --before {args.before}"
        + ("" if args.name == "predictor_rebuild" else f" --name {args.name}")
    )
    write(args.name, result, rows, notes)


if __name__ == "__main__":
    main()
