"""The closed loop (``apqopt refine``): search, measure where the search went, teach the predictor, again.

Why: the shipped predictor learnt from random policies, but a search goes where accuracy is high and
cost low -- where the predictor has seen least -- and there it errs most (it underestimates measured
fronts by points). Each round here

1. searches with the current predictor (recorded as a study ``PREFIX-round-R``);
2. picks K networks along that search's front that no earlier round measured (spread by latency);
3. measures them on the supernet with the same ``measure()`` the datasets use, appending each to
   ``OUT/refine.jsonl`` as it finishes (a dataset file: a kill loses at most the network in hand);
4. reports the predictor's error on them *before* it learns them (the honest, on-search error);
5. fine-tunes the predictor from the current one on the base quantized dataset plus every refinement
   record (repeated, so that a few dozen points weigh against hundreds) and writes
   ``OUT/round-R/predictor.pt`` and ``OUT/round-R/report.json``.

A rerun resumes: finished rounds are read back, a round's search is repeated (it is seeded, and its
predictor is the previous round's file, so it picks the same networks) and only networks not yet in
``refine.jsonl`` are measured. A round whose predictor file is missing is redone from its records
(so ``refine.jsonl`` and the reports are enough to rebuild every predictor).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from apqopt.errors import ConfigError
from apqopt.fileio import atomic_write
from apqopt.space import carried, get_space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineConfig:
    """What decides a refinement run (stored in its dataset header; a resume must match it)."""

    space: str = "fmnist"
    latency: float = 0.5
    searcher: str = "evolution"
    budget: int = 1000
    rounds: int = 3
    per_round: int = 8
    seed: int = 0
    eval_images: int = 5000
    repeat: int = 10  # each refinement record counts this many times in a fine-tune
    epochs: int = 200  # fine-tune epochs at most (early stopping as in any fit)
    lr: float = 3e-4
    finetune_steps: int = 40  # of each quantized measurement (the datasets' 40; fewer only for smoke tests)
    pick: str = "uncertainty"  # along the front: where the ensemble is least sure ("spread": evenly by latency)

    def __post_init__(self) -> None:
        if self.pick not in PICKS:
            raise ConfigError(f"refine: pick must be one of {list(PICKS)}, got {self.pick!r}")
        for name in ("budget", "rounds", "per_round", "eval_images", "repeat", "epochs", "finetune_steps"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ConfigError(f"refine: {name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.latency > 0:
            raise ConfigError(f"refine: latency must be > 0, got {self.latency!r}")


PICKS = ("uncertainty", "spread")


def _pick(
    ev: Any, objectives: tuple[str, ...], known: set[bytes], k: int, space: Any, std: np.ndarray | None = None
) -> np.ndarray:
    """Up to k rows of a search's front not measured before. Without ``std``: spread evenly by latency.
    With ``std`` (the predictor's calibrated spread per row of ``ev``): the front, by latency, cut into k
    runs of neighbours, and from each the row the predictor is least sure of -- a measurement teaches
    most where the predictor is unsure, and every part of the front still gets one. When the front holds
    fewer than k, the most accurate feasible rows after it."""
    from apqopt.studies import front_rows

    def new(rows: np.ndarray) -> list[int]:
        return [int(r) for r in rows if _key(space, ev.genes[r]) not in known]

    front = new(front_rows(ev, objectives))
    front.sort(key=lambda r: float(ev.latency[r]))
    if len(front) > k and std is not None:
        front = [int(run[np.argmax(std[run])]) for run in np.array_split(np.array(front), k)]
    elif len(front) > k:
        front = [front[i] for i in np.linspace(0, len(front) - 1, k).round().astype(int)]
    if len(front) < k:
        order = np.argsort(-np.where(ev.feasible, ev.accuracy, -np.inf))
        rest = [r for r in new(order[ev.feasible[order]]) if r not in front]
        front += rest[: k - len(front)]
    return np.array(front[:k], dtype=np.int64)


def _spread(predictor: Path, genes: np.ndarray, space: str) -> np.ndarray | None:
    """The predictor's calibrated spread on each row, or None for a single network (no spread: picks fall
    back to evenly by latency)."""
    from apqopt.predictor import AccuracyPredictor

    pred = AccuracyPredictor.load(predictor, space=space)
    if pred.members < 2:
        return None
    return np.asarray(pred.predict_genes(genes, return_std=True)[1])


def _key(space: Any, genes: np.ndarray) -> bytes:
    """A network's identity (dormant genes ignored), as searches use it."""
    return space.canonical(np.asarray(genes)[None])[0].tobytes()


def _read(path: Path, header: dict[str, Any]) -> list[dict[str, Any]]:
    from apqopt.supernet.collect import DatasetFileError, append_record, cut_torn_line, resumed_records

    other = "was written by a refinement with other settings; use another --out"
    try:
        headed, recs, good = resumed_records(path, header["config"], other)
    except DatasetFileError:
        if header["config"]["refine"].get("pick") != "spread":
            raise
        # a refinement made before picks existed has no "pick": it picked by spread, so it is this one
        legacy = {k: v for k, v in header["config"]["refine"].items() if k != "pick"}
        headed, recs, good = resumed_records(path, {**header["config"], "refine": legacy}, other)
    cut_torn_line(path, good)
    if not headed:
        with path.open("a") as fh:
            append_record(fh, header)
    return recs


def refine(
    cfg: RefineConfig,
    out_dir: str | Path,
    supernet: Any,
    predictor: str | Path | None = None,
    base_data: str | Path | None = None,
    storage: str | None = None,
    study_prefix: str = "refine",
    progress: bool = True,
    supernet_id: str = "",
) -> dict[str, Any]:
    """Run (or resume) ``cfg.rounds`` rounds; returns the report (also ``OUT/report.json`` and ``.md``).

    ``predictor``: where round 1 starts (default: the space's shipped quantized predictor);
    ``base_data``: the quantized dataset it was trained on (default: the space's shipped ones, pooled);
    ``supernet_id``: which weights measure (``weights_identity`` of the file; stored, and checked on resume)."""
    from apqopt.predictor import AccuracyPredictor
    from apqopt.predictor.metrics import pairwise_accuracy
    from apqopt.predictor.train import load_pooled
    from apqopt.problem_spec import load_problem
    from apqopt.search import make_searcher
    from apqopt.shipped import predictor_path, quant_training_paths
    from apqopt.studies import check_study_name, open_storage, record, run_settings, settings_digest
    from apqopt.supernet.collect import CollectConfig, append_record, measure
    from apqopt.supernet.data import accuracy_stderr, load_split
    from apqopt.supernet.quant import FinetuneConfig

    space = get_space(cfg.space)
    if supernet.space.name != space.name:
        raise ConfigError(f"refine: the supernet is for space '{supernet.space.name}', not '{space.name}'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"refine: --out {out} is a file; refine writes a folder (its rounds and report)")
    start = Path(predictor) if predictor else predictor_path(space.name)
    label = str(start) if predictor else f"shipped {space.name} quant.pt"  # a shipped file moves with the package
    base = [Path(base_data)] if base_data else quant_training_paths(space.name)
    if not base:
        raise ConfigError(f"refine: space '{space.name}' ships no quantized dataset; give --base-data")
    if not start.exists():
        raise ConfigError(f"refine: no predictor at {start}")
    store = open_storage(storage)  # a storage that cannot be used fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    measure_cfg = CollectConfig(
        kind="quant", space=space.name, eval_images=cfg.eval_images, finetune=FinetuneConfig(steps=cfg.finetune_steps)
    )
    identity = f"{supernet_id}@{supernet.data}"
    header = {
        "type": "header",
        "kind": "quant",
        "config": {**measure_cfg.to_dict(), "refine": asdict(cfg), "supernet": identity, "start": label},
        **carried(space),
    }
    data_path = out / "refine.jsonl"
    recs = _read(data_path, header)
    split = load_split(measure_cfg.split, supernet.data, space.name).subset(cfg.eval_images)
    X_base, y_base = load_pooled(base, space.name)
    rounds: list[dict[str, Any]] = []
    current = start
    for r in range(1, cfg.rounds + 1):
        folder = out / f"round-{r}"
        done = folder / "report.json"
        if done.exists() and (folder / "predictor.pt").exists():  # a round without its predictor is redone
            rounds.append(json.loads(done.read_text()))
            current = folder / "predictor.pt"
            continue
        problem = load_problem(space.name, latency=cfg.latency, predictor=current)
        searcher = make_searcher(cfg.searcher, seed=cfg.seed + r)
        name = f"{study_prefix}-round-{r}"
        used = label if r == 1 else f"{out.resolve().name}/round-{r - 1}/predictor.pt"
        settings = run_settings(problem, cfg.searcher, searcher.recorded_params(), cfg.budget, predictor=used)
        res = searcher.run(problem, cfg.budget, progress=progress)
        if check_study_name(store, name, settings_digest(settings), False, storage or "") != "reuse":
            record(res, problem, storage, name, predictor=used, settings=settings, overwrite=True)
        earlier = {_key(space, np.array(x["genes"])) for x in recs if x["round"] < r}
        std = _spread(current, res.evaluated.genes, space.name) if cfg.pick == "uncertainty" else None
        rows = _pick(res.evaluated, problem.objectives, earlier, cfg.per_round, space, std)
        if len(rows) == 0:
            raise ConfigError(f"refine round {r}: the search found no feasible network that is not measured yet")
        mine = {x["index"]: x for x in recs if x["round"] == r}
        bar = tqdm(total=len(rows), initial=len(mine), desc=f"round {r}: measure", disable=not progress)
        with data_path.open("a") as fh:
            for j, row in enumerate(rows):
                index = (r - 1) * cfg.per_round + j
                if index in mine:
                    continue
                genes = res.evaluated.genes[row]
                t0 = time.time()
                cand = space.to_candidates(genes[None])[0]
                acc = measure(supernet, cand, measure_cfg, seed=cfg.seed * 1_000_003 + index, split=split)
                rec = {
                    "index": index,
                    "round": r,
                    "genes": genes.tolist(),
                    "accuracy": acc,
                    "stderr": accuracy_stderr(acc, len(split)),
                    "predicted": float(res.evaluated.accuracy[row]),
                    "latency_ms": float(res.evaluated.latency[row]),
                    "macs": space.macs(cand),
                    "seconds": round(time.time() - t0, 2),
                }
                append_record(fh, rec)
                recs.append(rec)
                mine[index] = rec
                bar.update(1)
        bar.close()
        new = sorted(mine.values(), key=lambda x: x["index"])
        measured, predicted = np.array([x["accuracy"] for x in new]), np.array([x["predicted"] for x in new])
        pred = AccuracyPredictor.load(current, space=space.name)
        learnt = [x for x in recs if x["round"] <= r]  # a round rebuilt later learns nothing of later rounds
        X_ref = space.encode(np.array([x["genes"] for x in learnt]), bits=True)
        y_ref = np.array([x["accuracy"] for x in learnt])
        pred.set_params(max_epochs=cfg.epochs, lr=cfg.lr, progress=False, seed=cfg.seed + r)
        X = np.concatenate([X_base, np.repeat(X_ref, cfg.repeat, 0)])
        pred.fit(X, np.concatenate([y_base, np.repeat(y_ref, cfg.repeat)]), warm_start=True)
        after = pred.predict(space.encode(np.array([x["genes"] for x in new]), bits=True))
        report = {
            "round": r,
            "study": name,
            "picked_by": "uncertainty" if std is not None else "spread",
            "predictor_before": label if r == 1 else f"round-{r - 1}/predictor.pt",  # paths relative to OUT
            "predictor": f"round-{r}/predictor.pt",
            "measured": len(new),
            "mae_before": float(np.mean(np.abs(predicted - measured))),
            "bias_before": float(np.mean(predicted - measured)),
            "pairwise_before": pairwise_accuracy(measured, predicted) if len(new) > 1 else None,
            "mae_after_in_sample": float(np.mean(np.abs(after - measured))),
            "front": [
                {k: x[k] for k in ("index", "latency_ms", "predicted", "accuracy", "stderr")}
                for x in sorted(new, key=lambda x: x["latency_ms"])
            ],
            "search_wall_s": round(res.wall_s, 1),
            "measure_s": round(sum(x["seconds"] for x in new), 1),
        }
        folder.mkdir(exist_ok=True)
        pred.save(folder / "predictor.pt", metrics={"refine_round": r, "mae_before": report["mae_before"]})
        atomic_write(done, json.dumps(report, indent=2) + "\n")  # last: the round is whole
        rounds.append(report)
        current = folder / "predictor.pt"
    summary = {"config": asdict(cfg), "supernet": identity, "start": label, "rounds": rounds}
    atomic_write(out / "report.json", json.dumps(summary, indent=2) + "\n")
    atomic_write(out / "report.md", _markdown(summary))
    return summary


def _markdown(s: dict[str, Any]) -> str:
    c = s["config"]
    lines = [
        f"# Refinement: {c['rounds']} rounds of {c['searcher']} (budget {c['budget']:,}, latency <= "
        f"{c['latency']} ms), {c['per_round']} networks measured per round",
        "",
        "Error of the predictor on each round's newly measured networks, before it learnt them (points):",
        "",
        "| round | measured | MAE before | bias before | pairwise before | MAE after (in sample) |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["rounds"]:
        pw = "-" if r["pairwise_before"] is None else f"{r['pairwise_before']:.2f}"
        lines.append(
            f"| {r['round']} | {r['measured']} | {100 * r['mae_before']:.2f} | {100 * r['bias_before']:+.2f} "
            f"| {pw} | {100 * r['mae_after_in_sample']:.2f} |"
        )
    lines += ["", "Measured fronts (latency ms: predicted / measured ± SE, %):", ""]
    for r in s["rounds"]:
        pts = ", ".join(
            f"{p['latency_ms']:.3f}: {100 * p['predicted']:.1f} / {100 * p['accuracy']:.1f} ± {100 * p['stderr']:.1f}"
            for p in r["front"]
        )
        lines.append(f"- round {r['round']} ({r['study']}): {pts}")
    return "\n".join(lines) + "\n"


__all__ = ["RefineConfig", "refine"]
