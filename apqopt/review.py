"""Read-only access to recorded studies, as tables: what the dashboard (and notebooks) show.

Why separate from the dashboard: the data layer is plain pandas, testable without Streamlit, and
it never writes. Two adapters read the same tables: :class:`OptunaTables` through Optuna's API (any
storage; used for journal files) and :class:`SqlTables` with plain read-only queries on Optuna's
RDB schema (SQLite, PostgreSQL), which keeps a 50,000-trial study quick (Optuna's object API would
build 50,000 FrozenTrials). ``tests/test_review.py`` checks that both give the same tables.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa

from apqopt.errors import ApqoptError
from apqopt.optuna_adapter import SqlTables
from apqopt.record import (
    CONSTRAINTS_PREFIX,
    ENERGY_MJ,
    FEASIBLE,
    LATENCY_MS,
    RecordCodec,
    StudyRecord,
    feasible_of,
    read_trial,
    study_record,
)
from apqopt.search.pareto import non_dominated
from apqopt.settings import parse_storage
from apqopt.space import Candidate
from apqopt.studies import SQLITE_BUSY_S, StorageError, driver_missing

STUDY_COLUMNS = [
    "study",
    "state",
    "searcher",
    "seed",
    "space",
    "lut",
    "budget",
    "trials",
    "evaluated",
    "hypervolume",
    "best_accuracy",
    "wall_s",
]
TRIAL_COLUMNS = ["number", "state", "accuracy", "latency", "energy", "feasible"]
FEATURE_ROWS = 5_000  # trials whose params the trial table reads at most (the front always)


class OptunaTables:
    """The tables through Optuna's storage API (journal files, or any storage)."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self._storage = storage

    def study_attrs(self) -> dict[str, dict[str, Any]]:
        return {s.study_name: dict(study_record(s).attrs) for s in optuna.get_all_study_summaries(self._storage)}

    def trial_counts(self) -> dict[str, int]:
        return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(self._storage)}

    def study_directions(self) -> dict[str, list[str]]:
        return {s.study_name: [d.name for d in s.directions] for s in optuna.get_all_study_summaries(self._storage)}

    def trial_rows(self, study: str) -> pd.DataFrame:
        s = optuna.load_study(study_name=study, storage=self._storage)
        rows = [asdict(read_trial(t)) for t in s.get_trials(deepcopy=False)]
        return pd.DataFrame(rows, columns=TRIAL_COLUMNS)

    def trial_params(self, study: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
        trials = optuna.load_study(study_name=study, storage=self._storage).get_trials(deepcopy=False)
        return {n: dict(trials[n].params) for n in numbers if 0 <= n < len(trials) and trials[n].params}


def front_of(trials: pd.DataFrame) -> pd.DataFrame:
    """The feasible (accuracy, latency) front of a trial table, by latency."""
    df = trials[(trials["state"] == "COMPLETE") & trials["feasible"]]
    if not len(df):
        return df
    F = np.column_stack([-df["accuracy"].to_numpy(), df["latency"].to_numpy()])
    return df.iloc[non_dominated(F)].sort_values("latency")


def _read_only_url(url: str) -> str:
    target = parse_storage(url)
    if target.kind == "sqlite":
        assert target.path is not None
        if not target.path.exists():
            raise StorageError(f"no study database at {target.path}")
        return f"sqlite:///file:{target.path.resolve()}?mode=ro&uri=true"
    return target.url


class StudyReader:
    """Studies of one storage (SQLAlchemy URL or journal file path), read-only."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.journal = parse_storage(url).kind == "journal"
        except ApqoptError as exc:
            raise StorageError(str(exc)) from None
        self._notices: list[str] = []  # what was left out of the storage, and why
        self._left_out = ""
        if self.journal:
            if not Path(url).is_file():
                raise StorageError(f"no journal file at {url}")
            self.tables: OptunaTables | SqlTables = OptunaTables(self._journal(Path(url)))
        else:
            try:
                ro_url = _read_only_url(url)
                wait = {"timeout": SQLITE_BUSY_S} if ro_url.startswith("sqlite") else {}  # workers commit meanwhile
                engine = sa.create_engine(ro_url, connect_args=wait)
                with engine.connect() as c:
                    c.execute(sa.text("SELECT 1 FROM studies LIMIT 1"))
            except StorageError:
                raise
            except ImportError as exc:  # psycopg2 for postgresql:// URLs
                raise StorageError(driver_missing(url)) from exc
            except Exception as exc:
                raise StorageError(f"cannot read studies from {url!r}: {type(exc).__name__}: {exc}") from exc
            self.tables = SqlTables(engine)

    def _journal(self, path: Path) -> optuna.storages.BaseStorage:
        """The journal, or -- when a line of it is not JSON (a torn write, a stray edit) -- a read-only
        snapshot without those lines, with a notice: one bad line must not hide every study."""
        try:
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
            storage.get_all_studies()
            return storage
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            pass
        good, bad = [], 0
        for line in path.read_bytes().splitlines():
            try:
                if isinstance(json.loads(line), dict):
                    good.append(line)
                    continue
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass
            bad += 1
        self._snapshot = tempfile.TemporaryDirectory(prefix="apqopt-journal-")
        copy = Path(self._snapshot.name) / path.name
        copy.write_bytes(b"".join(line + b"\n" for line in good))
        self._notices.append(f"{path}: {bad} line(s) that are not journal records were skipped")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(copy)))

    def version(self) -> tuple[Any, ...]:
        """Changes whenever the storage is written (a journal grows; an RDB's counts move): the dashboard
        polls it cheaply and re-reads the studies only when it moved."""
        if self.journal:
            st = Path(self.url).stat()
            return (st.st_size, st.st_mtime_ns)
        assert isinstance(self.tables, SqlTables)
        return self.tables.version()

    @property
    def notices(self) -> list[str]:
        """What the last reading left out, and why (the dashboard shows these)."""
        return [*self._notices, *([self._left_out] if self._left_out else [])]

    # ------------------------------------------------------------------ studies
    def study_records(self) -> dict[str, StudyRecord]:
        """Every study's attrs, typed (:class:`~apqopt.record.StudyRecord`)."""
        return {name: StudyRecord(a) for name, a in self.tables.study_attrs().items()}

    def trial_counts(self) -> dict[str, int]:
        return self.tables.trial_counts()

    def studies(self, trials: Callable[[str], pd.DataFrame] | None = None) -> pd.DataFrame:
        """One row per apqopt study. ``trials``: where to get a study's trial table (default
        :meth:`trials`; the dashboard passes its cached reader so the page does not read them twice)."""
        trials_of = trials or self.trials
        attrs, counts = self.study_records(), self.trial_counts()
        # directions only decide empty studies (no attrs, no trials): read them only when there is one
        empty = any(not a.attrs and not counts.get(name) for name, a in attrs.items())
        directions = self.tables.study_directions() if empty else {}
        rows, foreign = [], []
        for name, a in attrs.items():
            state = a.state(counts.get(name, 0), directions.get(name))
            if state == "foreign":
                foreign.append(name)
                continue
            trials = trials_of(name) if counts.get(name) else pd.DataFrame()
            ok = trials[trials["feasible"]] if len(trials) else trials
            if state == "live" and a.budget and len(trials):
                # a live study is done once it holds its budget of complete trials
                done = int((trials["state"] == "COMPLETE").sum())
                state = "finished" if done >= int(a.budget) else "live"
            rows.append(
                {
                    "study": name,
                    "state": state,
                    "searcher": a.searcher or "?",
                    "seed": a.seed,
                    "space": a.space_name or "?",
                    "lut": a.lut,
                    "budget": a.budget,
                    "trials": counts.get(name, 0),
                    "evaluated": a.evaluated,
                    "hypervolume": a.hypervolume,
                    "best_accuracy": float(ok["accuracy"].max()) if len(ok) else None,
                    "wall_s": a.wall_s,
                }
            )
        self._left_out = ""
        if foreign:
            self._left_out = (
                f"{len(foreign)} stud{'y' if len(foreign) == 1 else 'ies'} not written by apqopt left out: "
                + ", ".join(sorted(foreign)[:5])
                + ("..." if len(foreign) > 5 else "")
            )
        table = pd.DataFrame(rows, columns=STUDY_COLUMNS)
        for col in ("seed", "budget", "evaluated", "hypervolume", "best_accuracy", "wall_s"):
            # numbers, NaN where a study has none (a live study records no 'evaluated'): a column of ints and
            # Nones is an object column that breaks every comparison a page makes
            table[col] = pd.to_numeric(table[col], errors="coerce")
        return table

    # ------------------------------------------------------------------ trials
    def trials(self, study: str) -> pd.DataFrame:
        """number, state, accuracy, latency, energy, feasible, and measured accuracy with its standard error
        where the trial was verified."""
        if isinstance(self.tables, SqlTables):
            df = self.tables.trial_rows(
                study,
                {"latency": LATENCY_MS, "energy": ENERGY_MJ, "feasible": FEASIBLE, "cons": CONSTRAINTS_PREFIX + "%"},
            )
            df["feasible"] = [feasible_of(f, x) for f, x in zip(df.pop("feasible"), df.pop("exceeded"))]
            df = df[TRIAL_COLUMNS]
        else:
            df = self.tables.trial_rows(study)
        verified = self._record(study).verified
        for col, by_number in (
            ("measured", {n: v.measured_accuracy for n, v in verified.items()}),
            ("stderr", {n: v.stderr for n, v in verified.items()}),
        ):
            df[col] = df["number"].map(by_number).astype(float) if by_number else np.nan
        return df

    def _record(self, study: str) -> StudyRecord:
        return self.study_records().get(study, StudyRecord())

    def front(self, study: str) -> pd.DataFrame:
        return front_of(self.trials(study))

    def genes(self, study: str, numbers: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(numbers found, their gene rows) of the given trials, rebuilt from their params."""
        return self._genes(study, numbers, self._record(study).codec())

    def _genes(self, study: str, numbers: list[int], codec: RecordCodec) -> tuple[np.ndarray, np.ndarray]:
        params = self.tables.trial_params(study, [int(n) for n in numbers])
        found = [int(n) for n in numbers if int(n) in params]
        rows = np.array([codec.genes(params[n]) for n in found], dtype=np.int64).reshape(len(found), -1)
        return np.array(found, dtype=np.int64), rows

    def candidate(self, study: str, number: int) -> Candidate:
        """Rebuild a trial's candidate from its params."""
        codec = self._record(study).codec()
        found, rows = self._genes(study, [number], codec)
        if not len(found):
            raise StorageError(f"study '{study}' has no trial {number}")
        return codec.space.to_candidates(rows)[0]

    def features(self, study: str, limit: int = FEATURE_ROWS, trials: pd.DataFrame | None = None) -> pd.DataFrame:
        """The trial table with readable features of each network (:meth:`SearchSpace.summary`) beside its
        values: every complete trial up to ``limit``, above it the feasible front plus an even sample of the
        rest (reading 125 params of 50,000 trials would take most of a minute). ``trials``: the study's
        trial table when the caller has it (the dashboard's cached one), else it is read."""
        df = self.trials(study) if trials is None else trials
        done = df[df["state"] == "COMPLETE"]
        numbers = done["number"].to_numpy()
        if len(numbers) > limit:
            keep = set(front_of(df)["number"].tolist())
            rest = numbers[~np.isin(numbers, list(keep))]
            keep |= set(rest[np.linspace(0, len(rest) - 1, max(limit - len(keep), 0)).astype(int)].tolist())
            numbers = np.array(sorted(keep))
        codec = self._record(study).codec()
        found, rows = self._genes(study, numbers.tolist(), codec)
        feats = pd.DataFrame(codec.space.summary(rows) if len(rows) else {}, index=found)
        return done.set_index("number").join(feats, how="inner").reset_index()
