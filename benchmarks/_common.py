"""Shared benchmark plumbing: machine facts and writing results as JSON + Markdown."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
MEASURE_SEED = 11  # fine-tune seed of every pick bench_related and bench_table2 measure: one network, one number


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


def read_own_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a rows file that only this process appends to: a torn last line (a kill
    mid-write) is cut off, so the next append starts on a line of its own. A file that several
    processes append to must not be cut (the tail may be another's write in flight)."""
    from apqopt.supernet.collect import cut_torn_line

    if not path.exists():
        return []
    text = path.read_bytes()
    good = text.rfind(b"\n") + 1
    cut_torn_line(path, good)
    return [json.loads(line) for line in text[:good].decode().splitlines()]


def measure_on_test(
    picks: Iterable[Sequence[int]], out: Path, threads: int, skip: Iterable[Sequence[int]] = ()
) -> None:
    """Each distinct pick (genes) measured once more on the fmnist test images, one line per network in
    ``out`` as it finishes (resumable: networks already in ``out`` or in ``skip`` are not measured again)."""
    from tqdm import tqdm

    from apqopt import get_space
    from apqopt.shipped import supernet_path
    from apqopt.supernet.collect import append_record, measure
    from apqopt.supernet.data import accuracy_stderr
    from apqopt.supernet.train import load_supernet
    from apqopt.verify import measure_config

    done = {tuple(r["genes"]) for r in read_own_lines(out)} | {tuple(g) for g in skip}
    todo = [g for g in dict.fromkeys(tuple(g) for g in picks) if g not in done]
    if not todo:
        return
    sp, net, cfg = get_space("fmnist"), load_supernet(supernet_path("fmnist")), measure_config("fmnist", "test")
    with out.open("a") as fh:
        for genes in tqdm(todo, desc="picks on test images"):
            t0 = time.perf_counter()
            acc = measure(net, sp.to_candidates(np.array(genes)[None])[0], cfg, seed=MEASURE_SEED)
            rec = {"genes": list(genes), "test": acc, "stderr": accuracy_stderr(acc, cfg.eval_images)}
            append_record(fh, {**rec, "measure_s": round(time.perf_counter() - t0, 1), "threads": threads})


def measured_separated(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(better, worse) for each pair of searchers a compare report's measured verdicts separate: where a
    predictor's hypervolume ranking is checked against measurement."""
    out = []
    for v in report["verdicts"]:
        if v["separable"] and v["metric"] == "measured HV":
            out.append((v["a"], v["b"]) if v["mean_diff"] > 0 else (v["b"], v["a"]))
    return out
