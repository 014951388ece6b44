"""Checking the predictor's claims for real: build chosen candidates from the supernet, quantize,
fine-tune and measure them, and store measured accuracy beside predicted.

Why a separate step: search runs on predicted accuracy; on ``fmnist`` the claims can be checked,
and the gap (mean absolute error, rank agreement) is what tells a user how far to trust a front.
Finished Optuna trials cannot be changed, so measurements of a recorded study go into the study
attr ``verified`` (trial number -> measured accuracy, its standard error, predicted accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from tqdm import tqdm

from apqopt.errors import ConfigError
from apqopt.predictor.metrics import ranking_report
from apqopt.record import Verified, add_verified, read_trial, study_record
from apqopt.search.pareto import budget_picks
from apqopt.studies import open_storage
from apqopt.supernet.collect import CollectConfig, measure
from apqopt.supernet.data import accuracy_stderr
from apqopt.supernet.network import Supernet

# Which images a verification measures on. "val": the first 5,000 validation images, the ones every
# predictor record was measured on (the default, comparable with the data); "test": the 10,000 test
# images, which no predictor record and no selection used -- the yardstick for claims about the picks.
IMAGES = {"val": ("val", 5000), "test": ("test", 10_000)}


def measure_config(space: str, images: str = "val") -> CollectConfig:
    """The quantized measurement of a verification on ``images`` (a key of :data:`IMAGES`)."""
    if images not in IMAGES:
        raise ConfigError(f"images must be one of {sorted(IMAGES)}, got {images!r}")
    split, n = IMAGES[images]
    return CollectConfig(kind="quant", space=space, split=split, eval_images=n)


@dataclass
class Verification:
    genes: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray
    stderr: np.ndarray

    def report(self) -> dict[str, Any]:
        rep = {"n": len(self.measured), "mae": float(np.mean(np.abs(self.predicted - self.measured)))}
        if len(self.measured) > 2:
            rep |= {k: v for k, v in ranking_report(self.measured, self.predicted).items() if k != "n"}
        return rep


def verify(
    supernet: Supernet,
    genes: np.ndarray,
    predicted: np.ndarray,
    cfg: CollectConfig | None = None,
    progress: bool = True,
) -> Verification:
    """Measure each candidate (quantized under its own policy by default)."""
    cfg = cfg or CollectConfig(kind="quant", space=supernet.space.name)
    space = supernet.space
    measured = []
    for i, cand in enumerate(tqdm(space.to_candidates(genes), desc="verify", disable=not progress)):
        measured.append(measure(supernet, cand, cfg, seed=7_919 * (i + 1)))
    m = np.array(measured)
    return Verification(
        np.asarray(genes),
        np.asarray(predicted, dtype=float),
        m,
        np.array([accuracy_stderr(a, cfg.eval_images) for a in m]),
    )


def pick_front(trials: list[optuna.trial.FrozenTrial], k: int) -> list[optuna.trial.FrozenTrial]:
    """Up to k trials: the best predicted feasible one under each of k latency budgets along the front."""
    done = [t for t in trials if t.values is not None]
    rows = [read_trial(t) for t in done]
    acc = np.array([r.accuracy for r in rows])
    lat = np.array([r.latency for r in rows])
    feas = np.array([r.feasible for r in rows], dtype=bool)
    return [done[i] for i in budget_picks(acc, np.nan_to_num(lat, nan=np.inf), feas, k)]


def verify_study(
    study_name: str,
    storage: str | None,
    supernet: Supernet,
    top: int = 5,
    progress: bool = True,
    eval_images: int = 5000,
) -> dict[str, Any]:
    """Measure up to ``top`` front candidates of a recorded study; store them in its ``verified`` attr."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
    rec = study_record(study)
    state = rec.state(len(study.trials))
    if state in ("incomplete", "foreign"):
        why = "was interrupted while being recorded; rerun its command" if state == "incomplete" else "is not apqopt's"
        raise ConfigError(f"study '{study_name}' {why}")
    codec = rec.codec()
    space = codec.space
    if space.name != supernet.space.name:
        raise ConfigError(f"study '{study_name}' is on space '{space.name}', the supernet on '{supernet.space.name}'")
    chosen = pick_front(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)), top)
    genes = np.stack([codec.genes(t.params) for t in chosen])
    cfg = CollectConfig(kind="quant", space=space.name, eval_images=eval_images)
    ver = verify(supernet, genes, np.array([t.values[0] for t in chosen]), cfg, progress=progress)
    new = {
        t.number: Verified(float(m), float(se), float(p), read_trial(t).latency)
        for t, m, se, p in zip(chosen, ver.measured, ver.stderr, ver.predicted)
    }
    stored = add_verified(study, new)
    rows = [{"trial": t.number, **stored[t.number].to_attr()} for t in chosen]
    return {"study": study_name, **ver.report(), "trials": [t.number for t in chosen], "candidates": rows}


def measuring_predictor(supernet: Supernet, cfg: CollectConfig | None = None) -> Any:
    """A ``Problem`` predictor that *measures* every candidate (quantize, fixed fine-tune, val accuracy)
    instead of predicting it: HAQ's reward from real accuracy, as in the HAQ paper (opt-in, fmnist;
    ~1 minute per candidate here, so keep budgets small)."""
    cfg = cfg or CollectConfig(kind="quant", space=supernet.space.name)
    space = supernet.space

    def predict(genes: np.ndarray) -> np.ndarray:
        cands = space.to_candidates(np.asarray(genes))
        return np.array([measure(supernet, c, cfg, seed=7_919 * (i + 1)) for i, c in enumerate(cands)])

    return predict
