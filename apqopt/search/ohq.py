"""OHQ (Huang et al., 2023) as a searcher: per-operator sensitivity + an exact integer program per budget.

For the problem's fixed architecture, sensitivities are passed in: an array, or a function of the
problem that measures them -- :class:`apqopt.supernet.mqe.SupernetMQE`, Mask-Guided Quantization
Estimation on the supernet's subnet, data-free (synthetic inputs, OHQ's default) or on real images,
which ``apqopt search``/``compare`` give an OHQ run from its ``supernet``/``data``/``images``/``cache_dir``/
``device`` parameters. Why not measured here: searchers know problems, not networks (``search/`` loads
no torch). Then, for budgets swept evenly from the cheapest to the dearest
policy (capped by the problem's own constraints), the integer program picks the policy of least total
sensitivity; each distinct policy is evaluated once, so OHQ spends far fewer evaluations than the
budget allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from apqopt.errors import ConfigError
from apqopt.search.base import Run, Searcher
from apqopt.search.ilp import OperatorCosts, solve
from apqopt.search.problem import InfeasibleError, Problem

Sensitivity = np.ndarray | Callable[[Problem], np.ndarray]


class OHQ(Searcher):
    name = "ohq"
    summary = "OHQ: per-operator MQE sensitivity + exact ILP bit allocation for one fixed architecture"

    def __init__(
        self,
        seed: int = 0,
        sensitivity: Sensitivity | None = None,
        supernet: str | None = None,
        data: Literal["synthetic", "real"] = "synthetic",
        images: int = 64,
        points: int = 20,
        cache_dir: str | None = "default",
        device: str = "cpu",
    ) -> None:
        super().__init__(seed)
        self.sensitivity, self.supernet, self.data, self.images = sensitivity, supernet, data, images
        self.points, self.cache_dir, self.device = points, cache_dir, device

    def recorded_params(self) -> dict[str, Any]:
        p = super().recorded_params()
        # None where the supernet's MQE measures them (as before there were providers: the same settings)
        measured = self.sensitivity is None or getattr(self.sensitivity, "measures_supernet", False)
        p["sensitivity"] = None if measured else "given"
        return p

    def _sensitivity(self, problem: Problem) -> np.ndarray:
        if self.sensitivity is None:
            raise ConfigError(
                "OHQ needs per-operator sensitivities: pass sensitivity= (an array, or a function of the problem "
                "such as apqopt.supernet.mqe.SupernetMQE.of(searcher)); `apqopt search`/`compare` measure them"
            )
        if callable(self.sensitivity):
            return np.asarray(self.sensitivity(problem), dtype=float)
        return np.asarray(self.sensitivity, dtype=float)

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        problem = run.problem
        arch = problem.architecture
        if arch is None:
            raise ConfigError("OHQ allocates bits for one architecture: use problem.restricted_to(candidate)")
        costs = OperatorCosts.from_lut(arch, problem.lut)
        sens = self._sensitivity(problem)
        lo = costs.fixed[0] + costs.latency.min(axis=1).sum()
        hi = costs.fixed[0] + costs.latency.max(axis=1).sum()
        hi = min(hi, problem.constraints.get("latency", hi))
        seen: set[tuple[int, ...]] = set()
        solved = 0
        for limit in np.linspace(lo, hi, self.points):
            if run.done:
                break
            try:
                picks = solve(sens, costs, {**problem.constraints, "latency": float(limit)})
            except InfeasibleError:
                continue  # the energy constraint cannot be met at this latency
            solved += 1
            row = problem.space.from_candidates([costs.policy(picks)])[0]
            if tuple(row) not in seen:
                seen.add(tuple(row))
                run.evaluate(row[None])
        return {"budgets_solved": solved, "distinct_policies": len(seen), "sensitivity_shape": list(sens.shape)}
