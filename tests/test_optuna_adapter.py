"""Optuna's internals stay behind `apqopt/optuna_adapter.py`: a tested version range, no private name
anywhere else, and what the adapter reads equals Optuna's public API on the same studies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import optuna

from apqopt import optuna_adapter
from apqopt.record import CONSTRAINTS_PREFIX, ENERGY_MJ, FEASIBLE, LATENCY_MS
from apqopt.search import make_searcher
from apqopt.studies import open_storage, record
from tests.helpers import problem

ROOT = Path(__file__).resolve().parents[1]
PRIVATE = re.compile(r"\._(study_id|trial_id)\b|\bstudy\._storage\b|optuna\.storages\._|from optuna\.storages\._")


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def test_the_installed_optuna_is_in_the_tested_range_and_pyproject_says_so() -> None:
    lo, hi = optuna_adapter.OPTUNA_TESTED
    assert lo <= _version(optuna.__version__) < hi, f"optuna {optuna.__version__} is outside {lo}..{hi}"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("optuna"))
    assert spec.replace(" ", "") == f"optuna>={lo[0]}.{lo[1]},<{hi[0]}", spec


def test_no_private_optuna_name_outside_the_adapter() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in (ROOT / "apqopt").rglob("*.py")
        if p.name != "optuna_adapter.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not found, found
    assert PRIVATE.search("x = study._study_id") and PRIVATE.search("from optuna.storages._rdb import models")


def test_the_adapter_reads_what_optunas_public_api_reads(tmp_path: Path) -> None:
    """ids and storage as Optuna's own objects know them; SQL tables equal the public API's trials."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    p = problem(limit=0.6)
    study = record(make_searcher("random", seed=0).run(p, 30), p, url, "s")  # batch insert: the adapter's
    store = open_storage(url)
    loaded = optuna.load_study(study_name="s", storage=store)
    assert optuna_adapter.study_id(loaded) == store.get_study_id_from_name("s")
    inner = optuna_adapter.storage_of(loaded)  # Optuna wraps an RDB storage in its cache
    assert inner.get_study_user_attrs(optuna_adapter.study_id(loaded)) == loaded.user_attrs
    trials = loaded.get_trials()
    assert [optuna_adapter.trial_id(t) for t in trials] == [
        store.get_trial_id_from_study_id_trial_number(optuna_adapter.study_id(loaded), t.number) for t in trials
    ]
    tables = optuna_adapter.SqlTables(store.engine)
    keys = {"latency": LATENCY_MS, "energy": ENERGY_MJ, "feasible": FEASIBLE, "cons": f"{CONSTRAINTS_PREFIX}%"}
    rows = tables.trial_rows("s", keys)
    assert rows["number"].tolist() == [t.number for t in trials]
    np.testing.assert_allclose(rows["accuracy"], [t.values[0] for t in trials])
    np.testing.assert_allclose(rows["latency"], [t.user_attrs[LATENCY_MS] for t in trials])
    assert rows["feasible"].tolist() == [t.user_attrs[FEASIBLE] for t in trials]
    assert tables.trial_counts() == {"s": len(trials)}
    assert tables.study_attrs()["s"] == study.user_attrs
    params = tables.trial_params("s", [t.number for t in trials])
    assert [params[t.number] for t in trials] == [t.params for t in trials]
