"""pymoo's NSGA-II on an integer-coded :class:`pymoo.core.problem.Problem` built from our Problem.

``PymooProblem`` is a real pymoo problem (vectorised ``_evaluate``, integer variables, G <= 0
constraints), so users can hand it to any pymoo algorithm directly; with a :class:`Run` it counts
evaluations against that run's budget (what apqopt's own searcher does).

The searcher plays by the rules every apqopt searcher plays by (see ``docs/search.md``): hardware
cost is free, so it starts from a feasible population (:class:`FeasibleSampling`) and re-draws
infeasible offspring before they are evaluated (:class:`FeasibleRepair`, bounded), and it stops when
the run has evaluated ``budget`` distinct networks (:class:`RunTermination`), not after ``budget``
calls that may repeat known networks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.individual import Individual
from pymoo.core.population import Population
from pymoo.core.problem import Problem as _PymooBase
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.core.termination import Termination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize

from apqopt.errors import ConfigError
from apqopt.search.base import Run, Searcher, feasible_start
from apqopt.search.problem import Problem
from apqopt.space import Candidate, InvalidCandidateError

PENALTY = 1e9


class PymooProblem(_PymooBase):
    """Minimise [-accuracy, costs...] subject to cost - limit <= 0, over the free integer genes."""

    def __init__(
        self, problem: Problem, run: Run | None = None, constraints: str = "inequality", penalty: float = 10.0
    ) -> None:
        if constraints not in ("inequality", "penalty"):
            raise ConfigError(f"constraints must be 'inequality' or 'penalty', got {constraints!r}")
        lo, hi = problem.gene_bounds()
        free = np.flatnonzero(hi > lo)  # fixed genes (single choice) are not pymoo variables
        super().__init__(
            n_var=len(free),
            n_obj=1 + len(problem.objectives),
            n_ieq_constr=len(problem.constraints) if constraints == "inequality" else 0,
            xl=lo[free],
            xu=hi[free],
            vtype=int,
        )
        self.problem, self.run, self.free, self.template = problem, run, free, lo
        # "penalty": no constraints for pymoo (decomposition methods such as MOEA/D take none); each
        # objective grows by penalty x (relative) constraint excess, so infeasible points rank behind
        self.constraints, self.penalty = constraints, penalty

    def genes(self, X: Any, strict: bool = False) -> np.ndarray:
        """Gene rows of pymoo decision vectors: ``res.X``, ``res.pop`` (a Population), one vector, or float
        vectors from pymoo's default real-valued operators (rounded, and clipped to the choices unless
        ``strict``: then a value outside them is an error naming it, never moved to the nearest bound)."""
        if isinstance(X, Population | Individual):
            X = X.get("X")
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.shape[1] != len(self.free):
            raise InvalidCandidateError(f"decision vectors must have {len(self.free)} variables, got {X.shape[1]}")
        R = np.round(X)
        if strict:
            bad = ~np.isfinite(X) | (self.xl > R) | (self.xu < R)
            if bad.any():
                row, var = (int(i) for i in np.argwhere(bad)[0])
                name = self.problem.space.gene_names()[self.free[var]]
                raise InvalidCandidateError(
                    f"decision vector {row}: variable {var} ({name}) is {X[row, var]:g}, outside its choices "
                    f"{int(self.xl[var])}..{int(self.xu[var])}"
                )
        genes = np.repeat(self.template[None], len(X), axis=0)
        genes[:, self.free] = np.clip(R, self.xl, self.xu).astype(np.int64)
        return genes

    def decode(self, X: Any) -> list[Candidate]:
        """Candidates of pymoo decision vectors (``res.X``, ``res.pop``, ...); a value outside a variable's
        choices is refused (:meth:`genes` with ``strict``), not clipped into a different network."""
        return self.problem.space.to_candidates(self.genes(X, strict=True))

    def encode(self, genes: np.ndarray) -> np.ndarray:
        """pymoo decision vectors of gene rows (the free genes)."""
        return np.asarray(genes, dtype=np.int64)[:, self.free]

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        genes = self.genes(X)
        n = len(genes)
        F = np.full((n, self.n_obj), PENALTY)
        G = np.full((n, self.n_ieq_constr), PENALTY)
        if self.run is None:
            ev = self.problem.evaluate(genes)
        elif not self.run.done:
            ev = self.run.evaluate(genes)  # a prefix when the budget ends inside the batch
        else:
            ev = None
        if ev is not None:
            F[: len(ev)] = self.problem.objective_matrix(ev)
            g = self.problem.constraint_matrix(ev)
            if self.n_ieq_constr:
                G[: len(ev)] = g
            elif g.shape[1]:  # the penalty form
                limits = np.array(list(self.problem.constraints.values()))
                F[: len(ev)] += self.penalty * (np.maximum(g, 0.0) / limits).sum(axis=1, keepdims=True)
        out["F"] = F
        if self.n_ieq_constr:
            out["G"] = G


class FeasibleSampling(Sampling):
    """The initial population drawn like every searcher's: feasible, distinct, bounded re-draws."""

    def __init__(self, run: Run, seed: int, max_tries: int) -> None:
        super().__init__()
        self.run, self.rng, self.max_tries = run, np.random.default_rng(seed), max_tries

    def _do(self, problem: PymooProblem, n_samples: int, **kwargs: Any) -> np.ndarray:
        genes, _ = feasible_start(self.run.problem, n_samples, self.rng, self.max_tries, self.run)
        return problem.encode(genes)


class FeasibleRepair(Repair):
    """Offspring that break a constraint are re-drawn from the space (bounded) before evaluation."""

    def __init__(self, run: Run, seed: int, max_tries: int) -> None:
        super().__init__()
        self.run, self.rng, self.max_tries = run, np.random.default_rng(seed + 7_777), max_tries
        self.redrawn = 0

    def _do(self, problem: PymooProblem, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        p = self.run.problem
        genes = problem.genes(X)
        bad = np.flatnonzero(p.cost(genes)[2] > 0)
        if len(bad):
            self.redrawn += len(bad)
            genes[bad], _ = feasible_start(p, len(bad), self.rng, self.max_tries)
        return problem.encode(genes)


class RunTermination(Termination):
    """Done when the run has evaluated its budget of distinct networks (or stalled)."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    def _update(self, algorithm: object) -> float:
        return 1.0 if self.run.done else self.run.n_evaluated / self.run.budget


def integer_operators(eta_c: float = 15.0, eta_m: float = 20.0, sampling: Sampling | None = None) -> dict[str, Any]:
    """Sampling, crossover and mutation on the integer genes as apqopt's pymoo NSGA-II uses them (SBX and
    polynomial mutation, rounded), for users' own pymoo algorithms: ``GA(pop_size=50, **integer_operators())``.
    ``sampling``: default pymoo's integer random sampling."""
    return {
        "sampling": sampling if sampling is not None else IntegerRandomSampling(),
        "crossover": SBX(prob=0.9, eta=eta_c, vtype=float, repair=RoundingRepair()),
        "mutation": PM(eta=eta_m, vtype=float, repair=RoundingRepair()),
    }


class PymooNSGA2(Searcher):
    name = "pymoo-nsga2"
    summary = "pymoo's NSGA-II on the integer genes (SBX + polynomial mutation, rounded), feasible start and repair"

    def __init__(
        self, seed: int = 0, population: int = 100, eta_c: float = 15.0, eta_m: float = 20.0, max_tries: int = 50
    ) -> None:
        super().__init__(seed)
        self.population, self.eta_c, self.eta_m, self.max_tries = population, eta_c, eta_m, max_tries

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        repair = FeasibleRepair(run, self.seed, self.max_tries)
        algo = NSGA2(
            pop_size=self.population,
            **integer_operators(self.eta_c, self.eta_m, FeasibleSampling(run, self.seed, self.max_tries)),
            repair=repair,
            eliminate_duplicates=True,
        )
        res = minimize(  # no copies: the sampling, repair and termination must see this run, not a deep copy of it
            PymooProblem(run.problem, run),
            algo,
            RunTermination(run),
            seed=self.seed,
            verbose=progress,
            copy_algorithm=False,
            copy_termination=False,
        )
        return {"generations": int(res.algorithm.n_gen), "infeasible_redrawn": repair.redrawn}
