"""Recording runs as Optuna studies, and the head-to-head comparison."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from apqopt.compare import CompareReport, MeasureOnce, compare, write_report
from apqopt.predictor import AccuracyPredictor
from apqopt.record import RecordCodec
from apqopt.search import make_searcher
from apqopt.search.pareto import budget_picks, non_dominated
from apqopt.space import get_space
from apqopt.studies import StorageError, load_history, open_storage, record
from tests.helpers import problem


def brute_front(F: np.ndarray) -> set[tuple[float, ...]]:
    """Points of F that no other point dominates (the definition, O(n^2))."""
    return {
        tuple(F[i])
        for i in range(len(F))
        if not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(len(F)))
    }


def area_2d(points: np.ndarray, ref: tuple[float, float]) -> float:
    """Hypervolume of (latency, -accuracy) points by summing rectangles (independent of pymoo's HV)."""
    pts = points[np.all(points < np.array(ref), axis=1)]
    pts = pts[np.argsort(pts[:, 0])]
    area, best = 0.0, ref[1]
    xs = [*pts[:, 0], ref[0]]
    for k, (_, y) in enumerate(pts):
        best = min(best, y)
        area += (xs[k + 1] - xs[k]) * (ref[1] - best)
    return area


def test_record_every_candidate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    p = problem()
    res = make_searcher("evolution", seed=1).run(p, 200)
    record(res, p, url, "evo", full_limit=200)
    loaded = optuna.load_study(study_name="evo", storage=url)
    trials = loaded.get_trials()
    assert len(trials) == 200 and loaded.user_attrs["searcher"] == "evolution"
    assert loaded.user_attrs["trials_hold"] == "every evaluated candidate" and loaded.user_attrs["budget"] == 200
    assert loaded.metric_names == ["accuracy", "latency_ms"]
    t = trials[0]
    # only the genes that had an effect: depths and the active blocks (dormant ones flattened importances)
    active = RecordCodec.of(p).active_params(res.evaluated.genes[0])
    assert t.params == active and t.params["b0_kernel"] in (3, 5, 7)
    assert sum(len(x.params) for x in trials) < 200 * p.space.n_genes  # some networks are shallower
    assert t.system_attrs["constraints"] == [t.user_attrs["latency_ms"] - 0.6]  # constraints_func's list form
    assert t.constraints == {"0": t.user_attrs["latency_ms"] - 0.6, "latency": t.user_attrs["latency_ms"] - 0.6}
    hist = load_history(loaded)
    np.testing.assert_allclose(hist.accuracy, res.evaluated.accuracy)
    np.testing.assert_array_equal(hist.genes, p.space.canonical(res.evaluated.genes))  # dormant genes: canonical
    np.testing.assert_array_equal(hist.feasible, res.evaluated.feasible)
    np.testing.assert_allclose(hist.violation, res.evaluated.violation)
    np.testing.assert_allclose(hist.latency, res.evaluated.latency)
    np.testing.assert_allclose(hist.energy, res.evaluated.energy)
    # the same name again is refused and nothing stored changes
    with pytest.raises(StorageError, match="already exists"):
        record(res, p, url, "evo", full_limit=200)
    assert len(optuna.load_study(study_name="evo", storage=url).get_trials()) == 200


@pytest.mark.parametrize("live", [False, True])
def test_optunas_own_tools_see_feasibility_under_latency_and_energy_limits(tmp_path: Path, live: bool) -> None:
    """A recorded study (batched record, or trials told one by one as a live study does) read with Optuna's
    API: each trial's constraints are its own latency and energy excesses, in both of Optuna's forms (named
    keys, and the list optuna-dashboard reads); Optuna's best_trials and Pareto plot keep only feasible ones."""
    import dataclasses

    from apqopt.record import RecordCodec

    p = dataclasses.replace(problem(), objectives=("latency", "energy"), constraints={"latency": 0.6, "energy": 0.4})
    res = make_searcher("optuna-random-raw", seed=2).run(p, 120)  # pays for infeasible candidates too
    ev = res.evaluated
    assert ev.feasible.any() and not ev.feasible.all()
    url = f"sqlite:///{tmp_path}/s.db"
    if live:  # told one by one, as a live worker does (a journal: SQLite commits every suggest, ~1 s a trial)
        url = str(tmp_path / "s.log")
        ev = ev.take(slice(0, 40))  # enough of both kinds, at ~0.15 s a told trial
        assert ev.feasible.any() and not ev.feasible.all()
        codec = RecordCodec.of(p)
        study = codec.create_study(open_storage(url), "told")
        for i in range(len(ev)):
            trial = study.ask()
            codec.suggest(trial, *p.gene_bounds())
            study.tell(trial, codec.write(trial, ev, i))
        name = "told"
    else:
        record(res, p, url, "rec", full_limit=200)
        name = "rec"
    study = optuna.load_study(study_name=name, storage=open_storage(url, create=False))
    trials = study.get_trials()
    assert len(trials) == len(ev)
    for t in trials:
        lat, en = t.user_attrs["latency_ms"], t.user_attrs["energy_mJ"]
        assert t.system_attrs["constraints"] == pytest.approx([lat - 0.6, en - 0.4])
        assert t.constraints["latency"] == pytest.approx(lat - 0.6) and t.constraints["energy"] == pytest.approx(
            en - 0.4
        )
    np.testing.assert_allclose(sorted(t.user_attrs["energy_mJ"] for t in trials), sorted(ev.energy))
    best = study.best_trials
    assert best and all(t.user_attrs["feasible"] and max(t.system_attrs["constraints"]) <= 0 for t in best)
    from optuna.visualization._pareto_front import _get_pareto_front_info

    info = _get_pareto_front_info(study)
    assert info.has_constraints and len(info.infeasible_trials_with_values) == int((~ev.feasible).sum())


@pytest.mark.parametrize("objectives", [("latency",), ("latency", "energy")])
def test_large_runs_keep_the_front_and_the_history_in_the_study(tmp_path: Path, objectives: tuple[str, ...]) -> None:
    from apqopt.search.problem import Problem

    base = problem()
    p = Problem(base.space, base.predictor, base.lut, objectives, base.constraints)
    url = f"sqlite:///{tmp_path}/s.db"
    res = make_searcher("random", seed=0).run(p, 400)
    study = record(res, p, url, "rnd", full_limit=100)
    ev = res.evaluated
    feas = np.flatnonzero(ev.feasible)
    F = np.column_stack([-ev.accuracy[feas], *(ev.cost(o)[feas] for o in objectives)])
    stored = {(-t.values[0], *t.values[1:]) for t in study.get_trials()}
    assert stored == brute_front(F) and len(stored) < 400
    assert all(t.user_attrs["feasible"] for t in study.get_trials())
    assert [f.name for f in tmp_path.iterdir()] == ["s.db"]  # nothing beside the database (no side files)
    hist = load_history(optuna.load_study(study_name="rnd", storage=url))
    np.testing.assert_array_equal(hist.genes, ev.genes)
    np.testing.assert_allclose(hist.accuracy, ev.accuracy)


def test_history_of_a_postgres_study_is_read_from_anywhere(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full history of a large run travels with the study: another working directory (another
    machine) reads it back through the storage alone."""
    monkeypatch.chdir(tmp_path)
    p = problem()
    res = make_searcher("random", seed=2).run(p, 300)
    record(res, p, postgres_url, "pg-history", full_limit=50)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hist = load_history(optuna.load_study(study_name="pg-history", storage=postgres_url))
    np.testing.assert_array_equal(hist.genes, res.evaluated.genes)
    np.testing.assert_allclose(hist.latency, res.evaluated.latency)
    assert not list(tmp_path.rglob("*.npz"))


def test_pareto_front_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    for k in (2, 3):
        F = rng.integers(0, 8, (400, k)).astype(float)
        idx = non_dominated(F)
        assert {tuple(F[i]) for i in idx} == brute_front(F)
        assert len(idx) == len({tuple(F[i]) for i in idx})  # each point once


def test_verification_picks_the_best_under_each_budget_never_only_the_cheapest() -> None:
    """budget_picks against a plain loop: for k budgets evenly between the cheapest feasible cost and the
    dearest front point, the most accurate feasible row within each, each row once; one pick is the
    most accurate feasible row, and the cheapest is picked only where it is the best under a budget."""
    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        acc, cost = rng.random(n).round(2), rng.random(n).round(2) + 0.1
        feas = rng.random(n) < 0.8
        if not feas.any():
            continue
        for k in (1, 2, 3, 5):
            got = budget_picks(acc, cost, feas, k)
            ok = np.flatnonzero(feas)
            hi = max(cost[i] for i in ok if not any(acc[j] >= acc[i] and cost[j] < cost[i] for j in ok))
            lo, want = cost[ok].min(), []
            for i in range(1, k + 1):
                within = [j for j in ok if cost[j] <= lo + (hi - lo) * i / k + 1e-9]
                best = max(within, key=lambda j: (acc[j], -cost[j], -j))
                want.append(best)
            assert sorted(set(got.tolist())) == sorted(set(want)), (trial, k)
            assert len(got) == len(set(got.tolist()))
            assert acc[got].max() == acc[feas].max()
    acc = np.array([0.6, 0.7, 0.8, 0.9])  # a front where the cheapest point is the worst
    cost = np.array([0.1, 0.2, 0.3, 0.4])
    assert budget_picks(acc, cost, np.ones(4, bool), 1).tolist() == [3]
    assert budget_picks(acc, cost, np.ones(4, bool), 2).tolist() == [1, 3]
    assert budget_picks(acc, cost, np.array([True, True, True, False]), 3).tolist() == [0, 1, 2]


def test_a_network_is_measured_once_per_comparison() -> None:
    """MeasureOnce: the measurer sees each network (canonical identity) once; repeats, in one batch or
    later, get the first measurement."""
    from tests.helpers import SP

    calls: list[int] = []

    def measurer(genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(genes))
        return genes[:, 0] / 10.0, np.full(len(genes), 0.01)

    once = MeasureOnce(measurer, SP)
    g = SP.sample(3, 0)
    acc, se = once(np.concatenate([g, g[:1]]))
    assert calls == [3] and acc[0] == acc[3] and len(se) == 4
    acc2, _ = once(np.concatenate([g[1:2], SP.sample(1, 1)]))
    assert calls == [3, 1] and acc2[0] == acc[1] and once.calls == 4


def test_bad_storage_urls(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open storage 'nosuchdb://x'"):
        open_storage("nosuchdb://x")
    for url in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        with pytest.raises(StorageError, match="in-memory database"):
            open_storage(url)
    journal = open_storage(str(tmp_path / "j.log"))
    assert isinstance(journal, optuna.storages.JournalStorage)
    odd = tmp_path / "a#b.db"
    open_storage(f"sqlite:///{odd}")
    assert odd.exists() and not (tmp_path / "a").exists()


def test_default_storage_follows_apqopt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from apqopt.settings import default_storage

    monkeypatch.setenv("APQOPT_HOME", str(tmp_path / "home"))
    assert default_storage() == f"sqlite:///{tmp_path / 'home' / 'apqopt.db'}"
    p = problem()
    record(make_searcher("random", seed=0).run(p, 20), p, None, "r")
    assert (tmp_path / "home" / "apqopt.db").exists()


def test_compare_report(tmp_path: Path) -> None:
    p = problem()
    report, results = compare(p, ["random", "evolution"], [0, 1], 300, storage=str(tmp_path / "c.log"), progress=False)
    summ = report.summary()
    assert set(summ) == {"random", "evolution"} and all(e["seeds"] == 2 for e in summ.values())
    for run, res in zip(report.runs, results):
        ev = res.evaluated
        pts = np.column_stack([ev.latency, -ev.accuracy])[ev.feasible]
        assert run.hv == pytest.approx(area_2d(pts, report.reference), rel=1e-9) and run.hv > 0
        assert [c for c, _ in run.hv_curve][-1] == 300 and run.study is not None
        stored = optuna.load_study(study_name=run.study, storage=open_storage(str(tmp_path / "c.log"))).user_attrs
        assert stored["hv_curve"] == [list(c) for c in run.hv_curve]
    md = report.markdown()
    assert "| evolution |" in md and "| random |" in md and "distinct (min)" in md
    assert CompareReport.from_json(report.to_json()).markdown() == md  # compare.json keeps everything
    assert CompareReport.from_studies(str(tmp_path / "c.log"), ["compare"]).markdown() == md  # so do the studies
    paths = write_report(report, results, tmp_path / "out")
    assert all(x.exists() and x.stat().st_size > 0 for x in paths)
    with pytest.raises(ValueError, match="unknown searcher 'hill'"):  # checked before any search work
        compare(p, ["random", "hill"], [0], 300, storage=str(tmp_path / "d.log"), progress=False)
    assert not (tmp_path / "d.log").exists()


def test_verdicts_on_constructed_inputs() -> None:
    from apqopt.search.verdict import all_verdicts, paired_verdict

    clear = paired_verdict("A", {s: 1.0 + 0.01 * s for s in range(5)}, "B", {s: 0.8 + 0.012 * s for s in range(5)})
    assert clear.separable and clear.p < 0.01 and clear.line().startswith("A > B (p = ")
    flipped = paired_verdict("B", {s: 0.8 + 0.012 * s for s in range(5)}, "A", {s: 1.0 + 0.01 * s for s in range(5)})
    assert flipped.line().startswith("A > B") and flipped.mean_diff < 0
    noisy = paired_verdict(
        "A", dict(enumerate([1.0, 0.9, 1.05, 0.95, 1.0])), "B", dict(enumerate([0.98, 1.0, 0.97, 1.02, 0.99]))
    )
    assert not noisy.separable and "A and B are not separable with 5 seeds" in noisy.line()
    tie = paired_verdict("A", {0: 1.0, 1: 1.0}, "B", {0: 1.0, 1: 1.0})
    assert not tie.separable and tie.p == 1.0
    only_shared = paired_verdict("A", {0: 2.0, 1: 2.1, 2: 2.2}, "B", {1: 1.0, 2: 1.1, 3: 9.0})
    assert only_shared.n == 2  # pairs by seed: seed 0 and 3 ran for one searcher only
    rng = np.random.default_rng(0)  # p and the interval come from one test: it excludes 0 exactly when p < 0.05
    for _ in range(300):
        n = int(rng.integers(2, 7))
        a, b = rng.normal(0, 1, n), rng.normal(rng.normal(0, 1), 1, n)
        v = paired_verdict("A", dict(enumerate(a)), "B", dict(enumerate(b)))
        assert (v.ci[0] > 0 or v.ci[1] < 0) == v.separable and v.ci[0] <= v.mean_diff <= v.ci[1]
    assert [(v.a, v.b) for v in all_verdicts({"x": {0: 1}, "y": {0: 1}, "z": {0: 1}})] == [
        ("x", "y"),
        ("x", "z"),
        ("y", "z"),
    ]


def test_compare_scores_measured_fronts(tmp_path: Path, shipped_supernet: object) -> None:
    """With verify_top, each run's front candidates are measured on the supernet (fp here, 500 images, to
    keep the test short); measured HV, best measured accuracy with its SE, and the verdicts on measured HV
    reach the report, and the measurements are stored in each study beside the predictions."""
    from apqopt.compare import supernet_measurer
    from apqopt.problem_spec import load_problem
    from apqopt.supernet.collect import CollectConfig

    p = load_problem("fmnist", latency=0.6)
    measurer = supernet_measurer(shipped_supernet, CollectConfig(kind="fp", space="fmnist", eval_images=500))
    store = str(tmp_path / "m.log")
    report, _ = compare(
        p, ["random", "evolution"], [0, 1], 60, storage=store, progress=False, verify_top=2, measurer=measurer
    )
    assert report.measured
    for run in report.runs:
        m = run.measured
        assert m is not None and m.n == 2 and all(0.5 < a < 1 for a in m.measured) and 0 < m.mae < 0.2
        assert m.hv > 0 and all(0 < se < 0.05 for se in m.stderr)
        verified = optuna.load_study(study_name=run.study, storage=open_storage(store)).user_attrs["verified"]
        assert sorted(v["measured_accuracy"] for v in verified.values()) == sorted(m.measured)
    md = report.markdown()
    assert "Measured on the supernet" in md and "Verdicts (measured HV)" in md
    assert CompareReport.from_json(report.to_json()).markdown() == md
    assert CompareReport.from_studies(store, ["compare"]).markdown() == md
    assert "not separable with 2 seeds" in md or " > " in md.split("Verdicts")[1]


def test_compare_verifies_on_the_test_images_when_asked(
    tmp_path: Path, shipped_supernet: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compare --verify-images test` measures each pick on the 10,000 test images (no predictor data, no
    selection used them): the stored measurement is that of the pick on test, not on val; the study
    and the report say so, and a rerun with val images is another run, never a resume."""
    from apqopt.cli import main
    from apqopt.problem_spec import load_problem
    from apqopt.record import study_record
    from apqopt.supernet.collect import measure
    from apqopt.verify import measure_config

    url = str(tmp_path / "t.log")
    base = ["compare", "--space", "fmnist", "--latency", "0.3", "--budget", "20", "--seeds", "0"]
    base += ["--searchers", "random", "--verify-top", "1", "--storage", url, "--quiet", "--threads", "2"]
    assert main([*base, "--verify-images", "test", "--tag", "t", "--out", str(tmp_path / "r")]) == 0
    assert "10,000 test images" in capsys.readouterr().out
    study = optuna.load_study(study_name="t-random-fmnist-seed0", storage=open_storage(url))
    assert study.user_attrs["verify_images"] == "test"
    ((num, v),) = study.user_attrs["verified"].items()
    genes = study_record(study).codec().genes(study.trials[int(num)].params)
    cand = get_space("fmnist").to_candidates(genes[None])[0]
    assert v["measured_accuracy"] == measure(shipped_supernet, cand, measure_config("fmnist", "test"), seed=7_919)
    assert CompareReport.from_studies(url, ["t"]).verify_images == "test"

    def never(genes: np.ndarray) -> None:
        raise AssertionError("measured although the study holds another verification")

    with pytest.raises(StorageError, match="other settings"):  # val images: another run, refused before work
        compare(load_problem("fmnist", latency=0.3), ["random"], [0], 20, storage=url, tag="t", progress=False,
                verify_top=1, measurer=never)  # fmt: skip


def test_a_torn_last_journal_line_is_cut_before_writing(tmp_path: Path) -> None:
    """A writer killed mid-append leaves a journal whose last line has no newline; the next writer cuts it
    (it was never a committed record) instead of fusing its own first record with it."""
    from apqopt.problem_spec import load_problem
    from apqopt.search import make_searcher

    p = load_problem("fmnist", latency=0.6)
    path = tmp_path / "j.log"
    record(make_searcher("random", seed=0).run(p, 12), p, str(path), "a")
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code": 5, "worker_id": "dead", "trial_id": 3, "sta')
    record(make_searcher("random", seed=1).run(p, 12), p, str(path), "b")
    assert path.read_bytes().startswith(whole)
    for line in path.read_bytes().splitlines():
        json.loads(line)  # every line a record
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(open_storage(str(path)))}
    assert studies["a"].n_trials == 12 and studies["b"].n_trials == 12


def test_two_runs_record_into_one_sqlite_file_at_once(tmp_path: Path) -> None:
    """The islands pattern on SQLite: two processes recording into one file at the same time wait for
    each other (busy timeout) instead of failing with 'database is locked'; both studies end whole."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'islands.db'}"
    cmd = [sys.executable, "-m", "apqopt.cli", "search", "--searcher", "random", "--budget", "150"]
    cmd += ["--latency", "0.6", "--storage", url, "--quiet"]
    procs = [
        subprocess.Popen([*cmd, "--seed", str(k)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for k in (0, 1)
    ]
    errs = [p.communicate(timeout=600)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    for k in (0, 1):
        study = optuna.load_study(study_name=f"random-fmnist-seed{k}", storage=url)
        assert len(study.trials) == 150 and study.user_attrs["recorded"]["trials"] == 150


def test_a_reader_waits_out_a_writer_that_holds_sqlite_longer_than_5_s(tmp_path: Path) -> None:
    """The dashboard or `results` reading a SQLite study while a worker commits wait for the lock; with
    sqlite3's default 5-s busy timeout it would fail with 'database is locked' when a commit is slow
    (a loaded disk), as a plain `optuna.load_study(storage="sqlite:///...")` does here."""
    import sqlite3
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from apqopt.review import StudyReader

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    optuna.create_study(study_name="s", storage=open_storage(url))
    ours, plain = open_storage(url, create=False), optuna.storages.RDBStorage(url)  # opened, then locked out
    dashboard = StudyReader(url)
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")  # a slow commit in flight: readers wait
    release = threading.Timer(7.0, writer.execute, ("COMMIT",))
    release.start()
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:  # apqopt's two readers, at once
            name = pool.submit(lambda: optuna.load_study(study_name="s", storage=ours).study_name)
            counts = pool.submit(dashboard.tables.trial_counts)
            assert name.result() == "s" and counts.result() == {"s": 0}
        assert time.perf_counter() - t0 >= 6.5  # they waited the 7 s out, then read
    finally:
        release.join()
    writer.execute("BEGIN EXCLUSIVE")
    with pytest.raises(optuna.exceptions.StorageInternalError) as failed:  # sqlite3's default: 5 s, then fails
        optuna.load_study(study_name="s", storage=plain)
    assert "database is locked" in str(failed.value.__cause__)
    writer.execute("COMMIT")
    writer.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_batched_trial_writes_equal_optunas_own(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """`studies.add_trials` writes Optuna's tables directly, in batches; a study written so reads back
    exactly as one written by Optuna's `study.add_trials` (params, distributions, values, attrs,
    constraints, states, numbers, dates) -- on SQLite and PostgreSQL."""
    from apqopt.problem_spec import load_problem
    from apqopt.record import RecordCodec
    from apqopt.studies import add_trials

    url = f"sqlite:///{tmp_path / 'b.db'}" if kind == "sqlite" else str(request.getfixturevalue("postgres_url"))
    p = load_problem("fmnist", latency=0.6)
    ev = make_searcher("random", seed=3).run(p, 120).evaluated
    codec = RecordCodec.of(p)
    dists = codec.distributions()
    trials = [codec.frozen_trial(ev, i, dists) for i in range(len(ev))]
    trials.append(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"error": "x"}))
    store = open_storage(url)
    theirs = codec.create_study(store, f"optuna-{kind}")
    theirs.add_trials(trials)
    ours = codec.create_study(store, f"apqopt-{kind}")
    add_trials(store, ours, trials, chunk=50)  # several transactions

    def fields(t: optuna.trial.FrozenTrial) -> tuple[object, ...]:
        return (
            t.number,
            t.state,
            t.values,
            t.params,
            t.distributions,
            t.user_attrs,
            t.system_attrs,
            t.datetime_start,
            t.datetime_complete,
            t.constraints,
        )

    a = optuna.load_study(study_name=f"optuna-{kind}", storage=url).get_trials()
    b = optuna.load_study(study_name=f"apqopt-{kind}", storage=url).get_trials()
    assert len(a) == len(b) == 121
    assert [fields(t) for t in a] == [fields(t) for t in b]


def test_compare_shows_progress_inside_each_run(capfd: pytest.CaptureFixture[str]) -> None:
    """With progress on, every run of a comparison has its own bar, moved by the distinct networks its
    budget counts (the Run counts, so every searcher shows one, random and pymoo included), besides the
    bar over the runs; with progress off, nothing is drawn."""
    compare(problem(), ["random", "pymoo-nsga2"], [0, 1], 40, progress=True)
    err = capfd.readouterr().err
    for name in ("random seed 0", "random seed 1", "pymoo-nsga2 seed 0", "pymoo-nsga2 seed 1"):
        assert f"{name}:" in err, name  # drawn at the start, redrawn as evaluations come, cleared at the end
    assert "0/40 [" in err and "compare: 100%" in err
    compare(problem(), ["random"], [0], 40, progress=False)
    assert capfd.readouterr().err == ""


def test_missing_extras_are_named_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PostgreSQL URL without its driver names apqopt[postgres] (not Optuna's 'Failed to import DB access
    module'); an .onnx export without the export extra names apqopt[export] before any network is built."""
    import importlib.util
    import sys

    from apqopt.errors import ApqoptError
    from apqopt.export import check_out

    monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2 -> ImportError, as when not installed
    with pytest.raises(StorageError, match=r"driver is not installed; pip install 'apqopt\[postgres\]'"):
        open_storage("postgresql://user@127.0.0.1:1/db")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ApqoptError, match=r"needs onnxruntime: pip install 'apqopt\[export\]'"):
        check_out(tmp_path / "m.onnx")
    assert check_out(tmp_path / "m.pt2") == tmp_path / "m.pt2"  # torch.export needs no extra


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    """atomic_write publishes files with the mode open() would give them (0644 under umask 022), not
    mkstemp's 0600 that made reports, tables and weights unreadable to other users."""
    import os
    import stat

    from apqopt.fileio import atomic_write

    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(atomic_write(tmp_path / "r.md", "x").stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write(tmp_path / "s.md", "x").stat().st_mode) == 0o600
    finally:
        os.umask(old)


@contextlib.contextmanager
def killed_after(monkeypatch: pytest.MonkeyPatch, n: int) -> Iterator[None]:
    """Inside: writing trials stops after the first ``n`` as if the process died there (deterministic,
    where a real kill's moment may miss the window); the writer is whole again after."""
    import apqopt.studies as studies

    real = studies.add_trials

    def cut(store, study, part, **kw):  # type: ignore[no-untyped-def]
        real(store, study, part[:n], **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(studies, "add_trials", cut)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.setattr(studies, "add_trials", real)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_search_continue_extends_a_study_as_one_larger_run(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`search --continue` with a larger --budget keeps a finished study's trials (same ids) and adds the
    rest, ending equal to one run of the larger budget; refusals change nothing; a continuation cut
    short is flagged interrupted and the same command records it whole."""
    import apqopt.studies as studies
    from apqopt.cli import main

    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.log")
    base = ["search", "--latency", "0.3", "--storage", url, "--quiet", "--threads", "1"]

    def trials(name: str) -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()

    def same(a: list[optuna.trial.FrozenTrial], b: list[optuna.trial.FrozenTrial]) -> bool:
        return [(t.params, t.values, t.user_attrs) for t in a] == [(t.params, t.values, t.user_attrs) for t in b]

    name = "evolution-fmnist-seed0"
    assert main([*base, "--budget", "100"]) == 0
    first = trials(name)
    assert main([*base, "--budget", "250", "--continue"]) == 0
    assert "100 networks kept, 150 added" in capsys.readouterr().out
    grown = trials(name)
    assert [t._trial_id for t in grown[:100]] == [t._trial_id for t in first] and same(grown[:100], first)
    assert main([*base, "--budget", "250", "--study", "fresh"]) == 0
    assert len(grown) == 250 and same(grown, trials("fresh"))
    attrs = optuna.load_study(study_name=name, storage=open_storage(url)).user_attrs
    assert attrs["budget"] == 250 and attrs["evaluated"] == 250 and attrs["continued"][0]["from_budget"] == 100
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(open_storage(url))}
    assert summaries == {name: 250, "fresh": 250}
    if kind == "journal":  # the writes differ by storage kind; the decisions below do not
        return

    for refused, why in (
        (["--budget", "250", "--continue"], "already has --budget 250"),
        (["--budget", "300", "--continue", "--latency", "0.31"], "other settings"),
        (["--budget", "300", "--continue", "--overwrite"], "cannot go with --overwrite"),
        (["--budget", "300", "--continue", "--searcher", "random"], None),  # another study: a new one
    ):
        code = main([*base, *refused])
        if why is None:
            assert code == 0
            continue
        assert code == 2 and why in capsys.readouterr().err
        assert optuna.load_study(study_name=name, storage=open_storage(url)).user_attrs == attrs  # untouched

    # a continuation killed while writing: the study reads as interrupted; the same command makes it whole
    with killed_after(monkeypatch, 100):
        main([*base, "--budget", "400", "--continue"])
    assert studies.existing_study(open_storage(url), name)[0] == "incomplete"  # type: ignore[index]
    assert main([*base, "--budget", "400", "--continue"]) == 0
    assert main([*base, "--budget", "400", "--study", "fresh400"]) == 0
    assert studies.existing_study(open_storage(url), name)[0] == "complete"  # type: ignore[index]
    assert same(trials(name), trials("fresh400"))


def test_a_study_that_is_not_the_runs_path_is_not_extended(tmp_path: Path) -> None:
    """`extend` checks that the study's networks are the new run's first ones (another seed's are not):
    refused, and the study left as it was."""
    from apqopt.studies import extend, run_settings

    p, url = problem(limit=0.6), f"sqlite:///{tmp_path / 's.db'}"
    res = make_searcher("evolution", seed=0).run(p, 100)
    record(res, p, url, "s")
    other = make_searcher("evolution", seed=1).run(p, 200)
    with pytest.raises(StorageError, match="not the first ones of this run"):
        extend(other, p, url, "s", run_settings(p, "evolution", other.params, 200))
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    assert len(study.trials) == 100 and study.user_attrs["budget"] == 100
    assert study.user_attrs["recording"]["settings"] == study.user_attrs["recorded"]["settings"]


def test_a_recording_cut_inside_its_trials_reads_as_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `recorded` marker comes after the last trial: a record cut after some trials (deterministically,
    not at a random kill moment) leaves a study every reader calls incomplete, and the same run replaces it."""
    import apqopt.studies as studies

    p, url = problem(limit=0.6), f"sqlite:///{tmp_path / 's.db'}"
    res = make_searcher("random", seed=0).run(p, 60)
    with killed_after(monkeypatch, 30):
        record(res, p, url, "s")
    assert studies.existing_study(open_storage(url), "s")[0] == "incomplete"  # type: ignore[index]
    record(res, p, url, "s")  # the same run replaces it
    assert studies.existing_study(open_storage(url), "s")[0] == "complete"  # type: ignore[index]
    assert len(optuna.load_study(study_name="s", storage=open_storage(url)).trials) == 60


def test_extrapolated_predictions_are_marked_in_the_study_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recorded run names the trials whose prediction lies outside the predictor's training data (a study
    attr Optuna's users can read), and `search` marks them '!' in its summary. The predictor here learnt from
    6- and 8-bit policies only (the shipped one holds the space's corners, so it flags nothing), and a
    0.2 ms limit needs 4-bit layers."""
    from apqopt.cli import main
    from apqopt.problem_spec import load_problem
    from apqopt.record import RecordCodec

    sp, rng = get_space("fmnist"), np.random.default_rng(0)
    genes = sp.sample(300, rng)
    sp.block_genes(genes)[..., 2:] = np.maximum(sp.block_genes(genes)[..., 2:], 1)
    narrow = AccuracyPredictor("fmnist", "branch", hidden=16, depth=1, max_epochs=2)
    narrow.fit(sp.encode(genes), 0.8 + 0.1 * rng.random(300)).save(tmp_path / "narrow.pt")
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["search", "--latency", "0.2", "--budget", "2000", "--storage", url, "--quiet", "--top", "8"]
    args += ["--predictor", str(tmp_path / "narrow.pt")]
    assert main([*args, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["best"]
    study = optuna.load_study(study_name="evolution-fmnist-seed0", storage=open_storage(url))
    marked = study.user_attrs["outside_predictor_data"]
    assert marked["margin"] == 0.25 and marked["trials"]
    codec = RecordCodec(get_space("fmnist"))
    genes = np.stack([codec.genes(t.params) for t in study.get_trials()])
    flagged = load_problem("fmnist", predictor=str(tmp_path / "narrow.pt")).outside_data(genes)
    assert np.flatnonzero(flagged).tolist() == marked["trials"]
    assert any(b["outside_predictor_data"] for b in best)
    assert main([*args, "--study", "again"]) == 0
    assert "! outside the networks the predictor was fitted on" in capsys.readouterr().out
