"""One place for where apqopt writes by default, and for reading storage URLs.

Why: every default output (the study database, reports, caches, trained weights, host tables) lives
under one folder, ``APQOPT_HOME`` (default ``./studies``), so no module invents a path relative to
the working directory of its own, and a user moves everything with one variable. Storage URLs are
parsed here once, so every command agrees on what ``sqlite:///x.db``, ``runs.log`` or
``postgresql://...`` means.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from apqopt.errors import ConfigError

HOME_ENV = "APQOPT_HOME"


def home() -> Path:
    """The folder for default outputs: ``$APQOPT_HOME``, else ``studies`` in the working directory."""
    return Path(os.environ.get(HOME_ENV) or "studies")


def default_storage() -> str:
    """The embedded SQLite study database under :func:`home`."""
    return f"sqlite:///{home() / 'apqopt.db'}"


def reports_dir() -> Path:
    return home() / "reports"


def compare_dir() -> Path:
    return home() / "compare"


def mqe_cache_dir() -> Path:
    """OHQ's cache of per-operator sensitivities."""
    return home() / "mqe-cache"


def supernet_run_dir(space: str) -> Path:
    return home() / f"supernet-{space}"


def host_lut_path(precision: str, space: str) -> Path:
    return home() / f"host_{precision}_{space}.csv"


def benchmark_results_dir() -> Path:
    """Committed benchmark results (the dashboard's Fig. 7 chart): ``$APQOPT_RESULTS``, else the
    ``benchmarks/results`` folder of the source checkout this package was installed from."""
    env = os.environ.get("APQOPT_RESULTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def allowed_dirs(extra: list[str] | None = None) -> list[Path]:
    """Folders a worker may load files from when a *shared study* names them: ``$APQOPT_HOME``,
    ``$APQOPT_ALLOW_DIRS`` (``os.pathsep``-separated) and ``extra`` (``apqopt worker --allow-dir``).
    Whoever can write the database must not be able to make every worker read any file it likes."""
    env = [d for d in os.environ.get("APQOPT_ALLOW_DIRS", "").split(os.pathsep) if d]
    return [Path(d).resolve() for d in [str(home()), *env, *(extra or [])]]


def inside_allowed(path: str, allowed: list[Path]) -> Path:
    """``path`` resolved (links followed), if it lies inside one of ``allowed``; else a ConfigError."""
    real = Path(path).resolve()
    if any(real.is_relative_to(d) for d in allowed):
        return real
    raise ConfigError(
        f"the study asks this worker to load {path}, outside the folders it may read "
        f"({', '.join(map(str, allowed))}); if that file is yours, start the worker with --allow-dir {real.parent}"
    )


StorageKind = Literal["sqlite", "journal", "rdb"]


@dataclass(frozen=True)
class StorageURL:
    """A parsed storage: ``kind`` sqlite (``path`` set), journal (``path`` set) or rdb (any other
    SQLAlchemy URL). ``url`` is what Optuna's ``RDBStorage`` gets (journal: the file path)."""

    kind: StorageKind
    url: str
    path: Path | None = None

    @property
    def is_rdb(self) -> bool:
        return self.kind != "journal"


def parse_storage(url: str | None) -> StorageURL:
    """``sqlite:///path.db``, ``postgresql://...`` (any SQLAlchemy URL) or a ``.log``/``.journal`` file path.

    Refused: in-memory SQLite (``sqlite://``, ``sqlite:///``, ``:memory:``), which would store nothing.
    A SQLite path with ``?`` or ``#`` is quoted so the file named is the file opened.
    """
    url = url or default_storage()
    if "://" not in url:
        if url.endswith((".log", ".journal")):
            return StorageURL("journal", url, Path(url))
        raise ConfigError(
            f"storage {url!r}: give a URL (sqlite:///path.db, postgresql://user@host/db) or a .log journal file"
        )
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        path = rest.split("?", 1)[0] if not rest.startswith("file:") else rest
        if not path or path == ":memory:" or "mode=memory" in url:
            raise ConfigError(f"storage {url!r} is an in-memory database: nothing would be stored; name a file")
        if "?" in rest and not rest.startswith("file:"):
            raise ConfigError(f"storage {url!r}: a SQLite path may not contain '?'; rename the file")
        p = Path(path)
        return StorageURL("sqlite", f"sqlite:///{quote(str(p), safe='/:._-~')}", p)
    return StorageURL("rdb", url)
