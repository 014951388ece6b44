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

from tests.helpers import APP, recorded_storage
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


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The dashboard on a storage of real runs, served by `streamlit run` until the test ends."""
    url = recorded_storage(tmp_path / "studies.log")
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", APP, "--server.headless", "true", "--server.port", str(port)]
    cmd += ["--browser.gatherUsageStats", "false", "--", "--storage", url]
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
                raise RuntimeError(f"streamlit did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.5)
    yield base, url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_dashboard_in_headless_chromium(served: tuple[str, str], tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (bash scripts/setup-system.sh --test installs it)")
    base, url = served
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base)
        page.get_by_role("heading", name="Studies").wait_for(timeout=60_000)
        values = page.locator('[data-testid="stMetricValue"]')
        values.first.wait_for(timeout=60_000)
        assert values.all_inner_texts()[:2] == ["4", "480"]  # four recorded runs of 120 evaluations
        assert float(values.all_inner_texts()[2]) > 0.8
        assert f"storage: {url}" in page.locator('[data-testid="stSidebar"]').inner_text()
        page.screenshot(path=str(tmp_path / "studies.png"), full_page=True)
        page.get_by_text("Compare searchers", exact=True).click()
        page.get_by_role("heading", name="Compare searchers").wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the overlaid fronts drew
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
        browser.close()
    for name in ("studies.png", "compare.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if out := os.environ.get("APQOPT_SCREENSHOTS"):  # keep them (e.g. for the README)
        for name in ("studies.png", "compare.png"):
            shutil.copy(tmp_path / name, Path(out) / name)
