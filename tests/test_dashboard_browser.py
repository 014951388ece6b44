"""End to end in a real browser: `streamlit run` headless on a free localhost port, Debian's Chromium
driven by Playwright through the DevTools protocol, waiting for the app's content (a plain
`chromium --headless --screenshot` would capture only Streamlit's loading skeleton)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
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
    from apqopt.search.compare import compare, supernet_measurer
    from apqopt.search.problem import Problem
    from apqopt.shipped import supernet_path
    from apqopt.supernet.collect import CollectConfig
    from apqopt.supernet.train import load_supernet

    measurer = None
    if measured:
        cfg = CollectConfig(kind="fp", space="fmnist", eval_images=500)
        measurer = supernet_measurer(load_supernet(supernet_path("fmnist")), cfg)
    p = Problem.from_files("fmnist", latency=0.5)
    compare(
        p,
        ["random", "evolution"],
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
    port = free_port()
    cmd = [sys.executable, "-m", "apqopt.cli", "dashboard", "--storage", url, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
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
    yield base, url, port, request.param
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_dashboard_in_headless_chromium(served: tuple[str, str, int, str], tmp_path: Path) -> None:
    """Every page, on storages of real runs (a journal file with measured candidates, and PostgreSQL),
    with its content asserted; the server listens on 127.0.0.1 only. APQOPT_SCREENSHOTS=DIR keeps the
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
            page.wait_for_timeout(1500)  # charts finish drawing
            shots.append(f"{name.split()[0].lower()}.png")
            page.screenshot(path=str(tmp_path / shots[-1]), full_page=True)

        visit("Studies", ["By searcher"])
        values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert values[:2] == ["4", "320"]  # four runs of 80 distinct networks, every one stored
        assert f"storage: {url}" in page.locator('[data-testid="stSidebar"]').inner_text()
        visit("Compare searchers", ["Hypervolume vs evaluations", "Verdicts"])
        assert page.locator(".js-plotly-plot").count() >= 2  # fronts with all trials; HV bands
        assert "latency limit 0.5 ms" in page.locator(".js-plotly-plot").first.inner_text()
        visit("Candidate inspector", ["Rebuild it", "feasible"])
        assert "Candidate.from_json" in page.locator('[data-testid="stCode"]').inner_text()
        if kind == "journal":
            visit("Predictor", ["verified candidates (n)"])
            assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "8"
        else:
            visit("Predictor", ["No verified candidates yet"])
        visit("LUT explorer", ["layer shape"])
        browser.close()
    for name in shots:
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if (out := os.environ.get("APQOPT_SCREENSHOTS")) and kind == "journal":
        for name in shots:
            shutil.copy(tmp_path / name, Path(out) / name)
