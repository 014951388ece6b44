"""HAQ and OHQ against evolution and pymoo NSGA-II on one fixed architecture, verified for real.

For the largest fmnist architecture and a mid-size one, under three latency budgets (25/50/75% of
the way from the architecture's all-4-bit to its all-8-bit latency on the shipped BitFusion table),
each method picks a bit policy on the same restricted Problem (same predictor, table, budget):
HAQ's DDPG agent, OHQ's MQE sensitivity + exact ILP (its solution at the budget), and evolution /
NSGA-II restricted to that architecture's bits (their most accurate predicted feasible policy).
Every chosen policy is then measured for real: quantized on the supernet, fixed fine-tune, val
accuracy (`apqopt.supernet.collect.measure`, the same as the datasets). MQE's time is reported too.

Scored again on images nothing chose with (#32): ``--test-images`` measures every distinct pick once more on
the 10,000 test images (same fine-tune seed; resumable, one line per network in ``related_methods.test.jsonl``)
and writes ``related_methods_test``: each cell on test with the predictor's mean ± calibrated std, OHQ against
each other method at 95%, and the predictor's errors on these good policies.

Run: python benchmarks/bench_related.py [--evaluations 200] [--haq-updates 20]
     python benchmarks/bench_related.py --test-images [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import MEASURE_SEED, RESULTS, error_scores, measure_on_test, read_own_lines, write

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.predictor import AccuracyPredictor
from apqopt.search import make_searcher
from apqopt.search.problem import Problem
from apqopt.settings import mqe_cache_dir
from apqopt.shipped import predictor_path, supernet_path
from apqopt.supernet.collect import CollectConfig, measure
from apqopt.supernet.evaluate import bn_slice, reestimate_bn
from apqopt.supernet.mqe import mqe_sensitivity, synthetic_inputs
from apqopt.supernet.train import load_supernet

METHODS = ("haq", "ohq", "evolution", "pymoo-nsga2")
ROWS = RESULTS / "related_methods.rows.jsonl"  # one line per finished (architecture, budget, method): resumable
TEST_ROWS = RESULTS / "related_methods.test.jsonl"  # the picks measured again on the test images
# A measurement's own fine-tune noise beside the images' binomial one (sd, as a fraction), measured by
# benchmarks/bench_heldout_images.py (benchmarks/results/heldout_images.md): counted in every SE below.
FINE_TUNE_SD = 0.0033
CACHE = mqe_cache_dir()  # MQE sensitivities, keyed by architecture, inputs and weights ($APQOPT_HOME)


def test_report() -> None:
    """The picks on the test images: cells, OHQ against each method at 95%, the predictor's errors there."""
    rows, on_test = read_own_lines(ROWS), {tuple(r["genes"]): r for r in read_own_lines(TEST_ROWS)}
    rows = [r for r in rows if tuple(r["genes"]) in on_test]
    pred = AccuracyPredictor.load(predictor_path("fmnist"), space="fmnist")
    genes = np.array([r["genes"] for r in rows])
    mean, std = pred.predict_genes(genes, return_std=True)
    test = np.array([on_test[tuple(r["genes"])]["test"] for r in rows])
    se = np.array([on_test[tuple(r["genes"])]["stderr"] for r in rows])
    table = [["architecture", "budget (ms)", *METHODS]]
    cells: dict[tuple[str, float], dict[str, int]] = {}
    for i, r in enumerate(rows):
        cells.setdefault((r["architecture"], r["budget_ms"]), {})[r["method"]] = i
    versus = []
    for (arch, budget), by in cells.items():
        line = [arch, f"{budget:.3f}"]
        for m in METHODS:
            i = by.get(m)
            line.append("" if i is None else f"{100 * test[i]:.2f} (pred {100 * mean[i]:.1f} ± {100 * std[i]:.1f})")
        table.append(line)
        if "ohq" in by:
            o = by["ohq"]
            for m in (x for x in METHODS if x != "ohq" and x in by):
                i = by[m]
                if rows[i]["genes"] == rows[o]["genes"]:
                    versus.append({"cell": f"{arch} {budget:.3f}", "other": m, "verdict": "same network"})
                    continue
                diff, s = test[o] - test[i], float(np.sqrt(se[o] ** 2 + se[i] ** 2 + 2 * FINE_TUNE_SD**2))
                word = "not separable" if abs(diff) <= 1.96 * s else ("ohq ahead" if diff > 0 else "ohq behind")
                versus.append(
                    {"cell": f"{arch} {budget:.3f}", "other": m, "diff": float(diff), "se": s, "verdict": word}
                )
    distinct = dict.fromkeys(tuple(g) for g in genes)
    first = [list(map(tuple, genes)).index(g) for g in distinct]
    scores, _ = error_scores(mean[first], test[first])
    cover = float(np.mean(np.abs(mean[first] - test[first]) <= 1.2816 * std[first]))
    ohq = [i for i in first if rows[i]["method"] == "ohq"]
    ohq_scores, _ = error_scores(mean[ohq], test[ohq])
    counts = {w: sum(v["verdict"] == w for v in versus) for w in ("ohq ahead", "not separable", "ohq behind")}
    notes = (
        "Cell: accuracy % on the 10,000 test images (SE ≈ 0.3 points binomial; a measurement also carries ~0.33 "
        "points of fine-tune noise) of the pick `python benchmarks/bench_related.py` made and measured on the val "
        "images, measured again with the same fine-tune seed (`--test-images`); in brackets the shipped "
        "predictor's mean ± calibrated std. OHQ against each other method in the same cell, separated only beyond "
        "1.96 SEs of the difference (binomial and fine-tune noise of both): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f". The predictor on the {len(first)} distinct picks: MAE {scores['mae_points']:.2f} ± "
        f"{scores['mae_se']:.2f} points, bias {scores['bias_points']:+.2f} ± {scores['bias_se']:.2f}, pairwise "
        f"{scores['pairwise']:.3f}, 80% intervals cover {cover:.2f}; on OHQ's {len(ohq)} picks bias "
        f"{ohq_scores['bias_points']:+.2f} ± {ohq_scores['bias_se']:.2f}."
    )
    out = [
        {**r, "test": float(test[i]), "test_stderr": float(se[i]), "predicted_mean": float(mean[i]),
         "predicted_std": float(std[i])} for i, r in enumerate(rows)
    ]  # fmt: skip
    data = {"rows": out, "ohq_against_each": versus, "predictor": scores, "predictor_on_ohq": ohq_scores,
            "coverage80": cover}  # fmt: skip
    write("related_methods_test", data, table, notes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaluations", type=int, default=200, help="predictor evaluations per method and budget")
    ap.add_argument("--haq-updates", type=int, default=20, help="DDPG updates per HAQ episode")
    ap.add_argument("--test-images", action="store_true", help="measure every pick again on the test images")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (--test-images)")
    args = ap.parse_args()
    if args.test_images:
        torch.set_num_threads(args.threads)
        measure_on_test((r["genes"] for r in read_own_lines(ROWS)), TEST_ROWS, args.threads)
        test_report()
        return
    sp = get_space("fmnist")
    lut = load_shipped("fmnist")
    pred = AccuracyPredictor.load(predictor_path("fmnist"), space="fmnist")
    net = load_supernet(supernet_path("fmnist"))
    cfg = CollectConfig(kind="quant", space="fmnist")
    archs = {"largest": sp.uniform(), "mid": sp.uniform((3, 3, 3, 3, 3), kernel=5, middle=1)}
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.exists() else []
    done = {(r["architecture"], r["budget_ms"], r["method"]): r for r in rows}
    measured: dict[tuple[int, ...], float] = {tuple(r["genes"]): r["measured"] for r in rows if "genes" in r}
    table, mqe_s = [["architecture", "budget (ms)", *METHODS]], {}
    for label, arch in archs.items():
        sub = net.extract(arch)
        reestimate_bn(sub, bn_slice())
        t0 = time.perf_counter()
        sens = mqe_sensitivity(sub, synthetic_inputs(64, sp.input_size, sp.image_channels, 0), cache_dir=CACHE)
        mqe_s[label] = time.perf_counter() - t0
        base = Problem(sp, pred.predict_genes, lut).restricted_to(arch)
        # the architecture's cheapest (all 4-bit) and dearest (all 8-bit) policy: bit genes are the free ones
        lo, hi = (float(base.cost(np.full((1, sp.n_genes), k))[0][0]) for k in (0, len(sp.bits) - 1))
        for frac in (0.25, 0.5, 0.75):
            limit = round(lo + (hi - lo) * frac, 4)
            p = Problem(sp, pred.predict_genes, lut, constraints={"latency": limit})
            cells = [label, f"{limit:.3f}"]
            for name in METHODS:
                if (label, limit, name) in done:
                    rec = done[(label, limit, name)]
                    cells.append(f"{rec['measured']:.4f} (pred {rec['predicted']:.4f}, {rec['latency_ms']:.3f} ms)")
                    continue
                params = {"sensitivity": sens} if name == "ohq" else {}
                if name == "haq":  # HAQ updates once per decision (~80 per episode); bounded to keep this run short
                    params = {"updates_per_episode": args.haq_updates}
                res = make_searcher(name, seed=0, **params).run(p.restricted_to(arch), args.evaluations)
                ev = res.evaluated
                i = len(ev) - 1 if name == "ohq" else res.best()  # OHQ's answer: the ILP at the budget
                if i < 0 or not ev.feasible[i]:
                    print(f"{label} {limit} {name}: no feasible policy in {len(ev)} evaluations", flush=True)
                    cells.append("no feasible policy")
                    continue
                row = ev.genes[i]
                key = tuple(int(v) for v in row)
                if key not in measured:
                    measured[key] = measure(net, sp.to_candidates(row[None])[0], cfg, seed=MEASURE_SEED)
                rec = {
                    "architecture": label,
                    "budget_ms": limit,
                    "method": name,
                    "latency_ms": float(ev.latency[i]),
                    "feasible": bool(ev.feasible[i]),
                    "predicted": float(ev.accuracy[i]),
                    "measured": measured[key],
                    "evaluations": len(ev),
                    "wall_s": round(res.wall_s, 2),
                    "genes": list(key),
                }
                rows.append(rec)
                ROWS.parent.mkdir(parents=True, exist_ok=True)
                with ROWS.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(rec, flush=True)
                cells.append(f"{rec['measured']:.4f} (pred {rec['predicted']:.4f}, {rec['latency_ms']:.3f} ms)")
            table.append(cells)
    notes = (
        f"Measured = val accuracy (5,000 images, SE ~0.5 points) after quantizing the supernet's subnet under the "
        f"policy and the fixed 40-step fine-tune. {args.evaluations} predictor evaluations per method and budget "
        f"(HAQ: episodes, {args.haq_updates} DDPG updates each). MQE (64 synthetic images, every operator x bit pair): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in mqe_s.items())
        + ". Predictor: the shipped one (see README for its held-out metrics)."
    )
    write("related_methods", {"rows": rows, "mqe_seconds": mqe_s, "evaluations": args.evaluations}, table, notes)


if __name__ == "__main__":
    main()
