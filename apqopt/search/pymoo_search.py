"""pymoo's NSGA-II on an integer-coded :class:`pymoo.core.problem.Problem` built from our Problem.

``PymooProblem`` is a real pymoo problem (vectorised ``_evaluate``, integer variables, G <= 0
constraints), so users can hand it to any pymoo algorithm directly; with a :class:`Run` it counts
evaluations against that run's budget (what apqopt's own searcher does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem as _PymooBase
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize

from apqopt.search.base import Run, Searcher
from apqopt.search.problem import Problem

PENALTY = 1e9


class PymooProblem(_PymooBase):
    """Minimise [-accuracy, costs...] subject to cost - limit <= 0, over the free integer genes."""

    def __init__(self, problem: Problem, run: Run | None = None) -> None:
        lo, hi = problem.gene_bounds()
        free = np.flatnonzero(hi > lo)  # fixed genes (single choice) are not pymoo variables
        super().__init__(
            n_var=len(free),
            n_obj=1 + len(problem.objectives),
            n_ieq_constr=len(problem.constraints),
            xl=lo[free],
            xu=hi[free],
            vtype=int,
        )
        self.problem, self.run, self.free, self.template = problem, run, free, lo

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        genes = np.repeat(self.template[None], len(X), axis=0)
        genes[:, self.free] = np.clip(np.round(X), self.xl, self.xu).astype(np.int64)
        n = len(genes)
        F = np.full((n, self.n_obj), PENALTY)
        G = np.full((n, self.n_ieq_constr), PENALTY)
        k = n if self.run is None else min(n, self.run.remaining)
        if k > 0:
            ev = self.problem.evaluate(genes[:k]) if self.run is None else self.run.evaluate(genes[:k])
            F[:k] = self.problem.objective_matrix(ev)
            G[:k] = self.problem.constraint_matrix(ev)
        out["F"] = F
        if self.n_ieq_constr:
            out["G"] = G


class PymooNSGA2(Searcher):
    name = "pymoo-nsga2"
    summary = "pymoo's NSGA-II on the integer genes (SBX + polynomial mutation, rounded)"

    def __init__(self, seed: int = 0, population: int = 100, eta_c: float = 15.0, eta_m: float = 20.0) -> None:
        super().__init__(seed)
        self.population, self.eta_c, self.eta_m = population, eta_c, eta_m

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        algo = NSGA2(
            pop_size=self.population,
            sampling=IntegerRandomSampling(),
            crossover=SBX(prob=0.9, eta=self.eta_c, vtype=float, repair=RoundingRepair()),
            mutation=PM(eta=self.eta_m, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=True,
        )
        res = minimize(PymooProblem(run.problem, run), algo, ("n_eval", run.budget), seed=self.seed, verbose=progress)
        return {"generations": int(res.algorithm.n_gen)}
