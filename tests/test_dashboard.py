"""Dashboard: every page driven with Streamlit's AppTest on storages made by real apqopt runs."""

from __future__ import annotations

import sys
import time
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
    assert layers["layer"].tolist()[:2] == ["stem (fixed)", "b0_expand"]
    assert layers["layer"].iloc[-1] == "classifier (fixed)"
    # the rows sum to the candidate's latency on the card (the stem and classifier were left out)
    assert layers["latency_ms"].sum() == pytest.approx(float(at.metric[2].value), abs=6e-4)


def test_predictor_and_lut_pages(storage: str, app: Callable[[str, str], AppTest]) -> None:
    at = app(storage, "Predictor")
    assert not at.exception and "apqopt verify" in at.info[0].value
    at = app(storage, "LUT explorer")
    assert not at.exception
    assert at.selectbox(key="lut_table").value == "bitfusion_apq-mbv2.csv"


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


def _compare_storage(path: Path, tag: str, searchers: list[str]) -> str:
    from apqopt.compare import compare
    from tests.helpers import problem

    url = str(path)
    compare(problem(), searchers, [0, 1], 60, storage=url, tag=tag, progress=False)
    return url


def test_each_storage_shows_only_its_own_compare_runs(tmp_path: Path, app: Callable[[str, str], AppTest]) -> None:
    """Two storages with different compare runs: every page reads only the storage it is given."""
    a = _compare_storage(tmp_path / "a.log", "runA", ["random", "evolution"])
    b = _compare_storage(tmp_path / "b.log", "runB", ["pymoo-nsga2"])
    for url, tag, want in ((a, "runA", {"random", "evolution"}), (b, "runB", {"pymoo-nsga2"})):
        at = app(url, "Compare searchers")
        assert not at.exception
        assert at.selectbox(key="cmp_run").options == [tag]
        metrics = at.dataframe[0].value
        assert set(metrics["searcher"]) == want and len(metrics) == 2 * len(want)
        assert set(metrics["seed"]) == {0, 1} and metrics["front_size"].gt(0).all()
        headers = " ".join(h.value for h in at.subheader)
        assert "Hypervolume vs evaluations" in headers
        if len(want) > 1:
            verdicts = at.markdown[-1].value
            assert "random" in verdicts and "evolution" in verdicts and "pymoo" not in verdicts
        at = app(url, "Studies")
        assert set(at.dataframe[0].value["searcher"]) == want
        at = app(url, "Candidate inspector")
        assert all(tag in s for s in at.selectbox(key="insp_study").options)


def test_a_study_added_while_the_app_runs_appears_on_the_next_run_and_nothing_is_reread_before(
    tmp_path: Path, app: Callable[[str, str], AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages read the storage under its version: an unchanged storage is not read again (a rerun costs
    nothing), a written one is read on the very next run (the sidebar's watcher triggers that run)."""
    from apqopt.review import StudyReader
    from apqopt.search import make_searcher
    from apqopt.studies import record
    from tests.helpers import problem

    reads = []
    real = StudyReader.studies
    monkeypatch.setattr(StudyReader, "studies", lambda self, *a: reads.append(1) or real(self, *a))
    url = recorded_storage(tmp_path / "live.log")
    at = app(url, "Studies")
    assert len(at.dataframe[0].value) == 4 and len(reads) == 1
    assert "checked for changes" in " ".join(c.value for c in at.sidebar.caption)
    at.run()
    assert len(reads) == 1  # same version: served from the cache
    p = problem()
    record(make_searcher("random", seed=9).run(p, 30), p, url, "added-later")
    at.run()
    assert "added-later" in set(at.dataframe[0].value["study"]) and len(reads) == 2


def test_inspector_opens_on_the_best_feasible_candidate_with_one_block_numbering(
    storage: str, app: Callable[[str, str], AppTest]
) -> None:
    from apqopt.review import StudyReader

    at = app(storage, "Candidate inspector")
    study = at.selectbox(key="insp_study").value
    df = StudyReader(storage).trials(study)
    best = df[df["feasible"] & (df["state"] == "COMPLETE")]["accuracy"].max()
    assert float(at.metric[0].value) == pytest.approx(best, abs=5e-5)
    assert at.metric[4].label == "feasible" and at.metric[4].value == "yes"
    blocks = at.dataframe[0].value
    layers = at.dataframe[1].value
    assert all(b.startswith("b") for b in blocks["block"])
    assert {name.split("_")[0] for name in layers["layer"] if name.startswith("b")} == set(blocks["block"])
    assert "stage" in at.markdown[0].value and "k" in at.markdown[0].value  # the network at a glance


def _journal_copy(storage: str, copy: Path) -> tuple[Path, object]:
    """A copy of the module's journal storage to write into (the shared one stays as the other tests read it)."""
    import optuna

    copy.write_bytes(Path(storage).read_bytes())
    return copy, optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(copy)))


def test_predictor_page_shows_n_errors_and_the_diagonal(
    storage: str, tmp_path: Path, app: Callable[[str, str], AppTest]
) -> None:
    import optuna

    copy, store = _journal_copy(storage, tmp_path / "verified.log")
    study = optuna.load_study(study_name="random-s0", storage=store)
    verified = {
        str(t.number): {
            "measured_accuracy": t.values[0] - 0.01 * k,
            "stderr": 0.004,
            "predicted_accuracy": t.values[0],
            "latency_ms": t.user_attrs["latency_ms"],
        }
        for k, t in enumerate(study.trials[:6])
    }
    study.set_user_attr("verified", verified)
    at = app(str(copy), "Predictor")
    assert not at.exception
    assert at.metric[0].label == "verified candidates (n)" and at.metric[0].value == "6"
    assert at.metric[1].value == "2.50"  # mean of 0, 1, ..., 5 points


def test_lut_explorer_opens_a_given_table_and_says_when_bits_do_not_matter(
    tmp_path: Path, app: Callable[[str, str], AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    from apqopt.shipped import tables_dir

    at = app("unused.log", "LUT explorer")
    assert "bitfusion_fmnist.csv" in at.selectbox(key="lut_table").options
    fp32 = tables_dir() / "host_fp32_fmnist.csv"  # fp32 on a CPU: the bits change nothing
    monkeypatch.setattr(sys, "argv", ["app.py", "--storage", "unused.log", "--lut", str(fp32)])
    at = app("unused.log", "LUT explorer")
    assert not at.exception and at.selectbox(key="lut_table").value == str(fp32)
    assert "does not depend on the bits" in at.info[0].value


def test_studies_page_on_a_live_only_storage_with_a_foreign_empty_study(
    tmp_path: Path, app: Callable[[str, str], AppTest]
) -> None:
    """A storage that holds only a `search --live` study (no 'evaluated' attr) and a plain
    optuna.create_study() with no trials: the Studies page shows the live study and does not crash
    (it raised TypeError comparing ints with None)."""
    import subprocess
    import sys

    import optuna

    url = f"sqlite:///{tmp_path / 'live.db'}"
    cmd = [sys.executable, "-m", "apqopt", "search", "--searcher", "optuna-random", "--live", "--budget", "12"]
    res = subprocess.run([*cmd, "--storage", url, "--study", "l", "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    optuna.create_study(storage=url, study_name="theirs")
    at = app(url, "Studies")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table["study"].tolist() == ["l"] and table["trials"].tolist() == [12]
    assert table["evaluated"].isna().all()
    assert table["state"].tolist() == ["finished"]  # it holds its budget of 12: no longer "live"


def _caption(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def test_inspector_picker_number_box_and_a_click_all_move_the_one_trial_shown(
    storage: str, app: Callable[[str, str], AppTest]
) -> None:
    """The picker used to be ignored once the number box had a value (its stale value won); now the
    picker, the number box and a front click each set the trial, and both widgets show it."""
    from apqopt.dashboard import _inspect

    at = app(storage, "Candidate inspector")
    study = at.selectbox(key="insp_study").value
    pick = at.selectbox(key=f"insp_pick_{study}")
    first, second = pick.options[0], pick.options[1]
    assert f"trial {pick.value} of '{study}'" in _caption(at)
    pick.select_index(1).run()
    number = int(second.split(":")[0].split()[1])
    assert f"trial {number} of '{study}'" in _caption(at)
    assert at.number_input(key=f"insp_typed_{study}").value == number
    pick = at.selectbox(key=f"insp_pick_{study}")
    pick.select_index(0).run()  # and back: the number box must not pull it to its old value
    assert f"trial {int(first.split(':')[0].split()[1])} of '{study}'" in _caption(at)
    at.number_input(key=f"insp_typed_{study}").set_value(7).run()
    assert f"trial 7 of '{study}'" in _caption(at) and at.selectbox(key=f"insp_pick_{study}").value == 7
    at.number_input(key=f"insp_typed_{study}").set_value(10_000).run()
    assert "has no completed trial 10000" in at.warning[0].value
    # a click on a front point (what st.plotly_chart's on_select hands the callback)
    at.session_state["cmp_front"] = {"selection": {"points": [{"customdata": ["random-s1", 3]}]}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("streamlit.session_state", at.session_state)
        _inspect("cmp_front")
    at.run()
    assert at.session_state["page"] == "Candidate inspector" and "trial 3 of 'random-s1'" in _caption(at)


def test_one_study_views_trial_table_history_importance_parallel(
    storage: str, app: Callable[[str, str], AppTest]
) -> None:
    at = app(storage, "Studies")
    assert at.selectbox(key="study_pick").value == "random-s0"
    assert len(at.get("plotly_chart")) == 1  # the study's front (the default view)
    at.session_state["study_view"] = "Trials"
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert len(table) == 120 and {"depth", "w_bits", "share_w4", "s0_w_bits", "latency"} <= set(table.columns)
    median = float(table["accuracy"].median())
    at.number_input(key="trials_min_acc").set_value(median).run()
    at.checkbox(key="trials_feasible").check().run()
    kept = at.dataframe[-1].value
    assert len(kept) == int(((table["accuracy"] >= median) & table["feasible"]).sum()) < 120
    assert f"{len(kept)} of 120 complete trials shown" in _caption(at)
    for view, says in (("History", ""), ("Importance", "fANOVA on 120 feasible trials"), ("Parallel", "drag")):
        at.session_state["study_view"] = view if view != "Parallel" else "Parallel coordinates"
        at.run()
        assert not at.exception, (view, at.exception)
        assert len(at.get("plotly_chart")) == 1 and says in _caption(at), view


def test_feature_importance_finds_the_feature_that_drives_the_target() -> None:
    """fANOVA over summarised features: with accuracy a function of weight bits alone, weight bits rank
    first by a wide margin."""
    import numpy as np
    import pandas as pd

    from apqopt import get_space
    from apqopt.dashboard import feature_importance

    sp = get_space("fmnist")
    df = pd.DataFrame(sp.summary(sp.sample(400, 0)))
    df["accuracy"] = 0.7 + 0.02 * df["w_bits"] + np.random.default_rng(0).normal(0, 0.001, len(df))
    scores = feature_importance(df, "accuracy")
    assert next(iter(scores)) == "w_bits" and scores["w_bits"] > 0.5


def test_fronts_are_told_apart_by_colour_per_searcher_and_marker_per_seed() -> None:
    import pandas as pd

    from apqopt.dashboard import INFEASIBLE, PALETTE, colours, front_figure

    pts = pd.DataFrame({"number": [0, 1], "latency": [0.2, 0.3], "accuracy": [0.8, 0.85], "measured": [None] * 2})
    fronts = [
        {"study": f"{s}-s{k}", "searcher": s, "seed": k, "front": pts, "measured": pts.iloc[:0]}
        for s in ("random", "evolution")
        for k in (0, 1)
    ]
    rest = pd.DataFrame({"study": ["x"] * 2, "number": [5, 6], "latency": [0.4, 0.9], "accuracy": [0.7, 0.9]})
    rest["feasible"] = [True, False]
    fig = front_figure(fronts, rest, colours(["random", "evolution"]), 0.5)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 4
    assert len({t.line.color for t in lines}) == 2 and {t.line.color for t in lines} <= set(PALETTE)
    by_seed = {t.name.split()[-1]: (t.marker.symbol, t.line.dash) for t in lines}
    assert len(set(by_seed.values())) == 2  # two seeds, two marker+dash styles
    infeasible = next(t for t in fig.data if t.name.startswith("infeasible"))
    assert infeasible.marker.symbol == INFEASIBLE["symbol"] == "x" and infeasible.marker.color == "#444444"
    assert [list(c) for c in lines[0].customdata] == [["random-s0", 0], ["random-s0", 1]]


def test_predictor_counts_a_network_once_and_the_inspector_shows_its_standard_error(
    storage: str, tmp_path: Path, app: Callable[[str, str], AppTest]
) -> None:
    """The same network verified in two studies is one point (it was counted once per study)."""
    import optuna

    copy, store = _journal_copy(storage, tmp_path / "twice.log")
    src = optuna.load_study(study_name="random-s0", storage=store)
    twin = optuna.create_study(study_name="random-s0-again", storage=store, directions=src.directions)
    for key, value in src.user_attrs.items():
        twin.set_user_attr(key, value)
    twin.add_trials(src.trials)
    verified = {
        str(t.number): {"measured_accuracy": t.values[0] - 0.01, "stderr": 0.004, "predicted_accuracy": t.values[0]}
        for t in src.trials[:3]
    }
    for study in (src, twin):
        study.set_user_attr("verified", verified)
    at = app(str(copy), "Predictor")
    assert not at.exception, at.exception
    assert at.metric[0].value == "3" and "3 measurement(s) of networks already counted" in _caption(at)
    at = app(str(copy), "Candidate inspector")
    at.number_input(key=f"insp_typed_{at.selectbox(key='insp_study').value}").set_value(0).run()
    assert at.metric[1].label == "measured accuracy ± SE" and at.metric[1].value.endswith("± 0.0040")


def test_a_postgresql_url_without_its_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna says "Failed to import DB access module"; the dashboard says what to install."""
    from apqopt.review import StudyReader
    from apqopt.studies import StorageError

    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if `apqopt[postgres]` were not installed
    with pytest.raises(StorageError, match=r"driver is not installed; pip install 'apqopt\[postgres\]'"):
        StudyReader("postgresql://u@localhost:1/db")
