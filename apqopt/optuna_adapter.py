"""Every use of Optuna's private internals, in one place: the study and trial ids its public objects
hide, one-transaction batch inserts through its table models, and read-only SQL on its RDB schema.

Why one module: Optuna keeps these free to change between releases. Here they sit behind a tested
upper bound on its version (``pyproject.toml``: ``optuna>=5.1,<6``; ``tests/test_optuna_adapter.py``
checks the installed version against it, that nothing else in apqopt touches a private name, and that
what the adapter writes and reads equals Optuna's public API results), so a new Optuna breaks one
module's tests, not a user's study.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
import pandas as pd
import sqlalchemy as sa

OPTUNA_TESTED = ((5, 1), (6, 0))  # [lowest, first untested) major.minor: keep in step with pyproject.toml


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study (what every storage method takes; ``Study`` keeps it private)."""
    return study._study_id


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (``Trial`` and ``FrozenTrial`` keep it private)."""
    return trial._trial_id


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a loaded study reads from (kept private by ``Study``)."""
    return study._storage


def insert_trials(store: optuna.storages.RDBStorage, study_id: int, trials: list[optuna.trial.FrozenTrial]) -> None:
    """One transaction: the rows Optuna's ``_create_new_trial`` writes for each template trial."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models

    session = store.scoped_session()
    try:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        first = session.query(models.TrialModel).filter(models.TrialModel.study_id == study_id).count()
        rows = []
        for n, t in enumerate(trials):
            row = models.TrialModel(
                study_id=study_id,
                number=first + n,
                state=t.state,
                datetime_start=t.datetime_start,
                datetime_complete=t.datetime_complete,
            )
            rows.append(row)
        session.add_all(rows)
        session.flush()  # trial ids
        dist_json: dict[int, str] = {}
        values, params, user, system = [], [], [], []
        for row, t in zip(rows, trials):
            tid = row.trial_id
            for objective, value in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append({"trial_id": tid, "objective": objective, "value": stored, "value_type": kind})
            for name, value in t.params.items():
                dist = t.distributions[name]
                params.append(
                    {
                        "trial_id": tid,
                        "param_name": name,
                        "param_value": dist.to_internal_repr(value),
                        "distribution_json": dist_json.setdefault(id(dist), distribution_to_json(dist)),
                    }
                )
            user += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items()]
            system += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in t.system_attrs.items()]
        for model, batch in (
            (models.TrialValueModel, values),
            (models.TrialParamModel, params),
            (models.TrialUserAttributeModel, user),
            (models.TrialSystemAttributeModel, system),
        ):
            if batch:
                session.execute(model.__table__.insert(), batch)  # Core: one executemany per table
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def heartbeat_missing(rdb: optuna.storages.RDBStorage, trial_id: int) -> bool:
    with rdb.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT 1 FROM trial_heartbeats WHERE trial_id = :t"), {"t": trial_id}).first()
    return row is None


class SqlTables:
    """The same tables with plain queries on Optuna's RDB schema, on a read-only connection."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def study_attrs(self) -> dict[str, dict[str, Any]]:
        q = sa.text(
            "SELECT s.study_name, a.key, a.value_json FROM studies s "
            "LEFT JOIN study_user_attributes a ON a.study_id = s.study_id"
        )
        out: dict[str, dict[str, Any]] = {}
        with self._engine.connect() as c:
            for name, key, value in c.execute(q):
                attrs = out.setdefault(name, {})
                if key is not None:
                    attrs[key] = json.loads(value)
        return out

    def trial_counts(self) -> dict[str, int]:
        q = sa.text(
            "SELECT s.study_name, COUNT(t.trial_id) FROM studies s "
            "LEFT JOIN trials t ON t.study_id = s.study_id GROUP BY s.study_name"
        )
        with self._engine.connect() as c:
            return {n: int(k) for n, k in c.execute(q)}

    def study_directions(self) -> dict[str, list[str]]:
        q = sa.text(
            "SELECT s.study_name, d.direction FROM studies s "
            "JOIN study_directions d ON d.study_id = s.study_id ORDER BY s.study_id, d.objective"
        )
        out: dict[str, list[str]] = {}
        with self._engine.connect() as c:
            for name, direction in c.execute(q):
                out.setdefault(name, []).append(str(direction).rsplit(".", 1)[-1])
        return out

    def trial_rows(self, study: str, keys: dict[str, str]) -> pd.DataFrame:
        """number, state, first value and the user attrs named by ``keys`` (latency, energy, feasible:
        the record codec's names), and ``exceeded`` (how many Optuna constraints a trial exceeds, read only
        for trials that carry no feasible flag)."""
        q = sa.text(
            "SELECT q.*, CASE WHEN q.feasible IS NULL THEN (SELECT COUNT(*) FROM trial_system_attributes x "
            "WHERE x.trial_id = q.trial_id AND x.key LIKE :cons AND CAST(x.value_json AS FLOAT) > 0) "
            "ELSE 0 END AS exceeded FROM ("
            "SELECT t.trial_id, t.number, t.state, v.value AS accuracy, "
            "MAX(CASE WHEN a.key = :latency THEN a.value_json END) AS latency, "
            "MAX(CASE WHEN a.key = :energy THEN a.value_json END) AS energy, "
            "MAX(CASE WHEN a.key = :feasible THEN a.value_json END) AS feasible "
            "FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
            "LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
            "WHERE s.study_name = :name GROUP BY t.trial_id, t.number, t.state, v.value) q ORDER BY q.number"
        )
        with self._engine.connect() as c:
            df = pd.read_sql(q, c, params={"name": study, **keys})
        df["number"] = df["number"].astype(int)
        for col in ("accuracy", "latency", "energy"):
            df[col] = pd.to_numeric(df[col])
        df["feasible"] = [None if pd.isna(v) else v == "true" for v in df["feasible"]]
        df["exceeded"] = pd.to_numeric(df["exceeded"]).fillna(0)
        df["state"] = df["state"].astype(str).str.replace("TrialState.", "", regex=False)
        return df[["number", "state", "accuracy", "latency", "energy", "feasible", "exceeded"]]

    def trial_params(self, study: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
        """Params (choice values) of the given trials. A categorical param is stored as an index into its
        distribution's choices: the distributions are read once per chunk, not once per row."""
        where = (
            "FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = :name AND t.number IN :nums"
        )
        nums = sa.bindparam("nums", expanding=True)
        dists = sa.text(f"SELECT DISTINCT p.param_name, p.distribution_json {where}").bindparams(nums)
        values = sa.text(f"SELECT t.number, p.param_name, p.param_value {where}").bindparams(nums)
        out: dict[int, dict[str, Any]] = {}
        with self._engine.connect() as c:
            for i in range(0, len(numbers), 900):  # under SQLite's bound-variable limit
                args = {"name": study, "nums": numbers[i : i + 900]}
                # Optuna refuses a param whose choices change within a study, so one distribution per name
                choices = {name: json.loads(dist)["attributes"]["choices"] for name, dist in c.execute(dists, args)}
                for number, name, value in c.execute(values, args):
                    out.setdefault(int(number), {})[name] = choices[name][int(value)]
        return out

    def version(self) -> tuple[Any, ...]:
        """Counts that change whenever a study, trial, value or study attr is written (one cheap query)."""
        q = sa.text(
            "SELECT (SELECT COUNT(*) FROM studies), (SELECT COUNT(*) FROM trials), "
            "(SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'), (SELECT COUNT(*) FROM trial_values), "
            "(SELECT COUNT(*) FROM trial_user_attributes), (SELECT COUNT(*) FROM study_user_attributes), "
            "(SELECT COALESCE(SUM(LENGTH(value_json)), 0) FROM study_user_attributes)"
        )
        with self._engine.connect() as c:
            return tuple(int(v) for v in c.execute(q).one())


__all__ = ["OPTUNA_TESTED", "SqlTables", "heartbeat_missing", "insert_trials", "storage_of", "study_id", "trial_id"]
