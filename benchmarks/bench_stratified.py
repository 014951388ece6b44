"""Does data drawn evenly over the cost range teach the predictor more than the same amount of uniform
data? (#32 item 2; measured on the supernet.)

Two extra datasets of the same size, measured exactly as the shipped ones (quantized, fine-tuned, 5,000 val
images; `apqopt collect`, resumable):

* ``cost``: ``apqopt collect quant --draw cost --n N --seed 0`` (the corners of the space first, then
  candidates spread from the cheapest network to the dearest);
* ``uniform``: ``apqopt collect quant --n N --seed 11`` (new uniform draws; the shipped sets use seeds 0, 1).

Each arm fine-tunes the shipped quantized predictor (warm start, as ``apqopt refine`` does: the shipped
800 records plus the arm's records repeated 10 times, 200 epochs at most, lr 3e-4, seed 0). Both are scored
on networks neither arm nor the shipped predictor learnt from: the 200 held-out networks (uniform draws) and
the *front* networks of ``benchmarks/results/refine_pick`` (its 48 picks and 14 common networks), each
once, leaving out any an arm learnt from (the cost draw's first corner, the cheapest network, is on the fronts).

Run: python benchmarks/bench_stratified.py [--n 48]   (2 torch threads; measuring ~10 s per network)
Published numbers (2026-12-07): ``--predictor`` the fmnist predictor shipped before that day's rebuild
(``git show a07bf03:apqopt/assets/fmnist/predictor/quant.pt``, and its ``.json``); the rebuilt one learnt
these networks, so against it this measures nothing new.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, error_scores, paired, score_rows, warm_fit, write

from apqopt.predictor import AccuracyPredictor
from apqopt.predictor.train import load_xy
from apqopt.shipped import asset_dir, predictor_path
from apqopt.space import get_space

OUT = RESULTS / "stratified"
SP = get_space("fmnist")
ARMS = {"cost": ["--draw", "cost", "--seed", "0"], "uniform": ["--seed", "11"]}


def collect(n: int) -> None:
    for arm, extra in ARMS.items():
        out = OUT / f"quant_{arm}.jsonl"
        cmd = [sys.executable, "-m", "apqopt", "collect", "quant", "--n", str(n), *extra, "--out", str(out)]
        subprocess.run([*cmd, "--threads", "2", "--quiet"], check=True)


def key(genes: list[int] | np.ndarray) -> bytes:
    return SP.canonical(np.asarray(genes)[None])[0].tobytes()


def front_set(learnt: set[bytes]) -> tuple[np.ndarray, np.ndarray, int]:
    """The front networks, each once, those an arm learnt from left out (the cost draw's first corner is
    the space's cheapest network, which the searches' fronts also hold); and how many were left out."""
    rows = []
    for path in sorted((RESULTS / "refine_pick").glob("*/refine.jsonl")):
        rows += [json.loads(x) for x in path.read_text().splitlines()[1:]]
    rows += [json.loads(x) for x in (RESULTS / "refine_pick" / "common.jsonl").read_text().splitlines()]
    seen: set[bytes] = set()
    kept = []
    for r in rows:
        k = key(r["genes"])
        if k not in seen and k not in learnt:
            kept.append(r)
        seen.add(k)
    X = SP.encode(np.array([r["genes"] for r in kept]), bits=True)
    return X, np.array([r["accuracy"] for r in kept]), len(seen) - len(kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=48, help="networks per extra dataset")
    ap.add_argument("--predictor", type=Path, default=predictor_path("fmnist"), help="the one fine-tuned")
    args = ap.parse_args()
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    collect(args.n)
    X_base, y_base = load_xy(asset_dir("fmnist") / "quant.jsonl", "fmnist", bits=True)
    result: dict = {"arms": {}, "paired": {}, "n_extra": args.n}
    Xh, yh = load_xy(asset_dir("fmnist") / "quant_heldout.jsonl", "fmnist", bits=True)
    learnt = set()
    for arm in ARMS:
        learnt |= {key(r["genes"]) for r in map(json.loads, (OUT / f"quant_{arm}.jsonl").read_text().splitlines()[1:])}
    Xf, yf, left_out = front_set(learnt)
    result["front_left_out"] = left_out
    errors: dict = {}
    shipped = AccuracyPredictor.load(args.predictor)
    for name in ("shipped", *ARMS):
        pred = AccuracyPredictor.load(args.predictor)
        if name != "shipped":
            X, y = load_xy(OUT / f"quant_{name}.jsonl", "fmnist", bits=True)
            warm_fit(pred, (X_base, y_base), (X, y))
            result["arms"][name] = {"extra_extrapolated": float(shipped.extrapolation(SP.decode(X)).mean())}
        held, e_h = error_scores(pred.predict(Xh), yh)
        front, e_f = error_scores(pred.predict(Xf), yf)
        result["arms"].setdefault(name, {}).update(heldout=held, front=front)
        errors[name] = {"heldout": e_h, "front": e_f}
    for where in ("heldout", "front"):
        result["paired"][where] = paired(errors["cost"][where], errors["uniform"][where])
    rows = score_rows("predictor", result["arms"], len(yf))
    p = result["paired"]
    notes = (
        f"Extra data per arm: {args.n} measured networks. Front networks: the {len(yf)} distinct picks of "
        f"refine_pick that no arm learnt ({left_out} left out). Paired |error| difference, cost minus uniform "
        f"(negative: the cost draw taught more): held-out {p['heldout']['mean_points']:+.2f} ± "
        f"{p['heldout']['se_points']:.2f} points, front {p['front']['mean_points']:+.2f} ± "
        f"{p['front']['se_points']:.2f} points. Command: python benchmarks/bench_stratified.py --n {args.n} "
        "(2 torch threads)."
    )
    write("stratified", {**result, "torch_threads": 2}, rows, notes)


if __name__ == "__main__":
    main()
