"""`apqopt refine` (#20.1): rounds of search, measurement of the front and predictor fine-tuning, end to end
on the shipped supernet at a tiny budget; killed while measuring and rerun, it measures nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from apqopt.shipped import quant_training_paths
from apqopt.supernet.collect import dataset_arrays

ARGS = ["--rounds", "2", "--per-round", "2", "--budget", "40", "--eval-images", "100", "--finetune-steps", "5"]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_refine_rounds_resume_without_remeasuring(tmp_path: Path, shipped_supernet: object) -> None:
    out, storage = tmp_path / "ref", str(tmp_path / "studies.log")
    cmd = [sys.executable, "-m", "apqopt", "refine", *ARGS, "--out", str(out), "--storage", storage, "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "APQOPT_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 300
    while len(_lines(out / "refine.jsonl")) < 2 and time.time() < deadline:  # the header and one record
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _lines(out / "refine.jsonl")
    assert len(before) >= 2 and not (out / "report.json").exists(), "killed too late"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "round 2: 2 networks measured" in done.stdout
    rounds = json.loads((out / "report.json").read_text())["rounds"]
    assert [r["picked_by"] for r in rounds] == ["uncertainty", "uncertainty"]  # the shipped ensemble's spread

    lines = _lines(out / "refine.jsonl")
    assert lines[: len(before)] == before  # what was measured before the kill is kept, byte for byte
    recs = [json.loads(line) for line in lines[1:]]
    assert sorted(r["index"] for r in recs) == [0, 1, 2, 3]  # each network measured once
    assert len({tuple(r["genes"]) for r in recs}) == 4  # and no network measured in two rounds
    report = json.loads((out / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for r in report["rounds"]:
        assert 0 <= r["mae_before"] < 1 and len(r["front"]) == 2
        assert (out / r["predictor"]).exists() and (out / (r["predictor"] + ".json")).exists()
    assert report["rounds"][1]["predictor_before"] == report["rounds"][0]["predictor"]  # round 2 used round 1's
    studies = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    names = {s.study_name for s in optuna.get_all_study_summaries(studies)}
    assert names == {"refine-fmnist-seed0-round-1", "refine-fmnist-seed0-round-2"}
    assert "MAE before" in (out / "report.md").read_text()
    # a finished run is read back, and other settings are refused, naming the file
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and _lines(out / "refine.jsonl") == lines
    # a round's predictor rebuilt from the file (its .pt is not committed) is the one it was: round 1 learns
    # round 1's networks only, never those of a later round that the file already holds
    first = (out / "round-1" / "predictor.pt.json").read_text()
    base = sum(len(dataset_arrays(p)[2]) for p in quant_training_paths("fmnist"))  # the shipped pool, all of it
    assert json.loads(first)["fit"]["n"] == base + 10 * 2 and len(quant_training_paths("fmnist")) == 2
    (out / "round-1" / "predictor.pt").unlink()
    rebuilt = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rebuilt.returncode == 0 and (out / "round-1" / "predictor.pt.json").read_text() == first
    other = subprocess.run([*cmd, "--latency", "0.4"], env=env, capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "refine.jsonl was written by a refinement with other settings" in other.stderr


def test_picks_go_where_the_ensemble_is_least_sure_along_the_whole_front() -> None:
    """`--pick uncertainty`: the front (by latency) in k stretches, from each the row of largest spread;
    without a spread, evenly by latency (both ends included)."""
    import numpy as np

    from apqopt.refine import _pick
    from apqopt.search.problem import Evaluation
    from apqopt.space import get_space

    space = get_space("fmnist")
    n = 12
    genes = space.sample(n, np.random.default_rng(0))
    lat = np.linspace(0.1, 0.5, n)
    ev = Evaluation(genes, np.linspace(0.7, 0.9, n), lat, lat, np.zeros(n))  # every row on the front
    std = np.full(n, 0.01)
    std[[1, 4, 10]] = [0.05, 0.04, 0.03]  # one unsure row in each stretch of four
    picked = _pick(ev, ("latency",), set(), 3, space, std)
    assert sorted(picked.tolist()) == [1, 4, 10]
    assert _pick(ev, ("latency",), set(), 3, space).tolist() == [0, 6, 11]  # spread: evenly, ends included
    known = {space.canonical(genes[1:2])[0].tobytes()}  # measured before: never again
    assert 1 not in _pick(ev, ("latency",), known, 3, space, std).tolist()


def test_a_refinement_from_before_picks_resumes_as_spread(tmp_path: Path) -> None:
    """Refinements written before `--pick` existed (benchmarks/results/refine_fmnist) have no "pick" in their
    header: they picked by spread, so `--pick spread` resumes and rebuilds them; `--pick uncertainty` is
    another refinement and is refused."""
    from dataclasses import asdict

    from apqopt.refine import RefineConfig, _read
    from apqopt.space import get_space
    from apqopt.supernet.collect import CollectConfig, DatasetFileError

    def header(cfg: RefineConfig, legacy: bool = False) -> dict:
        refine = {k: v for k, v in asdict(cfg).items() if not (legacy and k == "pick")}
        return {
            "type": "header",
            "kind": "quant",
            "config": {**CollectConfig(kind="quant").to_dict(), "refine": refine},
        }

    path = tmp_path / "refine.jsonl"
    genes = get_space("fmnist").sample(1, 0)[0].tolist()
    rec = {"index": 0, "round": 1, "genes": genes, "accuracy": 0.9, "stderr": 0.004}
    path.write_text(json.dumps(header(RefineConfig(pick="spread"), legacy=True)) + "\n" + json.dumps(rec) + "\n")
    before = path.read_bytes()
    assert _read(path, header(RefineConfig(pick="spread"))) == [rec]
    assert path.read_bytes() == before  # resumed as it was, no second header
    with pytest.raises(DatasetFileError, match="other settings"):
        _read(path, header(RefineConfig(pick="uncertainty")))
