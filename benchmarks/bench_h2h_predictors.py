"""What searching with another predictor finds: one comparison run twice, once per predictor.

``bench_picks --predictor`` rescores the networks searches picked with the original predictor; this reads two
whole ``compare --verify-top K --verify-images test`` runs (``scripts/head-to-head.sh``: ``fmnist-1000-test``
searched with the original predictor, ``fmnist-1000-rebuilt`` with the shipped one) and sets, per searcher,
what their picks *measured* side by side: hypervolume under one common reference point (each compare takes
its reference from its own predictor, so their tables' hypervolumes do not compare), the best measured
accuracy under each latency budget, and the difference with its standard error (the runs of the two
comparisons are independent: Welch). Then, within each comparison, whether its predicted hypervolume ranks
the searchers as the measured one does wherever the measured verdict separates two of them.

Run: python benchmarks/bench_h2h_predictors.py \
         --before /tmp/h2h/compare_fmnist_1000_test.log:compare_fmnist_1000_test \
         --after /tmp/h2h/compare_fmnist_1000_test_rebuilt.log:compare_fmnist_1000_test_rebuilt
(STORAGE:TAG; the tag names the comparison's results folder under benchmarks/results/.)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

import numpy as np
import optuna
from _common import RESULTS, measured_separated, write

from apqopt.compare import hypervolume, measured_best_under
from apqopt.evaluation import Evaluation
from apqopt.record import study_record
from apqopt.studies import open_storage


def measured_runs(storage: str, tag: str) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per searcher, each run's measured picks: (accuracy, stderr, latency), from the studies' attrs."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)
    for summary in optuna.get_all_study_summaries(open_storage(storage, create=False)):
        rec = study_record(summary)
        if rec.compare_tag != tag or not rec.verified:
            continue
        if rec.verify_images != "test":
            raise SystemExit(f"{summary.study_name}: picks measured on {rec.verify_images!r}, not the test images")
        v = [rec.verified[k] for k in sorted(rec.verified)]
        out[str(rec.searcher)].append(
            (
                np.array([x.measured_accuracy for x in v]),
                np.array([x.stderr for x in v]),
                np.array([x.latency_ms for x in v]),
            )
        )
    return out


def hv_common(runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], ref: tuple[float, float]) -> np.ndarray:
    """Each run's measured hypervolume under ``ref``."""
    hv = []
    for acc, _, lat in runs:
        ev = Evaluation(np.zeros((len(acc), 1), np.int64), acc, lat, np.zeros_like(lat), np.zeros_like(lat))
        hv.append(hypervolume(ev, ref))
    return np.array(hv)


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def difference(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """after - before with the SE of a difference of two independent means (NaN where a side has one run:
    its spread is unknown, not zero)."""
    (b, b_se), (a, a_se) = mean_se(before), mean_se(after)
    return a - b, float(np.hypot(a_se, b_se))


def ranking_agreement(report: dict[str, Any]) -> tuple[int, int]:
    """(agreeing, separated): measured-separated pairs whose predicted hypervolumes are in the same order."""
    summ, pairs = report["summary"], measured_separated(report)
    return sum(summ[hi]["hv_mean"] > summ[lo]["hv_mean"] for hi, lo in pairs), len(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="STORAGE:TAG of the comparison searched with the old predictor")
    ap.add_argument("--after", required=True, help="STORAGE:TAG of the same comparison with the new predictor")
    ap.add_argument("--name", default="h2h_predictors")
    args = ap.parse_args()
    sides = {}
    for side in ("before", "after"):
        storage, tag = getattr(args, side).rsplit(":", 1)
        report = json.loads((RESULTS / tag / "compare.json").read_text())
        sides[side] = {"tag": tag, "report": report, "runs": measured_runs(storage, tag)}
    before, after = sides["before"]["report"], sides["after"]["report"]
    if (before["budget"], before["latency_budgets"]) != (after["budget"], after["latency_budgets"]):
        raise SystemExit("the two comparisons differ in budget or latency budgets: not the same comparison")
    budgets = [float(b) for b in before["latency_budgets"]]
    # the more inclusive of the two references: every point either comparison scored counts here too
    ref = (float(before["reference"][0]), max(float(before["reference"][1]), float(after["reference"][1])))
    rows, table = {}, [["searcher", "measured HV before", "after", "after - before"]]
    table[0] += [f"best ≤{b:g} ms before → after (Δ ± SE)" for b in budgets]
    for name in sorted(sides["after"]["runs"], key=lambda n: -after["summary"][n]["measured_hv_mean"]):
        row: dict[str, Any] = {}
        hv = {s: hv_common(sides[s]["runs"][name], ref) for s in ("before", "after")}
        for s in ("before", "after"):
            row[f"hv_{s}"] = mean_se(hv[s])
        row["hv_diff"] = diff, se = difference(hv["before"], hv["after"])
        cells = [name, *(f"{row[f'hv_{s}'][0]:.5f} ± {row[f'hv_{s}'][1]:.5f}" for s in hv), f"{diff:+.5f} ± {se:.5f}"]
        for b in budgets:
            best = {}
            for s in ("before", "after"):
                per_run = [measured_best_under(a, e, lat, [b])[f"{b:g}"] for a, e, lat in sides[s]["runs"][name]]
                best[s] = np.array([x[0] for x in per_run if x is not None])
            row[f"best@{b:g}"] = {s: best[s].tolist() for s in best}
            if len(best["before"]) and len(best["after"]):
                d, dse = (100 * x for x in difference(best["before"], best["after"]))
                row[f"best@{b:g}"]["difference_points"] = (d, dse)
                cells.append(
                    f"{100 * best['before'].mean():.2f} ({len(best['before'])}) → "
                    f"{100 * best['after'].mean():.2f} ({len(best['after'])}) ({d:+.2f} ± {dse:.2f})"
                )
            else:
                cells.append(f"({len(best['before'])} runs) → ({len(best['after'])} runs)")
        rows[name] = row
        table.append(cells)
    agreement = {s: ranking_agreement(sides[s]["report"]) for s in sides}
    notes = (
        f"Picks measured on the 10,000 test images. Hypervolume reference (latency, -accuracy) = {ref} for both; "
        "Δ: after - before, ± the SE of a difference of two independent means (runs counted in parentheses: "
        "those with a measured pick under the budget).\n\n"
        + "\n".join(
            f"{s} ({sides[s]['tag']}): predicted hypervolume orders {a} of the {n} measured-separated pairs as measured"
            for s, (a, n) in agreement.items()
        )
    )
    write(
        args.name,
        {
            "before": sides["before"]["tag"],
            "after": sides["after"]["tag"],
            "reference": ref,
            "searchers": rows,
            "ranking_agreement": {s: list(v) for s, v in agreement.items()},
        },
        table,
        notes,
    )


if __name__ == "__main__":
    main()
