"""The dashboard's data layer reads the same tables from every storage kind, through either adapter."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest

from apqopt.review import OptunaTables, SqlTables, StudyReader
from apqopt.search import make_searcher
from apqopt.studies import open_storage, record
from tests.helpers import problem


def fill(url: str) -> None:
    """The same two runs (one stored whole, one as its front) into a storage."""
    p = problem()
    record(make_searcher("random", seed=0).run(p, 30), p, url, "whole", full_limit=100)
    record(make_searcher("evolution", seed=1).run(p, 300), p, url, "front", full_limit=100)
    study = optuna.load_study(study_name="whole", storage=open_storage(url))
    study.set_user_attr("verified", {"3": {"measured_accuracy": 0.9}})


def tables(reader: StudyReader) -> dict[str, object]:
    studies = reader.studies()
    studies = studies[studies["study"].isin(["whole", "front"])]  # the session's PostgreSQL holds others too
    studies = studies.drop(columns=["wall_s"]).sort_values("study").reset_index(drop=True)
    return {
        "studies": studies,
        **{f"trials:{n}": reader.trials(n) for n in ("whole", "front")},
        **{f"front:{n}": reader.front(n).reset_index(drop=True) for n in ("whole", "front")},
        "candidate": reader.candidate("front", 2).to_json(),
        "features:whole": reader.features("whole"),
        "features:front": reader.features("front", limit=20),  # the front plus an even sample of the rest
    }


def assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], pd.DataFrame):
            pd.testing.assert_frame_equal(a[k], b[k], check_dtype=False, obj=k)  # type: ignore[arg-type]
        else:
            assert a[k] == b[k], k


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("rev") / "s.log")
    fill(url)
    return url


def test_sqlite_journal_and_postgres_read_the_same(journal: str, tmp_path: Path, postgres_url: str) -> None:
    sqlite = f"sqlite:///{tmp_path / 's.db'}"
    fill(sqlite)
    fill(postgres_url)
    ref = tables(StudyReader(journal))
    assert isinstance(StudyReader(journal).tables, OptunaTables)
    assert isinstance(StudyReader(sqlite).tables, SqlTables)
    assert ref["trials:whole"]["measured"].notna().sum() == 1  # type: ignore[index]
    assert len(ref["trials:front"]) < 300  # type: ignore[arg-type]
    for url in (sqlite, postgres_url):
        assert_same(tables(StudyReader(url)), ref)


def test_both_adapters_agree_on_one_database(tmp_path: Path) -> None:
    """The raw-SQL adapter against Optuna's own API on the very same SQLite file."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    fill(url)
    sql = StudyReader(url)
    api = StudyReader(url)
    api.tables = OptunaTables(open_storage(url))
    assert_same(tables(sql), tables(api))


@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgres"])
def test_version_moves_with_every_write_and_only_then(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What the dashboard's watcher polls: a new study, a trial's completion and a study attr (what
    `apqopt verify` writes) each move it; reading does not."""
    if kind == "postgres":
        from tests.servers import create_database

        url = create_database(request.getfixturevalue("postgres_url"), "version")
    else:
        url = str(tmp_path / "v.log") if kind == "journal" else f"sqlite:///{tmp_path / 'v.db'}"
    fill(url)
    reader = StudyReader(url)
    v0 = reader.version()
    reader.studies(), reader.trials("whole"), reader.features("whole")
    assert reader.version() == v0
    study = optuna.load_study(study_name="whole", storage=open_storage(url))
    trial = study.ask()
    assert reader.version() != v0
    v1 = reader.version()
    study.tell(trial, [0.5, 0.3])
    assert reader.version() != v1
    v2 = reader.version()
    study.set_user_attr("verified", {"3": {"measured_accuracy": 0.91}})  # same key, new value
    assert reader.version() != v2


@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgres"])
def test_a_trial_without_a_feasible_flag_is_judged_by_its_constraints(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """One rule for every reader (the SQL tables, Optuna's API, verify's picks): a trial that says nothing
    of feasibility (a user's own objective) is feasible unless an Optuna constraint of it is exceeded."""
    from apqopt.record import FEASIBLE, LATENCY_MS
    from apqopt.verify import pick_front

    if kind == "postgres":
        from tests.servers import create_database

        url = create_database(request.getfixturevalue("postgres_url"), "unflagged")
    else:
        url = str(tmp_path / "u.log") if kind == "journal" else f"sqlite:///{tmp_path / 'u.db'}"
    study = optuna.create_study(study_name="own", storage=open_storage(url), directions=["maximize", "minimize"])
    study.set_user_attr("space", "fmnist")
    study.set_user_attr("searcher", "mine")  # an apqopt-shaped study written by a user's own code
    for value, excess, flag in ((0.9, 0.2, None), (0.8, -0.1, None), (0.7, None, None), (0.95, None, False)):
        trial = study.ask()
        trial.set_user_attr(LATENCY_MS, 0.5)
        if excess is not None:
            trial.set_constraint("latency", excess)
        if flag is not None:
            trial.set_user_attr(FEASIBLE, flag)
        study.tell(trial, [value, 0.5])
    want = [False, True, True, False]
    assert StudyReader(url).trials("own")["feasible"].tolist() == want
    assert [t.number for t in pick_front(study.get_trials(), 4)] == [1]  # the best feasible at 0.5 ms
