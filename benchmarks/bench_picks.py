"""The predictor on the networks searches pick (#32: "on search picks that no dataset contains").

Reads the studies a ``compare --verify-top K`` recorded (``scripts/head-to-head.sh`` names them) and,
for every searcher, scores the shipped predictor on the distinct networks it picked and had measured:
MAE and bias with SEs, the worst single error, and how many fall inside the predictor's calibrated 80%
intervals (``predict(X, return_std=True)``). Then whether the searchers' *predicted* hypervolume ranks
them as the *measured* one does wherever the measured verdict separates two of them.

The picks (genes, predicted mean and std, measured accuracy and SE) are written beside the results, so the
numbers can be checked without the studies.

Run: python benchmarks/bench_picks.py --storage /tmp/h2h/compare_fmnist_1000_test.log \
         --tag compare_fmnist_1000_test [--predictor FILE --name picks_NAME]
(``--predictor``: score another predictor on the same picks; the hypervolume rows stay the searches' own.)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import optuna
from _common import RESULTS, error_scores, write

from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.metrics import interval_coverage
from apqopt.record import study_record
from apqopt.shipped import predictor_path
from apqopt.studies import open_storage


def picks(storage: str, tag: str) -> tuple[dict[str, dict[bytes, dict]], str]:
    """Per searcher, its distinct measured networks (canonical genes -> record), and the images measured on."""
    store = open_storage(storage, create=False)
    out: dict[str, dict[bytes, dict]] = defaultdict(dict)
    images = set()
    for summary in optuna.get_all_study_summaries(store):
        rec = study_record(summary)
        if rec.compare_tag != tag:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        trials = study.get_trials(deepcopy=False)  # once: study.trials copies every trial at each access
        codec, space = rec.codec(), rec.space()
        images.add(rec.verify_images)
        for number, v in rec.verified.items():
            genes = codec.genes(trials[number].params)
            key = space.canonical(genes[None])[0].astype(np.int64)
            row = {"genes": key.tolist(), "measured": v.measured_accuracy, "stderr": v.stderr}
            out[str(rec.searcher)].setdefault(key.tobytes(), {**row, "latency_ms": v.latency_ms})
    if len(images) != 1:
        raise SystemExit(f"studies under '{tag}' measured on {sorted(images) or 'nothing'}: expected one kind")
    return out, images.pop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", required=True, help="the storage compare recorded into")
    ap.add_argument("--tag", required=True, help="the compare's tag (its results folder's name)")
    ap.add_argument("--predictor", type=Path, default=predictor_path("fmnist"), help="default: the shipped one")
    ap.add_argument("--name", help="the results' name (default: picks_TAG)")
    args = ap.parse_args()
    name_out = args.name or f"picks_{args.tag}"
    by_searcher, images = picks(args.storage, args.tag)
    pred = AccuracyPredictor.load(args.predictor)
    shipped = args.predictor.resolve() == predictor_path("fmnist").resolve()
    label = (
        f"the shipped predictor ({pred.metadata_.get('fit', {}).get('n', '?')} training pairs)"
        if shipped
        else str(args.predictor)
    )
    rows = [["searcher", "distinct picks", "MAE (points) ± SE", "bias ± SE", "worst |error|", "80% interval coverage"]]
    result: dict = {"tag": args.tag, "images": images, "searchers": {}}
    everything: dict[bytes, dict] = {}
    for name in sorted(by_searcher):
        recs = list(by_searcher[name].values())
        genes = np.array([r["genes"] for r in recs])
        mean, std = pred.predict_genes(genes, return_std=True)
        y = np.array([r["measured"] for r in recs])
        s, err = error_scores(mean, y)
        s["worst_points"] = 100 * float(err.max())
        s["coverage_80"] = interval_coverage(y, mean, std)
        result["searchers"][name] = s
        for r, m, sd in zip(recs, mean, std):
            everything[bytes(np.array(r["genes"], dtype=np.int64))] = {**r, "predicted": float(m), "std": float(sd)}
        rows.append(
            [name, s["n"], f"{s['mae_points']:.2f} ± {s['mae_se']:.2f}",
             f"{s['bias_points']:+.2f} ± {s['bias_se']:.2f}", f"{s['worst_points']:.2f}", f"{s['coverage_80']:.2f}"]
        )  # fmt: skip
    allr = list(everything.values())
    y = np.array([r["measured"] for r in allr])
    mean, std = np.array([r["predicted"] for r in allr]), np.array([r["std"] for r in allr])
    s, err = error_scores(mean, y)
    s["worst_points"], s["coverage_80"] = 100 * float(err.max()), interval_coverage(y, mean, std)
    result["all"] = s
    rows.append(
        ["all (distinct)", s["n"], f"{s['mae_points']:.2f} ± {s['mae_se']:.2f}",
         f"{s['bias_points']:+.2f} ± {s['bias_se']:.2f}", f"{s['worst_points']:.2f}", f"{s['coverage_80']:.2f}"]
    )  # fmt: skip
    report = json.loads((RESULTS / args.tag / "compare.json").read_text())
    summ = report["summary"]
    agree = []
    for v in report["verdicts"]:
        if not v["separable"]:
            continue
        hi, lo = (v["a"], v["b"]) if v["mean_diff"] > 0 else (v["b"], v["a"])
        agree.append({"measured_better": hi, "than": lo, "predicted_agrees": summ[hi]["hv_mean"] > summ[lo]["hv_mean"]})
    result["hv_ranking"] = agree
    (RESULTS / f"{name_out}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in allr))
    wrong = [f"{a['measured_better']} > {a['than']}" for a in agree if not a["predicted_agrees"]]
    notes = (
        f"Picks of `{args.tag}` (every searcher x seed, K budget picks per run), each network once per searcher "
        f"and once in 'all'; measured on the {images} images; predicted by {label} (its calibrated "
        "std; the hypervolumes are the searches' own predictions). #32's targets: MAE <= 1.0 point for every "
        "searcher, worst error <= 3 points, 80% intervals cover 70-90%. Predicted HV ranks the searchers as "
        f"measured HV does in {sum(a['predicted_agrees'] for a in agree)} of the {len(agree)} pairs the measured "
        "verdict separates"
        + (f" (not: {', '.join(wrong)})" if wrong else "")
        + f". The picks: results/{name_out}.jsonl. Command: python benchmarks/bench_picks.py "
        f"--storage STORAGE --tag {args.tag} (STORAGE: the journal scripts/head-to-head.sh wrote)."
    )
    write(name_out, result, rows, notes)


if __name__ == "__main__":
    main()
