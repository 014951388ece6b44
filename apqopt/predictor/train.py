"""Train the shipped predictors from measured datasets: fp pretraining, then transfer to quantized data.

Why a module: the same pipeline runs from the CLI (`apqopt predictor train`), from the Fig. 7
benchmark and from tests, and it always evaluates on the held-out quantized set only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apqopt.predictor.estimator import AccuracyPredictor, PredictorError, Variant
from apqopt.predictor.metrics import pairwise_accuracy, ranking_report
from apqopt.supernet.collect import dataset_arrays, load_dataset

PathLike = str | os.PathLike[str]
# what may differ between datasets pooled into one training set: which networks they drew, not how
# each was measured (a pool of 5,000-image and 10,000-image accuracies would mix two yardsticks)
_DRAW_KEYS = ("seed", "draw")


def load_xy(path: PathLike, space: str, bits: bool) -> tuple[np.ndarray, np.ndarray]:
    """Encodings and accuracies of a measured dataset (shards merged)."""
    sp, genes, acc = dataset_arrays(path)
    if sp.name != space:
        raise PredictorError(f"{path} holds space '{sp.name}', expected '{space}'")
    return sp.encode(genes, bits=bits), acc


def dataset_list(paths: PathLike | Sequence[PathLike]) -> list[PathLike]:
    """One dataset or several, as a list."""
    return [paths] if isinstance(paths, str | os.PathLike) else list(paths)


def load_pooled(paths: PathLike | Sequence[PathLike], space: str) -> tuple[np.ndarray, np.ndarray]:
    """Several quantized datasets as one training set: they may draw their networks differently (a
    uniform draw and a cost draw), but must be measured the same way; the first that is not is named."""
    paths = dataset_list(paths)
    if not paths:
        raise PredictorError("no quantized dataset to train on")
    first: dict[str, Any] | None = None
    xs, ys = [], []
    for path in paths:
        config = {k: v for k, v in load_dataset(path)[0]["config"].items() if k not in _DRAW_KEYS}
        if first is None:
            first = config
        elif config != first:
            diff = sorted(k for k in first.keys() | config.keys() if first.get(k) != config.get(k))
            raise PredictorError(f"{path} was measured with other settings than {paths[0]} ({', '.join(diff)})")
        x, y = load_xy(path, space, bits=True)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def train_predictors(
    fp_data: str | os.PathLike[str],
    quant_data: PathLike | Sequence[PathLike],
    heldout_data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    space: str = "fmnist",
    variant: Variant = "branch",
    seed: int = 0,
    members: int = 1,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Fit fp on fp pairs, transfer to quantized pairs, also fit from scratch; report on held-out.
    With ``members > 1`` every predictor is an ensemble and the report also gives each member's
    pairwise accuracy, so the ensemble's gain over a single network is visible. Several quantized
    datasets (``quant_data`` a list) are pooled (:func:`load_pooled`)."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    X_fp, y_fp = load_xy(fp_data, space, bits=False)
    X_q, y_q = load_pooled(quant_data, space)
    X_h, y_h = load_xy(heldout_data, space, bits=True)
    fp = AccuracyPredictor(space, "fp", members=members, seed=seed, progress=progress, device=device).fit(X_fp, y_fp)
    results: dict[str, Any] = {"n_fp": len(y_fp), "n_quant": len(y_q), "n_heldout": len(y_h)}

    def report(pred: AccuracyPredictor) -> dict[str, Any]:
        rep: dict[str, Any] = ranking_report(y_h, pred.predict(X_h))
        if members > 1:
            rep["members_pairwise_accuracy"] = [pairwise_accuracy(y_h, p) for p in pred.predict_members(X_h)]
        return rep

    # the fp predictor applied to quantized candidates (what APQ's search code effectively did)
    results["fp_on_heldout"] = report(fp)
    best = None
    for v in ("branch", "wide"):
        q = AccuracyPredictor.transfer(fp, X_q, y_q, variant=v, seed=seed, progress=progress)  # type: ignore[arg-type]
        results[f"transfer_{v}"] = report(q)
        if v == variant:
            best = q
    scratch = AccuracyPredictor(space, variant, members=members, seed=seed, progress=progress, device=device)
    scratch.fit(X_q, y_q)
    results["scratch"] = report(scratch)
    assert best is not None
    fp.save(out / "fp.pt", metrics={"fp_predictor_on_quantized_heldout": results["fp_on_heldout"]})
    best.save(out / "quant.pt", metrics=results[f"transfer_{variant}"])
    quant = [str(p) for p in dataset_list(quant_data)]
    results["data"] = {"fp": str(fp_data), "quant": quant if len(quant) > 1 else quant[0], "heldout": str(heldout_data)}
    results["settings"] = {"space": space, "variant": variant, "seed": seed, "members": members}
    results["wall_s"] = round(time.perf_counter() - t0, 1)  # the build's last step (bench_supernet reports it)
    (out / "report.json").write_text(json.dumps(results, indent=2) + "\n")  # shipped beside the weights
    return results
