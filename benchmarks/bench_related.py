"""HAQ and OHQ against evolution and pymoo NSGA-II on one fixed architecture, verified for real.

For the largest fmnist architecture and a mid-size one, under three latency budgets (25/50/75% of
the way from the architecture's all-4-bit to its all-8-bit latency on the shipped BitFusion table),
each method picks a bit policy on the same restricted Problem (same predictor, table, budget):
HAQ's DDPG agent, OHQ's MQE sensitivity + exact ILP (its solution at the budget), and evolution /
NSGA-II restricted to that architecture's bits (their most accurate predicted feasible policy).
Every chosen policy is then measured for real: quantized on the supernet, fixed fine-tune, val
accuracy (`apqopt.supernet.collect.measure`, the same as the datasets). MQE's time is reported too.

Run: python benchmarks/bench_related.py [--evaluations 200] [--haq-updates 20]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import RESULTS, write

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
CACHE = mqe_cache_dir()  # MQE sensitivities, keyed by architecture, inputs and weights ($APQOPT_HOME)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaluations", type=int, default=200, help="predictor evaluations per method and budget")
    ap.add_argument("--haq-updates", type=int, default=20, help="DDPG updates per HAQ episode")
    args = ap.parse_args()
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
                    measured[key] = measure(net, sp.to_candidates(row[None])[0], cfg, seed=11)
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
