"""Shared benchmark plumbing: machine facts and writing results as JSON + Markdown."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def write(name: str, data: dict[str, Any], table: list[list[Any]], notes: str = "") -> Path:
    """Write results/NAME.json and results/NAME.md (first table row is the header)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# {name}", "", f"Machine: {data['machine']}", ""]
    lines.append("| " + " | ".join(map(str, table[0])) + " |")
    lines.append("|" + "---|" * len(table[0]))
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table[1:]]
    if notes:
        lines += ["", notes]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path


def error_scores(predicted: np.ndarray, measured: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """A predictor's errors on measured networks, in points with SEs, and each network's |error| (for
    paired comparisons between predictors on the same networks)."""
    from apqopt.predictor.metrics import ranking_report

    err = np.asarray(predicted) - np.asarray(measured)
    n = len(err)
    return {
        "n": n,
        "mae_points": 100 * float(np.abs(err).mean()),
        "mae_se": 100 * float(np.abs(err).std(ddof=1) / np.sqrt(n)),
        "bias_points": 100 * float(err.mean()),
        "bias_se": 100 * float(err.std(ddof=1) / np.sqrt(n)),
        "pairwise": float(ranking_report(np.asarray(measured), np.asarray(predicted))["pairwise_accuracy"]),
    }, np.abs(err)


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and SE (points) of a - b over the same networks."""
    d = np.asarray(a) - np.asarray(b)
    return {"mean_points": 100 * float(d.mean()), "se_points": 100 * float(d.std(ddof=1) / np.sqrt(len(d)))}


def score_rows(first: str, scored: dict[str, dict[str, dict]], n_front: int) -> list[list]:
    """Table rows of predictors scored by :func:`error_scores` on the held-out and front networks."""
    rows: list[list] = [[first, "set", "n", "MAE (points) ± SE", "bias", "pairwise"]]
    for name, r in scored.items():
        for where, label in (("heldout", "200 held-out (random)"), ("front", f"{n_front} front networks")):
            s = r[where]
            rows.append(
                [name, label, s["n"], f"{s['mae_points']:.2f} ± {s['mae_se']:.2f}", f"{s['bias_points']:+.2f}",
                 f"{s['pairwise']:.3f}"]
            )  # fmt: skip
    return rows


def warm_fit(pred: Any, base: tuple[np.ndarray, np.ndarray], extra: tuple[np.ndarray, np.ndarray]) -> Any:
    """Fine-tune a loaded predictor as ``apqopt refine`` does: its own data plus the extra records repeated
    10 times, 200 epochs at most, lr 3e-4, seed 0 (warm start)."""
    pred.set_params(max_epochs=200, lr=3e-4, progress=False, seed=0)
    X = np.concatenate([base[0], np.repeat(extra[0], 10, 0)])
    pred.fit(X, np.concatenate([base[1], np.repeat(extra[1], 10)]), True)
    return pred
