"""Random search: uniform samples, infeasible and already-seen ones re-drawn (bounded), in batches. The baseline."""

from __future__ import annotations

from typing import Any

import numpy as np

from apqopt.search.base import Run, Searcher, feasible_start


class RandomSearch(Searcher):
    name = "random"
    summary = "uniform samples, infeasible and already-seen ones re-drawn (the baseline)"

    def __init__(self, seed: int = 0, batch: int = 1000, max_tries: int = 50) -> None:
        super().__init__(seed)
        self.batch, self.max_tries = batch, max_tries

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        problem = run.problem
        while not run.done:  # full batches always (the run takes what its budget allows): the draws do
            genes, _ = feasible_start(problem, self.batch, rng, self.max_tries, run)  # not depend on the budget
            run.evaluate(genes)
        return {}
