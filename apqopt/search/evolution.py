"""APQ's evolutionary search (§4), as the paper describes it.

Population 100; each generation keeps the 25 fittest as parents and adds 50 children by mutation
(each stage's depth and each block's choices re-sampled with probability 0.1) and 50 by crossover
(each stage depth and block from either parent); *both* sets of children are kept. Candidates
breaking a constraint are re-sampled a bounded number of times, in batches. Fitness is predicted
accuracy among feasible candidates (infeasible ones rank below all feasible ones, by violation).

Differences from APQ's released code, on purpose: that code keeps only the mutants, never mutates
depth, and loops without bound on constraints. And one from the paper, for diversity: the parents
are the 25 fittest *distinct networks* (identity ignores dormant genes), and a child that repeats a
network this run has evaluated is re-drawn like an infeasible one (bounded). Without it, after ~100
generations the parents were 25 copies of one network and most of a 50k budget re-evaluated networks
already seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from apqopt.search.base import Run, Searcher, distinct_rows, feasible_samples, feasible_start
from apqopt.search.operators import crossover, mutate
from apqopt.search.problem import Evaluation


def fitness(ev: Evaluation) -> np.ndarray:
    return np.where(ev.feasible, ev.accuracy, -1.0 - ev.violation)


class Evolution(Searcher):
    name = "evolution"
    summary = "APQ's evolution: top-25 parents, 50 mutants + 50 crossover children per generation"

    def __init__(
        self,
        seed: int = 0,
        population: int = 100,
        parents: int = 25,
        mutations: int = 50,
        crossovers: int = 50,
        mutate_prob: float = 0.1,
        max_tries: int = 50,
    ) -> None:
        super().__init__(seed)
        self.population, self.parents, self.mutations, self.crossovers = population, parents, mutations, crossovers
        self.mutate_prob, self.max_tries = mutate_prob, max_tries

    def _finish(self, run: Run, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
        """What becomes of a drawn row before it is checked and evaluated: nothing here; ``joint-ilp``
        replaces the bits of each row's architecture by its exact ILP policy."""
        return lambda genes: genes

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        problem = run.problem
        sp = problem.space
        finish = self._finish(run, rng)
        genes, left = feasible_start(problem, self.population, rng, self.max_tries, run, finish)
        pop = run.evaluate(genes)
        unresolved = left
        generations = 0
        best_per_gen = []
        while not run.done:
            uniq = distinct_rows(run, pop.genes)
            top = uniq[np.argsort(-fitness(pop.take(uniq)), kind="stable")[: self.parents]]
            par = pop.genes[top]

            def mutants(k: int, par: np.ndarray = par) -> np.ndarray:
                return finish(problem.apply_fixed(mutate(sp, par[rng.integers(0, len(par), k)], self.mutate_prob, rng)))

            def children(k: int, par: np.ndarray = par) -> np.ndarray:
                return finish(crossover(sp, par[rng.integers(0, len(par), k)], par[rng.integers(0, len(par), k)], rng))

            m, l1 = feasible_samples(problem, mutants, self.mutations, self.max_tries, run)
            c, l2 = feasible_samples(problem, children, self.crossovers, self.max_tries, run)
            unresolved += l1 + l2
            kids = run.evaluate(np.concatenate([m, c]))
            pop = Evaluation.concat([pop.take(top), kids])
            generations += 1
            f = fitness(pop)
            best_per_gen.append(float(f.max()))
        return {
            "generations": generations,
            "unacceptable_after_retries": unresolved,
            "best_per_generation": best_per_gen,
        }
