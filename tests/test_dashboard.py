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


def test_foreign_studies_and_torn_journal_lines_are_skipped_with_a_notice(
    storage: str, tmp_path: Path, app: Callable[[str, str], AppTest]
) -> None:
    """A study apqopt did not write, and a garbage line in the middle of a journal, are left out with a
    notice on every page instead of crashing it."""
    import optuna

    torn = tmp_path / "torn.log"
    torn.write_bytes(Path(storage).read_bytes())
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(torn)))
    optuna.create_study(study_name="not-ours", storage=journal).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2
    )
    lines = torn.read_bytes().splitlines(keepends=True)
    torn.write_bytes(b"".join([*lines[:5], b"garbage{{\n", *lines[5:]]))
    for page in ("Studies", "Candidate inspector", "Compare searchers", "Predictor"):
        at = app(str(torn), page)
        assert not at.exception, (page, at.exception)
        notes = " ".join(i.value for i in at.sidebar.info)
        assert "1 line(s) that are not journal records were skipped" in notes
        assert "not written by apqopt left out: not-ours" in notes


def _listening(port: int) -> list[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:
                out.append(addr)
    return out


def test_dashboard_command_binds_localhost_and_stops_with_its_parent(storage: str) -> None:
    """`apqopt dashboard` listens on 127.0.0.1 only by default (study data has no login), and SIGTERM to
    it stops the Streamlit process too."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "apqopt.cli", "dashboard", "--storage", storage, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 90
        while not _listening(port) and time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.5)
        assert _listening(port) == ["0100007F"]  # 127.0.0.1, nothing on 0.0.0.0 or ::
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
        deadline = time.time() + 30
        while _listening(port) and time.time() < deadline:
            time.sleep(0.5)
        assert not _listening(port)  # the Streamlit child is gone too
    finally:
        proc.kill()
