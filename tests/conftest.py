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
