"""Dashboard: every page driven with Streamlit's AppTest on storages made by real apqopt runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from tests.helpers import APP, recorded_storage


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    return recorded_storage(tmp_path_factory.mktemp("dash") / "studies.log")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], AppTest]:
    """Run the app on a storage and page; the storage goes through the environment, restored afterwards."""

    def run(url: str, page: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["page"] = page
        monkeypatch.setenv("APQOPT_STORAGE", url)
        return at.run()

    return run


def test_studies_page(storage: str, app: Callable[[str, str], AppTest]) -> None:
    at = app(storage, "Studies")
    assert not at.exception
    table = at.dataframe[0].value
    assert sorted(table["study"]) == ["evolution-s0", "evolution-s1", "random-s0", "random-s1"]
    assert (table["trials"] == 120).all() and table["best_accuracy"].gt(0.8).all()
    at.multiselect(key="filter_searchers").select("evolution").run()
    assert sorted(at.dataframe[0].value["searcher"].unique()) == ["evolution"]
    assert at.dataframe[1].value["studies"].tolist() == [2]


def test_compare_and_inspector_pages(storage: str, app: Callable[[str, str], AppTest]) -> None:
    at = app(storage, "Compare searchers")
    assert not at.exception
    metrics = at.dataframe[0].value
    assert len(metrics) == 4 and metrics["front_size"].gt(0).all()
    at = app(storage, "Candidate inspector")
    assert not at.exception
    assert at.metric[0].label == "predicted accuracy" and float(at.metric[0].value) > 0.8
    assert "Candidate.from_json" in at.code[0].value
    layers = at.dataframe[1].value
    assert layers["layer"].iloc[0] == "b0_expand"


def test_predictor_and_lut_pages(storage: str, app: Callable[[str, str], AppTest]) -> None:
    at = app(storage, "Predictor")
    assert not at.exception and "apqopt verify" in at.info[0].value
    at = app(storage, "LUT explorer")
    assert not at.exception
    assert at.selectbox(key="lut_space").value == "fmnist"


def test_empty_states(tmp_path: Path, app: Callable[[str, str], AppTest]) -> None:
    at = app(str(tmp_path / "missing.log"), "Studies")
    assert not at.exception and "No storage to show" in at.warning[0].value
    empty = tmp_path / "empty.log"
    import optuna

    optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(empty)))
    empty.touch()
    at = app(str(empty), "Studies")
    assert not at.exception and "holds no studies" in at.info[0].value
