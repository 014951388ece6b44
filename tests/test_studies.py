"""Recording runs as Optuna studies, and the head-to-head comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from apqopt.search.base import make_searcher
from apqopt.search.compare import compare, hypervolume, write_report
from apqopt.studies import StorageError, load_history, non_dominated, open_storage, record
from tests.test_search import problem


def test_record_every_candidate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    p = problem(200)
    res = make_searcher("evolution", seed=1).run(p)
    record(res, p, url, "evo", full_limit=200)
    loaded = optuna.load_study(study_name="evo", storage=url)
    trials = loaded.get_trials()
    assert len(trials) == 200 and loaded.user_attrs["searcher"] == "evolution"
    assert loaded.user_attrs["trials_hold"] == "every evaluated candidate" and loaded.user_attrs["budget"] == 200
    t = trials[0]
    assert set(t.params) == set(p.space.gene_names()) and t.params["b0_kernel"] in (3, 5, 7)
    assert t.system_attrs["constraints"] == [t.system_attrs["constraints:latency"]]
    hist = load_history(loaded)
    np.testing.assert_allclose(hist.accuracy, res.evaluated.accuracy)
    np.testing.assert_array_equal(hist.feasible, res.evaluated.feasible)
    # the same name again is refused and nothing stored changes
    with pytest.raises(StorageError, match="already exists"):
        record(res, p, url, "evo", full_limit=200)
    assert len(optuna.load_study(study_name="evo", storage=url).get_trials()) == 200


def test_large_runs_keep_front_and_side_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    p = problem(400)
    res = make_searcher("random", seed=0).run(p)
    study = record(res, p, url, "rnd", full_limit=100)
    front = non_dominated(res.evaluated, ("latency",))
    assert len(study.get_trials()) == len(front) < 400
    assert all(t.user_attrs["feasible"] for t in study.get_trials())
    hist = load_history(optuna.load_study(study_name="rnd", storage=url))
    np.testing.assert_array_equal(hist.genes, res.evaluated.genes)


def test_bad_storage_urls(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open storage 'nosuchdb://x'"):
        open_storage("nosuchdb://x")
    journal = open_storage(str(tmp_path / "j.log"))
    assert isinstance(journal, optuna.storages.JournalStorage)


def test_compare_report(tmp_path: Path) -> None:
    p = problem(300)
    report, results = compare(p, ["random", "evolution"], [0, 1], storage=str(tmp_path / "c.log"), progress=False)
    summ = report.summary()
    assert set(summ) == {"random", "evolution"} and all(e["seeds"] == 2 for e in summ.values())
    for run, res in zip(report.runs, results):
        assert run.hv == pytest.approx(hypervolume(res.evaluated, report.reference)) and run.hv > 0
        assert [c for c, _ in run.hv_curve][-1] == 300 and run.study is not None
    assert "| evolution |" in report.markdown() or "| random |" in report.markdown()
    paths = write_report(report, results, tmp_path / "out")
    assert all(x.exists() and x.stat().st_size > 0 for x in paths)
