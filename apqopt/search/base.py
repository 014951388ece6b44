"""The searcher interface, and :class:`Run`: one searcher run's evaluation log and budget.

A searcher knows nothing of networks or hardware: it sees a :class:`Problem` (genes in, objectives
and constraint violations out) through a :class:`Run`, which counts evaluations against the budget
and keeps everything evaluated (pymoo's split: the problem defines, the evaluator counts). The list
of searchers is in :mod:`apqopt.search` (``SEARCHERS``), as Optuna lists its samplers.
"""

from __future__ import annotations

import inspect
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from apqopt.errors import ConfigError
from apqopt.search.problem import BudgetExhaustedError, Evaluation, Problem


class Run:
    """The evaluation log of one searcher run on a problem: counts *distinct networks* against ``budget``.

    Why apart from :class:`Problem`: a problem is a definition that many runs (searchers x seeds,
    workers) share; what was evaluated and how much budget is left belong to one run.

    Identity is the network, not the gene row: rows are compared in canonical form (dormant genes of
    blocks beyond a stage's depth ignored, see ``SearchSpace.canonical``). A network seen before comes
    back from the log at no cost, so every budget is spent on distinct networks and the log holds
    each network once. A run whose searcher keeps proposing only known networks for ``stall_after``
    rows in a row is *stalled*: searchers stop there and say so.
    """

    def __init__(self, problem: Problem, budget: int, stall_after: int = 2000, progress: str | None = None) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget <= 0:
            raise ConfigError(f"budget must be a positive whole number of evaluations, got {budget!r}")
        self.problem = problem
        self.budget = int(budget)
        self.stall_after = stall_after
        self.n_evaluated = 0  # distinct networks evaluated (what the budget counts)
        self.n_requested = 0  # rows asked for, known networks included
        self.eval_seconds = 0.0
        self._since_new = 0
        self._log: Evaluation | None = None  # capacity-doubling buffers; the first n_evaluated rows are real
        self._index: dict[bytes, int] = {}  # network identity -> position in the log
        self._key_dtype = np.uint8 if problem.space.cardinalities.max() <= 256 else np.uint16
        # progress: one bar per run, moved by what the budget counts (every searcher alike); None: no bar
        self._bar = None if progress is None else tqdm(total=self.budget, desc=progress, leave=False, unit="net")

    @property
    def remaining(self) -> int:
        return self.budget - self.n_evaluated

    @property
    def stalled(self) -> bool:
        return self._since_new >= self.stall_after

    @property
    def done(self) -> bool:
        """Budget spent, or the searcher only re-proposes known networks."""
        return self.remaining <= 0 or self.stalled

    def keys(self, genes: np.ndarray) -> list[bytes]:
        """The identity of each row's network: its canonical gene row (dormant genes ignored) as bytes."""
        canon = self.problem.space.canonical(self.problem.apply_fixed(np.asarray(genes)))
        small = np.ascontiguousarray(canon.astype(self._key_dtype))
        return small.view(np.dtype((np.void, small.shape[1] * small.itemsize))).ravel().tolist()

    def evaluate(self, genes: np.ndarray) -> Evaluation:
        """Evaluate a batch: new networks are priced and predicted (and counted), known ones come from
        the log. Rows are taken in order until the budget allows no further new network; the result
        covers that prefix, row for row, with the genes as asked."""
        if self.remaining <= 0:
            raise BudgetExhaustedError(f"budget of {self.budget} evaluations is spent")
        problem = self.problem
        genes = problem.apply_fixed(problem.space.validate_matrix(np.asarray(genes)))
        keys = self.keys(genes)
        where: list[int] = []  # per taken row: position in the log (existing or about to be added)
        fresh: list[int] = []  # rows to evaluate now
        pending: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            j = self._index.get(k, pending.get(k))
            if j is None:
                if len(fresh) >= self.remaining:
                    break
                j = pending[k] = self.n_evaluated + len(fresh)
                fresh.append(i)
                self._since_new = 0
            else:
                self._since_new += 1
            where.append(j)
        self.n_requested += len(where)
        if fresh:
            t0 = time.perf_counter()
            ev = problem.evaluate(genes[fresh])
            self.eval_seconds += time.perf_counter() - t0
            self._append(ev)
            self._index.update(pending)
            if self._bar is not None:
                self._bar.update(len(fresh))
        if self._log is None:
            return Evaluation.concat([])
        out = self._log.take(np.array(where, dtype=np.int64))
        out.genes = genes[: len(where)]
        return out

    def _append(self, ev: Evaluation) -> None:
        n, k = self.n_evaluated, len(ev)
        if self._log is None or n + k > len(self._log):
            size = min(max(2 * (n + k), 256), self.budget)  # never beyond the budget: no copy to waste
            grown = Evaluation(
                np.zeros((size, ev.genes.shape[1]), dtype=self._key_dtype),  # small: fewer pages to touch
                *(np.zeros(size, dtype=np.float64) for _ in range(4)),
            )
            if self._log is not None:
                for f in ("genes", "accuracy", "latency", "energy", "violation"):
                    getattr(grown, f)[:n] = getattr(self._log, f)[:n]
            self._log = grown
        for f in ("genes", "accuracy", "latency", "energy", "violation"):
            getattr(self._log, f)[n : n + k] = getattr(ev, f)
        self.n_evaluated = n + k

    def close(self) -> None:
        """End the progress bar (the run's log stays readable)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def evaluated(self) -> Evaluation:
        """Every distinct network evaluated so far, once each, in the order first seen."""
        if self._log is None:
            return Evaluation.concat([])
        out = self._log.take(slice(0, self.n_evaluated))
        out.genes = out.genes.astype(np.int64)
        return out

    def summary(self) -> dict[str, Any]:
        """What the run spent: distinct networks (the budget), rows asked for, and whether it stalled."""
        return {
            "distinct": self.n_evaluated,
            "requested": self.n_requested,
            "stopped_early": self.n_evaluated < self.budget,
        }


@dataclass
class SearchResult:
    searcher: str
    seed: int
    params: dict[str, Any]
    evaluated: Evaluation
    wall_s: float
    eval_s: float
    budget: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def best(self) -> int:
        """Index of the most accurate feasible candidate (-1 if none is feasible)."""
        feas = self.evaluated.feasible
        if not feas.any():
            return -1
        return int(np.flatnonzero(feas)[np.argmax(self.evaluated.accuracy[feas])])


class Searcher(ABC):
    """Base class: parameters in ``__init__`` (scikit-learn style), ``run(problem, budget)`` does the work."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    stall_after: ClassVar[int] = 2000  # known networks proposed in a row before the run counts as stalled

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's parameters (what ``get_params`` returns and ``--searcher-param`` sets)."""
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's contract, so ``sklearn.base.clone`` works; ``deep``
        is accepted for it: no parameter is itself an estimator)."""
        return {k: getattr(self, k) for k in self.param_names()}

    def recorded_params(self) -> dict[str, Any]:
        """The parameters as a study records them (JSON): an object given as a parameter (a sensitivity
        array or table) is recorded as "given"; :meth:`get_params` keeps the object itself, as ``clone`` needs."""
        return self.get_params()

    def set_params(self, **params: Any) -> Searcher:
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no parameter(s) {unknown}; it takes {self.param_names()}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    @abstractmethod
    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        """Spend the run's budget; return notes for the result."""

    def run(self, problem: Problem, budget: int, progress: bool = False) -> SearchResult:
        """Search ``problem`` with ``budget`` evaluated candidates."""
        log = Run(problem, budget, self.stall_after, progress=f"{self.name} seed {self.seed}" if progress else None)
        t0 = time.perf_counter()
        try:
            notes = {**(self._search(log, progress) or {}), **log.summary()}
        finally:
            log.close()
        return SearchResult(
            self.name,
            self.seed,
            self.recorded_params(),
            log.evaluated(),
            time.perf_counter() - t0,
            log.eval_seconds,
            log.budget,
            notes,
        )


def feasible_samples(
    problem: Problem, make: Any, n: int, max_tries: int, run: Run | None = None, oversample: int = 4
) -> tuple[np.ndarray, int]:
    """Draw n candidates from ``make(k)`` and re-draw the unacceptable ones, at most ``max_tries`` rounds,
    in batches. Unacceptable: infeasible (hardware cost is free to check) and, given a ``run``, a network
    the run has evaluated already or one drawn twice in this batch (so the budget goes to new networks).
    A re-draw round draws ``oversample`` times the missing count and keeps the first acceptable ones;
    three rounds in a row without one end the re-draws early (e.g. crossovers of near-identical parents).
    Returns the rows (leftovers kept, so the count is always n) and how many were still unacceptable."""
    genes = make(n)
    taken: set[bytes] = set()  # identities of the accepted rows of this batch
    ok = _accept(problem, genes, run, taken, n)
    bad = np.setdiff1d(np.arange(n), ok)
    barren = 0  # rounds in a row that found nothing: the operator's neighbourhood is exhausted
    for _ in range(max_tries):
        if not len(bad) or barren >= 2:
            break
        drawn = make(oversample * len(bad))
        fill = _accept(problem, drawn, run, taken, len(bad))
        genes[bad[: len(fill)]] = drawn[fill]
        bad = bad[len(fill) :]
        barren = 0 if len(fill) else barren + 1
    return genes, len(bad)


def feasible_start(
    problem: Problem,
    n: int,
    rng: np.random.Generator,
    max_tries: int,
    run: Run | None = None,
    finish: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """The starting population every searcher gets: uniform samples, the unacceptable ones re-drawn
    (bounded) alternately from uniform and cheap-biased samples (:meth:`Problem.sample_cheap`), so a tight
    limit that few uniform samples meet still gets a feasible start. ``finish`` maps drawn rows before
    they are checked (``joint-ilp`` gives each row its architecture's ILP bits)."""
    rounds = itertools.count()

    def draw(k: int) -> np.ndarray:
        genes = problem.sample(k, rng) if next(rounds) % 2 == 0 else problem.sample_cheap(k, rng)
        return finish(genes) if finish else genes

    return feasible_samples(problem, draw, n, max_tries, run)


def _accept(problem: Problem, genes: np.ndarray, run: Run | None, taken: set[bytes], limit: int) -> np.ndarray:
    """Indices of up to ``limit`` acceptable rows, in order; their identities join ``taken``.

    With a run, identity is checked before cost: near a converged population most re-drawn rows are
    known networks, and feasibility depends on the network alone, so only new networks are priced."""
    if run is None:
        return np.flatnonzero(problem.cost(genes)[2] <= 0)[:limit]
    index, seen = run._index, set(taken)
    new, keys = [], []
    for i, k in enumerate(run.keys(genes)):
        if k not in index and k not in seen:
            seen.add(k)
            new.append(i)
            keys.append(k)
    if not new:
        return np.zeros(0, dtype=np.int64)
    ok = np.flatnonzero(problem.cost(genes[new])[2] <= 0)[:limit]
    taken.update(keys[j] for j in ok)
    return np.array(new, dtype=np.int64)[ok]


def distinct_rows(run: Run, genes: np.ndarray) -> np.ndarray:
    """Indices of the first row of each distinct network, in order."""
    seen: set[bytes] = set()
    keep = []
    for i, k in enumerate(run.keys(genes)):
        if k not in seen:
            seen.add(k)
            keep.append(i)
    return np.array(keep, dtype=np.int64)
