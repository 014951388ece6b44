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


@pytest.fixture(scope="session")
def postgres_url():  # type: ignore[no-untyped-def]
    """A private PostgreSQL server for the test session (tests/servers.py)."""
    from tests.servers import MISSING, private_postgres, server_bindir

    if server_bindir() is None:
        pytest.skip(MISSING)
    with private_postgres() as url:
        yield url


# The longest tests, started first: on two xdist workers they then overlap the many short ones instead of
# running alone at the end (docs/own-task.md end to end, the asset build script, DDP).
LONGEST = ("test_own_task.py::", "test_collect.py::test_build_script", "test_ddp.py::")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not any(name in item.nodeid for name in LONGEST))  # stable: the rest keep order
