"""Does refining on the networks the ensemble is least sure of teach the predictor more than refining on
networks spread evenly along the front? (#32 item 3; measured on the supernet, not predicted.)

Two arms of `apqopt refine` on the shipped fmnist assets, the same settings (3 rounds of evolution,
budget 1,000, latency <= 0.5 ms, 8 networks measured per round, seed 0), differing only in ``--pick``:

* ``spread``: evenly by latency (what refine did before ``--pick``);
* ``uncertainty``: per stretch of the front, the network the calibrated ensemble is least sure of;

both run here, side by side (one torch thread each), into ``benchmarks/results/refine_pick/ARM`` (resumable).

Each arm's final predictor (round 3) and the shipped one are then scored on networks neither arm measured:

* the 200 shipped held-out networks (random draws from the space);
* a common set of *front* networks: evolution searches (seed 7) under each arm's final predictor and under
  the shipped one, 6 budget picks each (``budget_picks``), those already measured by either arm left out,
  measured here exactly as refine measures (quantized, fine-tuned, 5,000 val images), appended to
  ``refine_pick/common.jsonl`` (resumable).

Reported: MAE and bias (points) and pairwise ranking, with SEs; the paired difference of absolute errors
between the arms on the same networks (mean ± SE).

Run: python benchmarks/bench_refine_pick.py   (1 torch thread per arm, then 2; ~15 minutes on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, error_scores, paired, write

from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.train import load_xy
from apqopt.problem_spec import load_problem
from apqopt.search import make_searcher
from apqopt.search.pareto import budget_picks
from apqopt.shipped import asset_dir, predictor_path, supernet_path
from apqopt.space import get_space

OUT = RESULTS / "refine_pick"
ARGS = ["--rounds", "3", "--per-round", "8", "--budget", "1000", "--latency", "0.5", "--seed", "0"]
SP = get_space("fmnist")


def records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [r for r in rows if r.get("type") != "header"]


def key(genes: list[int] | np.ndarray) -> bytes:
    return SP.canonical(np.asarray(genes)[None])[0].tobytes()


def run_arms() -> None:
    """Both arms at once, one torch thread each (2 cores); each resumes where it stopped."""
    procs = []
    for arm in ("spread", "uncertainty"):
        cmd = [sys.executable, "-m", "apqopt", "refine", *ARGS, "--pick", arm, "--out", str(OUT / arm)]
        cmd += ["--storage", str(OUT / f"{arm}.log"), "--threads", "1", "--quiet"]
        procs.append(subprocess.Popen(cmd))
    if any(p.wait() for p in procs):
        raise SystemExit("a refine arm failed")


def common_set(predictors: dict[str, Path], known: set[bytes]) -> list[dict]:
    """Front networks of searches under each predictor, measured once each (resumable)."""
    from apqopt.supernet.collect import CollectConfig, measure
    from apqopt.supernet.data import accuracy_stderr, load_split
    from apqopt.supernet.quant import FinetuneConfig
    from apqopt.supernet.train import load_supernet

    path = OUT / "common.jsonl"
    done = {key(r["genes"]): r for r in records(path)}
    want: list[np.ndarray] = []
    for pred in predictors.values():
        problem = load_problem("fmnist", latency=0.5, predictor=pred)
        ev = make_searcher("evolution", seed=7).run(problem, 1000).evaluated
        for row in budget_picks(ev.accuracy, ev.latency, ev.feasible, 6):
            k = key(ev.genes[row])
            if k not in known and k not in {key(g) for g in want}:
                want.append(ev.genes[row])
    cfg = CollectConfig(kind="quant", space="fmnist", eval_images=5000, finetune=FinetuneConfig(steps=40))
    net = load_supernet(supernet_path("fmnist"))
    split = load_split(cfg.split, net.data, "fmnist").subset(cfg.eval_images)
    with path.open("a") as fh:
        for i, genes in enumerate(want):
            if key(genes) in done:
                continue
            cand = SP.to_candidates(genes[None])[0]
            acc = measure(net, cand, cfg, seed=900_000 + i, split=split)
            rec = {"genes": genes.tolist(), "accuracy": acc, "stderr": accuracy_stderr(acc, len(split))}
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            done[key(genes)] = rec
            print(f"common {len(done)}/{len(want)}: {100 * acc:.2f}%", flush=True)
    return [done[key(g)] for g in want]


def main() -> None:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    run_arms()
    arms = {"shipped": predictor_path("fmnist")}
    arms.update({arm: OUT / arm / "round-3" / "predictor.pt" for arm in ("spread", "uncertainty")})
    known = {key(r["genes"]) for arm in ("spread", "uncertainty") for r in records(OUT / arm / "refine.jsonl")}
    common = common_set(arms, known)
    Xc = SP.encode(np.array([r["genes"] for r in common]), bits=True)
    yc = np.array([r["accuracy"] for r in common])
    Xh, yh = load_xy(asset_dir("fmnist") / "quant_heldout.jsonl", "fmnist", bits=True)
    result: dict = {"arms": {}, "paired": {}}
    errors: dict = {}
    for name, path in arms.items():
        pred = AccuracyPredictor.load(path, space="fmnist")
        held, e_h = error_scores(pred.predict(Xh), yh)
        front, e_c = error_scores(pred.predict(Xc), yc)
        result["arms"][name] = {"heldout": held, "front": front}
        errors[name] = {"heldout": e_h, "front": e_c}
    for where in ("heldout", "front"):
        result["paired"][where] = paired(errors["uncertainty"][where], errors["spread"][where])
    rows = [["predictor", "set", "n", "MAE (points) ± SE", "bias ± SE", "pairwise"]]
    for name, r in result["arms"].items():
        for where, label in (("heldout", "200 held-out (random)"), ("front", "common front picks")):
            s = r[where]
            rows.append(
                [
                    name,
                    label,
                    s["n"],
                    f"{s['mae_points']:.2f} ± {s['mae_se']:.2f}",
                    f"{s['bias_points']:+.2f} ± {s['bias_se']:.2f}",
                    f"{s['pairwise']:.3f}",
                ]
            )
    p = result["paired"]
    notes = (
        "Paired |error| difference, uncertainty minus spread (negative: uncertainty picks taught more): "
        f"held-out {p['heldout']['mean_points']:+.2f} ± {p['heldout']['se_points']:.2f} points, "
        f"common front {p['front']['mean_points']:+.2f} ± {p['front']['se_points']:.2f} points. "
        "Command: python benchmarks/bench_refine_pick.py (2 torch threads)."
    )
    write("refine_pick", {**result, "common_networks": len(common), "torch_threads": 2}, rows, notes)


if __name__ == "__main__":
    main()
