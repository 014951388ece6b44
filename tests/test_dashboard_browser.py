"""End to end in a real browser: `streamlit run` headless on a free localhost port, Debian's Chromium
driven by Playwright through the DevTools protocol, waiting for the app's content (a plain
`chromium --headless --screenshot` would capture only Streamlit's loading skeleton)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def compare_storage(url: str, tag: str, measured: bool) -> str:
    """A storage holding a real compare run (two searchers, two seeds); with ``measured``, two candidates
    per run measured on the shipped supernet (full precision on 500 images: quick, and real)."""
    from apqopt.compare import compare, supernet_measurer
    from apqopt.problem_spec import load_problem
    from apqopt.shipped import supernet_path
    from apqopt.supernet.collect import CollectConfig
    from apqopt.supernet.train import load_supernet

    measurer = None
    if measured:
        cfg = CollectConfig(kind="fp", space="fmnist", eval_images=500)
        measurer = supernet_measurer(load_supernet(supernet_path("fmnist")), cfg)
    p = load_problem("fmnist", latency=0.5)
    compare(
        p,
        ["optuna-random-raw", "evolution"],  # raw: infeasible draws are trials too, as Optuna records them
        [0, 1],
        80,
        storage=url,
        tag=tag,
        progress=False,
        verify_top=2 if measured else 0,
        measurer=measurer,
    )
    return url


@pytest.fixture(params=["journal", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`apqopt dashboard` (default address) on a storage of real compare runs, until the test ends."""
    if request.param == "journal":
        request.getfixturevalue("fmnist_available")
        url = compare_storage(str(tmp_path / "studies.log"), "browser", measured=True)
    else:
        from tests.servers import create_database

        url = compare_storage(create_database(request.getfixturevalue("postgres_url"), "browser"), "browser", False)
    with serve(url, tmp_path) as (base, port):
        yield base, url, port, request.param


@contextlib.contextmanager
def serve(url: str, cwd: Path) -> Iterator[tuple[str, int]]:
    """`apqopt dashboard --storage URL` on a free port, until the block ends: (base URL, port)."""
    port = free_port()
    cmd = [sys.executable, "-m", "apqopt.cli", "dashboard", "--storage", url, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"dashboard did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.5)
    try:
        yield base, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def write_more(url: str, kind: str) -> float:
    """Another study into a served storage, as another process would: a recorded run into the journal; a
    live study worked to its budget plus someone's empty ``optuna.create_study`` into PostgreSQL. Returns
    when the write ended."""
    if kind == "journal":
        from apqopt.problem_spec import load_problem
        from apqopt.search import make_searcher
        from apqopt.studies import record

        p = load_problem("fmnist", latency=0.5)
        record(make_searcher("random", seed=5).run(p, 20), p, url, "late")
    else:
        import optuna

        cmd = [sys.executable, "-m", "apqopt", "search", "--searcher", "optuna-random", "--live", "--budget", "12"]
        res = subprocess.run(
            [*cmd, "--storage", url, "--study", "late-live", "--quiet"], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        optuna.create_study(storage=url, study_name="theirs")
    return time.time()


@pytest.mark.slow
def test_dashboard_in_headless_chromium(served: tuple[str, str, int, str], tmp_path: Path) -> None:
    """Every page, on storages of real runs (a journal file with measured candidates, and PostgreSQL),
    with its content asserted, driven as a user does: the trial table's CSV downloaded, a front point
    clicked open in the inspector, the inspector's picker used, and a study written meanwhile seen within
    15 s without a click (PostgreSQL: a live study and a foreign empty one). The server listens on
    127.0.0.1 only. APQOPT_SCREENSHOTS=DIR keeps the
    screenshots (docs/ holds the current ones)."""
    from tests.test_dashboard import _listening

    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (bash scripts/setup-system.sh --test installs it)")
    base, url, port, kind = served
    assert _listening(port) == ["0100007F"]  # `apqopt dashboard`'s default address
    shots = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base)

        def visit(name: str, expect: list[str]) -> None:
            if name != "Studies":
                page.locator('[data-testid="stSidebar"]').get_by_text(name, exact=True).click()
            page.get_by_role("heading", name=name).wait_for(timeout=60_000)
            for text in expect:
                page.get_by_text(text).first.wait_for(timeout=60_000)
            page.get_by_role("heading", name=name).scroll_into_view_if_needed()  # the page's top, for the shot
            page.wait_for_timeout(1500)  # charts finish drawing
            shots.append(f"{name.split()[0].lower()}.png")
            page.screenshot(path=str(tmp_path / shots[-1]), full_page=True)

        visit("Studies", ["By searcher"])
        values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert values[:2] == ["4", "320"]  # four runs of 80 distinct networks, every one stored
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert f"storage: {url}" in sidebar.inner_text() and "checked for changes" in sidebar.inner_text()

        # the trial table of one study, filtered, and its CSV as a user downloads it
        page.locator('[data-testid="stButtonGroup"]').get_by_text("Trials", exact=True).click()
        page.get_by_text("complete trials shown").wait_for(timeout=60_000)
        shown = page.get_by_text("complete trials shown").inner_text()
        with page.expect_download(timeout=60_000) as dl:
            page.get_by_text("download CSV").click()
        rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
        assert len(rows) == int(shown.split()[0].replace(",", "")) == 80
        assert {"number", "accuracy", "latency", "feasible", "depth", "w_bits", "share_w4"} <= set(rows[0])
        page.wait_for_timeout(500)
        shots.append("studies-trials.png")
        page.screenshot(path=str(tmp_path / shots[-1]), full_page=True)

        visit("Compare searchers", ["Hypervolume vs evaluations", "Verdicts"])
        assert page.locator(".js-plotly-plot").count() >= 2  # fronts with all trials; HV bands
        chart = page.locator(".js-plotly-plot").first
        assert "latency limit 0.5 ms" in chart.inner_text()
        # infeasible trials have a visible legend icon (it was a blank 'x-thin' with no line)
        icon = chart.evaluate(
            """el => { for (const t of el.querySelectorAll('.legend .traces')) {
                 if (t.textContent.startsWith('infeasible')) {
                   const p = t.querySelector('.legendpoints path');
                   return [p.getAttribute('d') || '', getComputedStyle(p).fill, t.textContent]; } }
               return [...el.querySelectorAll('.legend .traces')].map(t => t.textContent); }"""
        )
        assert len(icon) == 3 and icon[0] and icon[1] == "rgb(68, 68, 68)", icon
        # a click on a front point opens that candidate in the inspector
        point = chart.locator(".scatterlayer .trace .points path").first
        study, number = point.evaluate("el => el.closest('.trace').__data__[0].trace.customdata[el.__data__.i]")
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)  # plotly picks the clicked point from the hover
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        page.get_by_role("heading", name="Candidate inspector").wait_for(timeout=60_000)
        page.get_by_text(f"trial {number} of '{study}'").wait_for(timeout=60_000)

        visit("Candidate inspector", ["Rebuild it", "feasible"])
        assert "Candidate.from_json" in page.locator('[data-testid="stCode"]').inner_text()
        card = float(page.locator('[data-testid="stMetricValue"]').nth(2).inner_text())  # latency (ms)
        summed = page.get_by_text("The rows sum to").inner_text().split("sum to ")[1].split(" ms")[0]
        assert abs(float(summed) - card) < 6e-4  # stem and classifier are rows too
        # the picker moves the trial shown (it was ignored once the hidden number box held a value)
        picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="candidate")
        picker.click()
        option = page.get_by_role("option").nth(1)
        chosen = option.inner_text().split(":")[0]  # "trial N"
        option.click()
        page.get_by_text(f"{chosen} of '{study}'").wait_for(timeout=60_000)
        if kind == "journal":
            visit("Predictor", ["verified candidates (n)"])
            from apqopt.review import StudyReader

            r = StudyReader(url)
            n = sum(int(r.trials(name)["measured"].notna().sum()) for name in r.studies()["study"])
            assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == str(n) and n >= 6
        else:
            visit("Predictor", ["No verified candidates yet"])
        visit("LUT explorer", ["layer shape"])

        # live: a study written while the Studies page is open shows up without a click
        page.locator('[data-testid="stSidebar"]').get_by_text("Studies", exact=True).click()
        page.get_by_text("By searcher").wait_for(timeout=60_000)
        written = write_more(url, kind)
        page.locator('[data-testid="stMetricValue"]').first.filter(has_text="5").wait_for(timeout=15_000)
        seen = time.time() - written
        assert seen <= 15
        if kind == "postgres":  # a finished live study and someone's empty optuna study, after a refresh
            page.get_by_text("not written by apqopt left out: theirs").wait_for(timeout=15_000)
            table = page.locator('[data-testid="stDataFrame"]').first.locator("td")
            deadline = time.time() + 15  # the notice is drawn before the table: the old table may still show
            while True:
                cells = table.all_text_contents()
                state = cells[cells.index("late-live") + 1] if "late-live" in cells else None  # column after name
                if state == "finished" or time.time() > deadline:
                    break
                page.wait_for_timeout(250)
            assert state == "finished"
        browser.close()
    for name in shots:
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if (out := os.environ.get("APQOPT_SCREENSHOTS")) and kind == "journal":
        for name in shots:
            shutil.copy(tmp_path / name, Path(out) / name)


@pytest.mark.slow
def test_dashboard_on_a_live_only_storage_in_headless_chromium(tmp_path: Path) -> None:
    """A SQLite file holding only a `search --live` study and someone's empty `optuna.create_study()`:
    the Studies page (which crashed on it) shows the live study, finished, and leaves the other out."""
    import optuna

    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (bash scripts/setup-system.sh --test installs it)")
    url = f"sqlite:///{tmp_path / 'live.db'}"
    cmd = [sys.executable, "-m", "apqopt", "search", "--searcher", "optuna-random", "--live", "--budget", "12"]
    res = subprocess.run([*cmd, "--storage", url, "--study", "l", "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    optuna.create_study(storage=url, study_name="theirs")
    with serve(url, tmp_path) as (base, _), playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base)
        page.get_by_text("By searcher").wait_for(timeout=60_000)
        page.get_by_text("not written by apqopt left out: theirs").wait_for(timeout=15_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        table = page.locator('[data-testid="stDataFrame"]').first
        table.locator("td", has_text="finished").wait_for(state="attached", timeout=60_000)
        assert page.locator('[data-testid="stMetricValue"]').all_inner_texts()[:2] == ["1", "12"]
        assert table.locator("td").all_text_contents()[:2] == ["l", "finished"]
        browser.close()
