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
from types import SimpleNamespace

import numpy as np
import optuna
from _common import RESULTS, error_scores, measured_separated, write

from apqopt.compare import hypervolume, reference_point
from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.metrics import interval_coverage
from apqopt.problem_spec import load_problem
from apqopt.record import study_record
from apqopt.shipped import predictor_path
from apqopt.studies import open_storage

Runs = dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def picks(storage: str, tag: str) -> tuple[dict[str, dict[bytes, dict]], str, Runs]:
    """Per searcher, its distinct measured networks (canonical genes -> record), the images measured on, and
    each run's evaluated networks (genes, latency, feasible) for hypervolumes under another predictor."""
    store = open_storage(storage, create=False)
    out: dict[str, dict[bytes, dict]] = defaultdict(dict)
    runs: Runs = defaultdict(list)
    images = set()
    for summary in optuna.get_all_study_summaries(store):
        rec = study_record(summary)
        if rec.compare_tag != tag:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        trials = study.get_trials(deepcopy=False)  # once: study.trials copies every trial at each access
        codec, space = rec.codec(), rec.space()
        images.add(rec.verify_images)
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        runs[str(rec.searcher)].append(
            (
                np.stack([codec.genes(t.params) for t in done]),
                np.array([t.user_attrs["latency_ms"] for t in done]),
                np.array([bool(t.user_attrs["feasible"]) for t in done]),
            )
        )
        for number, v in rec.verified.items():
            genes = codec.genes(trials[number].params)
            key = space.canonical(genes[None])[0].astype(np.int64)
            row = {"genes": key.tolist(), "measured": v.measured_accuracy, "stderr": v.stderr}
            out[str(rec.searcher)].setdefault(key.tobytes(), {**row, "latency_ms": v.latency_ms})
    if len(images) != 1:
        raise SystemExit(f"studies under '{tag}' measured on {sorted(images) or 'nothing'}: expected one kind")
    return out, images.pop(), runs


def rescored_hv(runs: Runs, predictor: Path, latency: float) -> dict[str, float]:
    """Mean hypervolume per searcher of its runs' evaluated networks as ``predictor`` predicts them (the
    reference point as compare takes it, from that predictor): for the searches' own one, compare's numbers."""
    problem = load_problem("fmnist", latency=latency, predictor=str(predictor))
    ref = reference_point(problem)
    out = {}
    for name, rs in runs.items():
        hv = [
            hypervolume(SimpleNamespace(feasible=feas, latency=lat, accuracy=problem.predict(g)), ref, len(g))
            for g, lat, feas in rs
        ]
        out[name] = float(np.mean(hv))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", required=True, help="the storage compare recorded into")
    ap.add_argument("--tag", required=True, help="the compare's tag (its results folder's name)")
    ap.add_argument("--predictor", type=Path, default=predictor_path("fmnist"), help="default: the shipped one")
    ap.add_argument("--name", help="the results' name (default: picks_TAG)")
    args = ap.parse_args()
    name_out = args.name or f"picks_{args.tag}"
    by_searcher, images, runs = picks(args.storage, args.tag)
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
    rescored = rescored_hv(runs, args.predictor, float(report["reference"][0]))
    agree = []
    for hi, lo in measured_separated(report):
        agree.append({"measured_better": hi, "than": lo, "predicted_agrees": summ[hi]["hv_mean"] > summ[lo]["hv_mean"],
                      "rescored_agrees": rescored[hi] > rescored[lo]})  # fmt: skip
    result["hv_ranking"], result["rescored_hv"] = agree, rescored
    (RESULTS / f"{name_out}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in allr))
    wrong = [f"{a['measured_better']} > {a['than']}" for a in agree if not a["predicted_agrees"]]
    notes = (
        f"Picks of `{args.tag}` (every searcher x seed, K budget picks per run), each network once per searcher "
        f"and once in 'all'; measured on the {images} images; predicted by {label} (its calibrated "
        "std). #32's targets: MAE <= 1.0 point for every searcher, worst error <= 3 points, 80% intervals cover "
        "70-90%. Predicted HV (the searches' own predictions) ranks the searchers as measured HV does in "
        f"{sum(a['predicted_agrees'] for a in agree)} of the {len(agree)} pairs the measured verdict separates"
        + (f" (not: {', '.join(wrong)})" if wrong else "")
        + f"; the runs' evaluated networks as this predictor predicts them rank them so in "
        f"{sum(a['rescored_agrees'] for a in agree)} (HV per searcher: "
        + ", ".join(f"{k} {v:.5f}" for k, v in sorted(rescored.items(), key=lambda kv: -kv[1]))
        + f"). The picks: results/{name_out}.jsonl. Command: python benchmarks/bench_picks.py "
        f"--storage STORAGE --tag {args.tag} (STORAGE: the journal scripts/head-to-head.sh wrote)."
    )
    write(name_out, result, rows, notes)


if __name__ == "__main__":
    main()
