"""Shared fixtures: the reference data folder (../shared beside the project, read-only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("APQOPT_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    ref = SHARED / "reference"
    if not ref.is_dir():
        pytest.skip(f"reference data not found at {ref} (CI has ../shared beside the project; set APQOPT_SHARED)")
    return ref


@pytest.fixture(scope="session")
def fmnist_available() -> None:
    from apqopt.supernet.data import FILES, data_dir

    if not (data_dir() / FILES["train"][0]).exists():
        pytest.skip(f"Fashion-MNIST not installed at {data_dir()} (apt-get install -y dataset-fashion-mnist)")


@pytest.fixture(scope="session")
def shipped_supernet(fmnist_available: None):  # type: ignore[no-untyped-def]
    from apqopt.supernet.train import load_supernet

    path = Path(__file__).resolve().parents[1] / "apqopt" / "assets" / "fmnist" / "supernet.pt"
    if not path.exists():
        pytest.skip("no shipped supernet weights yet (apqopt supernet train)")
    return load_supernet(path)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url():  # type: ignore[no-untyped-def]
    """A private PostgreSQL server (Debian `postgresql`) on a temporary directory and a localhost port,
    started for this test session and removed afterwards. Root runs it as the `postgres` user."""
    import glob
    import shutil
    import subprocess
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL server not installed (bash scripts/setup-system.sh --test installs it)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="apqopt-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)
