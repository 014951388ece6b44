"""Live studies: several worker processes on one study (SQLite and a real PostgreSQL server),
exact trial counts, SIGKILL mid-run and resume, enqueued measurements."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from apqopt.errors import ConfigError
from apqopt.live import LiveSpec, create_live_study, enqueue, work, workers_joined
from apqopt.predictor import AccuracyPredictor
from apqopt.studies import StorageError, open_storage


@pytest.fixture(scope="module")
def predictor_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A quantization-aware predictor of the right shape (seeded weights): what workers load by path."""
    path = tmp_path_factory.mktemp("pred") / "quant.pt"
    AccuracyPredictor("fmnist", variant="branch", seed=3).init_weights().save(path)
    return str(path)


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    return str(request.getfixturevalue("postgres_url"))


def spec(predictor: str, budget: int, **kw: object) -> LiveSpec:
    return LiveSpec("search", budget=budget, predictor=predictor, constraints={"latency": 0.6}, population=10, **kw)  # type: ignore[arg-type]


ALLOW = [tempfile.gettempdir()]  # the tests' files live there; workers load only from allowed folders


def worker_cmd(url: str, study: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "apqopt.cli", "worker", "--study", study, "--storage", url, "--quiet", *extra]
    return [*cmd, "--allow-dir", ALLOW[0]]


def states(study: optuna.Study) -> Counter[str]:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def assert_complete_and_whole(study: optuna.Study, budget: int) -> None:
    """Exactly ``budget`` complete trials, each with every value and attribute written."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == budget
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.number for t in trials}) == len(trials)
    n_genes = len(done[0].params)
    for t in done:
        assert len(t.values) == 2 and len(t.params) == n_genes
        assert {"latency_ms", "energy_mJ", "predicted_accuracy", "feasible"} <= set(t.user_attrs)
        assert np.isclose(t.values[1], t.user_attrs["latency_ms"])
        assert np.isclose(t.system_attrs["constraints:latency"], t.user_attrs["latency_ms"] - 0.6)


def test_spec_is_kept_and_clashes_are_named(tmp_path: Path, predictor_file: str) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    create_live_study(spec(predictor_file, 20), url, "a")
    create_live_study(spec(predictor_file, 20), url, "a")  # same settings: joins
    with pytest.raises(StorageError, match=r"study 'a' exists with other settings .*'budget': \(20, 30\)"):
        create_live_study(spec(predictor_file, 30), url, "a")
    with pytest.raises(StorageError, match="live studies need an SQLite or PostgreSQL URL"):
        create_live_study(spec(predictor_file, 20), str(tmp_path / "j.log"), "a")
    with pytest.raises(ValueError, match="unknown sampler 'cmaes'"):
        spec(predictor_file, 20, sampler="cmaes")
    with pytest.raises(ValueError, match="heartbeat_s < grace_s"):
        spec(predictor_file, 20, heartbeat_s=5, grace_s=5)


def test_four_workers_share_one_postgres_study(postgres_url: str, predictor_file: str) -> None:
    budget = 32
    create_live_study(spec(predictor_file, budget), postgres_url, "four")
    procs = [subprocess.Popen(worker_cmd(postgres_url, "four"), stdout=subprocess.PIPE) for _ in range(4)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    study = optuna.load_study(study_name="four", storage=postgres_url)
    assert states(study) == Counter(COMPLETE=budget)  # no duplicates beyond the budget, no errors
    assert_complete_and_whole(study, budget)
    assert workers_joined(study) == 4
    told = [int(o.decode().split('"told": ')[1].split(",")[0]) for o in outs]
    assert sum(told) == budget and sum(t > 0 for t in told) >= 2  # the work was really shared


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(storage_url: str, predictor_file: str) -> None:
    budget = 30
    create_live_study(spec(predictor_file, budget, heartbeat_s=1, grace_s=2), storage_url, "kill")
    proc = subprocess.Popen(worker_cmd(storage_url, "kill"))
    # read while the worker writes as apqopt's readers do (SQLite: a busy timeout, not sqlite3's 5 s)
    study = optuna.load_study(study_name="kill", storage=open_storage(storage_url, create=False))
    deadline = time.time() + 300
    while states(study)["COMPLETE"] < 8 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = states(study)
    assert 0 < at_kill["COMPLETE"] < budget
    rep = work(storage_url, "kill", progress=False, allow_dirs=ALLOW)  # a restarted worker finishes the study
    assert rep.complete == budget
    assert_complete_and_whole(study, budget)
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == at_kill["RUNNING"]  # only the trial(s) in flight at the kill
    retried = {t.system_attrs.get("failed_trial"): t for t in trials if t.state == TrialState.COMPLETE}
    for f in failed:  # each interrupted candidate was evaluated again, with the params it had got
        again = retried[f.number]
        assert all(again.params[k] == v for k, v in f.params.items())


def test_trial_asked_but_never_beaten_goes_stale(tmp_path: Path, predictor_file: str) -> None:
    """A worker killed between ask() and its first heartbeat leaves a RUNNING trial without any beat;
    other workers must fail and re-enqueue it after the grace period instead of waiting forever."""
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    create_live_study(spec(predictor_file, 6, heartbeat_s=1, grace_s=2), url, "nb")
    study = optuna.load_study(study_name="nb", storage=url)
    orphan = study.ask()  # what the killed worker left behind: RUNNING, no heartbeat ever
    assert subprocess.run(worker_cmd(url, "nb"), timeout=120).returncode == 0  # hangs forever if not fixed
    trials = study.get_trials(deepcopy=False)
    assert states(study) == Counter(COMPLETE=6, FAIL=1)
    assert trials[orphan.number].state == TrialState.FAIL
    again = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE  # retried once (it had no params yet)


def test_worker_loads_only_from_allowed_folders(tmp_path: Path, predictor_file: str) -> None:
    """Whoever can write the shared database could point a study at any file; a worker loads the files a
    study names only from folders it was allowed (APQOPT_HOME, --allow-dir), and refuses the rest."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    create_live_study(spec(predictor_file, 4), url, "a")
    with pytest.raises(ConfigError, match=r"outside the folders it may read.*--allow-dir"):
        work(url, "a", progress=False, allow_dirs=[str(tmp_path / "elsewhere")])
    study = optuna.load_study(study_name="a", storage=url)
    assert all(t.state != TrialState.COMPLETE for t in study.get_trials())
    assert workers_joined(study) == 0  # a refused worker never joined
    assert work(url, "a", progress=False, allow_dirs=[str(Path(predictor_file).parent)]).complete == 4
    assert workers_joined(study) == 1


def test_live_search_via_cli_and_bad_requests(tmp_path: Path, predictor_file: str) -> None:
    from apqopt.cli import main

    url = f"sqlite:///{tmp_path / 'c.db'}"
    common = ["--budget", "12", "--latency", "0.6", "--predictor", predictor_file, "--storage", url, "--quiet"]
    assert main(["search", "--live", "--searcher", "optuna-tpe", "--study", "c", *common]) == 0
    study = optuna.load_study(study_name="c", storage=url)
    assert_complete_and_whole(study, 12)
    assert study.user_attrs["searcher"] == "optuna-tpe" and study.user_attrs["budget"] == 12
    assert main(["search", "--live", "--searcher", "evolution", "--study", "e", *common]) == 2
    assert main(["worker", "--study", "nope", "--storage", url, "--quiet"]) == 2
    assert main(["search", "--live", "--searcher", "optuna-tpe", "--study", "c", *common[:1], "13", *common[2:]]) == 2
    assert states(optuna.load_study(study_name="c", storage=url)) == Counter(COMPLETE=12)  # untouched


@pytest.mark.slow
def test_enqueued_measurements_are_taken_once(tmp_path: Path, shipped_supernet: object) -> None:
    from apqopt.space import get_space
    from apqopt.supernet.collect import CollectConfig, candidate_genes, measure

    url = f"sqlite:///{tmp_path / 'm.db'}"
    sp = get_space("fmnist")
    cfg = CollectConfig(kind="fp", space="fmnist", seed=5)
    genes = np.stack([candidate_genes(sp, cfg, i) for i in range(3)])
    study = create_live_study(LiveSpec("measure", budget=3, seed=5, measure="fp"), url, "m")
    assert enqueue(study, genes) == 3 and enqueue(study, genes) == 0  # re-enqueueing adds nothing
    procs = [subprocess.Popen(worker_cmd(url, "m")) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    done = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.user_attrs["index"])
    assert [t.user_attrs["index"] for t in done] == [0, 1, 2] and states(study) == Counter(COMPLETE=3)
    direct = measure(shipped_supernet, sp.to_candidates(genes[:1])[0], cfg, seed=5 * 1_000_003)  # type: ignore[arg-type]
    assert done[0].values[0] == pytest.approx(direct, abs=1e-12)
    from apqopt.shipped import supernet_path
    from apqopt.supernet.train import weights_identity

    pinned = study._storage.get_study_system_attrs(study._study_id)["apqopt:supernet"]
    assert pinned == weights_identity(supernet_path("fmnist"))


def test_worker_with_other_weights_is_refused(tmp_path: Path, shipped_supernet: object) -> None:
    """Weights retrained at the same path (same name, same size) must not add measurements to a study
    begun on the old ones; the study's records stay as they were."""
    import torch

    from apqopt.shipped import supernet_path

    weights = tmp_path / "supernet.pt"
    weights.write_bytes(supernet_path("fmnist").read_bytes())
    url = f"sqlite:///{tmp_path / 'm.db'}"
    study = create_live_study(LiveSpec("measure", budget=3, measure="fp", supernet=str(weights)), url, "m")
    assert (
        work(url, "m", max_trials=0, progress=False, allow_dirs=ALLOW).told == 0
    )  # pins the identity, measures nothing
    payload = torch.load(weights, weights_only=True)
    first = next(iter(payload["model"]))
    payload["model"][first] = payload["model"][first] + 0.01
    torch.save(payload, weights)
    with pytest.raises(StorageError, match=r"study 'm' is measured on supernet weights supernet.pt:sha256:"):
        work(url, "m", progress=False, allow_dirs=ALLOW)
    assert study.get_trials() == []


def test_evolution_islands_record_side_by_side(postgres_url: str, predictor_file: str, tmp_path: Path) -> None:
    """Batch searchers scale out as independent islands: one process per seed, each recording its own
    study into the shared database; an island's result equals the same seed run alone."""
    from apqopt.problem_spec import load_problem
    from apqopt.search import make_searcher

    args = ["--searcher", "evolution", "--budget", "300", "--latency", "0.6", "--predictor", predictor_file]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apqopt.cli",
                "search",
                *args,
                "--seed",
                str(k),
                "--study",
                f"island-{k}",
                "--storage",
                postgres_url,
                "--quiet",
                "--json",
            ],
            stdout=subprocess.PIPE,
            cwd=tmp_path,
        )
        for k in (0, 1)
    ]
    outs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    problem = load_problem("fmnist", latency=0.6, predictor=predictor_file)
    for k, out in enumerate(outs):
        study = optuna.load_study(study_name=f"island-{k}", storage=postgres_url)
        assert study.user_attrs["seed"] == k and study.user_attrs["evaluated"] == 300
        alone = make_searcher("evolution", seed=k).run(problem, 300)
        b = alone.best()
        assert out["best"][0]["predicted_accuracy"] == pytest.approx(float(alone.evaluated.accuracy[b]), abs=1e-5)


def test_every_writer_records_the_same_trial_fields(tmp_path: Path, predictor_file: str) -> None:
    """One candidate written by the three paths -- a recorded run (``studies.record``), a user's
    ``study.optimize`` with apqopt's objective, and a live worker -- gives identical values, user attrs and
    constraints (one key per limit), the same directions and metric names, and the same choices: a recorded
    run and the define-by-run objective store the active genes only; a live worker's fixed-length sampler
    space adds the dormant blocks' genes and nothing else."""
    from apqopt.problem_spec import load_problem
    from apqopt.search import Run, SearchResult
    from apqopt.search.optuna_search import objective
    from apqopt.studies import record

    url = f"sqlite:///{tmp_path / 'w.db'}"
    problem = load_problem("fmnist", latency=0.6, predictor=predictor_file)
    genes = problem.space.sample(1, 11)
    run = Run(problem, 1)
    run.evaluate(genes)
    res = SearchResult("random", 0, {}, run.evaluated(), 0.0, 0.0, 1)
    recorded = record(res, problem, url, "recorded").trials[0]
    params = recorded.params

    user = optuna.create_study(study_name="objective", storage=url, directions=["maximize", "minimize"])
    user.enqueue_trial(params)
    user.optimize(objective(problem), n_trials=1)  # define-by-run: the active genes, as recorded
    by_objective = user.trials[0]

    live = create_live_study(spec(predictor_file, 1), url, "live")
    live.enqueue_trial(params)
    assert work(url, "live", progress=False, allow_dirs=ALLOW).told == 1
    by_worker = live.trials[0]

    def fields(t: optuna.trial.FrozenTrial) -> tuple[object, ...]:
        system = {k: v for k, v in t.system_attrs.items() if k.startswith("constraints")}
        return t.params, t.values, t.user_attrs, system

    assert fields(recorded) == fields(by_objective)
    assert fields(by_worker)[1:] == fields(recorded)[1:]
    assert {k: v for k, v in by_worker.params.items() if k in params} == params
    assert len(by_worker.params) == problem.space.n_genes > len(params)  # the rest: dormant blocks' genes
    for name in ("recorded", "live"):
        s = optuna.load_study(study_name=name, storage=url)
        assert s.directions == user.directions and s.metric_names == ["accuracy", "latency_ms"]


@pytest.mark.slow
def test_collect_as_a_live_study_honours_eval_images(tmp_path: Path, shipped_supernet: object) -> None:
    from apqopt.cli import main
    from apqopt.live import load_spec
    from apqopt.supernet.data import accuracy_stderr

    url = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["collect", "fp", "--n", "1", "--eval-images", "200", "--storage", url, "--study", "c", "--quiet"]
    assert main(args) == 0
    study = optuna.load_study(study_name="c", storage=url)
    assert load_spec(study).eval_images == 200
    (t,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert t.user_attrs["stderr"] == pytest.approx(accuracy_stderr(t.values[0], 200))
