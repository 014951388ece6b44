"""``joint-ilp``: APQ's evolution over architectures, each given its exact bit policy by OHQ's ILP.

Why: APQ searches architecture and bits together by evolution, which samples bits as blindly as
kernels; OHQ allocates bits exactly but only for one fixed network. Here the outer loop is APQ's
evolution (:class:`~apqopt.search.evolution.Evolution`, same parents, mutation, crossover, feasible
start and distinct-network rule); before a drawn row is checked and evaluated, its bits are replaced
by the policy of least total sensitivity that meets the problem's limits, solved exactly by the
multiple-choice ILP (:func:`apqopt.search.ilp.solve`). Per-operator sensitivities come from the
supernet-wide table (:mod:`apqopt.sensitivity`), a lookup for any architecture.

What the budget counts, under the rules every searcher follows: one evaluation per distinct network
the predictor scores, as for the others. Not counted, as for OHQ's MQE: the sensitivity table
(measured once per supernet, before any search; its time is in its file) and the ILP solves (hardware
cost and the table are free to consult; each solve takes milliseconds). Without a latency or energy
limit each architecture draws its own latency limit between its cheapest and dearest policy, so the
population still spreads along the front.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from apqopt.errors import ConfigError
from apqopt.hardware.lut import COSTS
from apqopt.search.base import Run
from apqopt.search.evolution import Evolution
from apqopt.search.ilp import OperatorCosts, solve
from apqopt.search.problem import InfeasibleError, Problem
from apqopt.sensitivity import SensitivityTable
from apqopt.shipped import sensitivity_path
from apqopt.space import BIT_FIELDS, SearchSpace


class JointILP(Evolution):
    name = "joint-ilp"
    summary = "evolution over architectures; each one's bits by OHQ's exact ILP on a supernet-wide MQE table"

    def __init__(
        self,
        seed: int = 0,
        population: int = 100,
        parents: int = 25,
        mutations: int = 50,
        crossovers: int = 50,
        mutate_prob: float = 0.1,
        max_tries: int = 50,
        table: str | SensitivityTable | None = None,
    ) -> None:
        super().__init__(seed, population, parents, mutations, crossovers, mutate_prob, max_tries)
        self.table = table

    def recorded_params(self) -> dict[str, Any]:
        p = super().recorded_params()
        p["table"] = "given" if isinstance(self.table, SensitivityTable) else self.table
        return p

    def _load_table(self, space: SearchSpace) -> SensitivityTable:
        if isinstance(self.table, SensitivityTable):
            if self.table.space != space.name:
                raise ConfigError(f"joint-ilp: the table is of space '{self.table.space}', not '{space.name}'")
            return self.table
        path = Path(self.table) if self.table else sensitivity_path(space.name)
        if not path.exists():
            raise ConfigError(
                f"joint-ilp needs a sensitivity table: none at {path}; measure one with "
                f"`apqopt sensitivity --space {space.name} --supernet WEIGHTS --out FILE` and pass table=FILE"
            )
        return SensitivityTable.load(path, space=space.name)

    def _finish(self, run: Run, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
        allocator = BitAllocator(run.problem, self._load_table(run.problem.space), rng)
        self._allocator = allocator  # its counters go into the run's notes
        return allocator

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        notes = super()._search(run, progress)
        a = self._allocator
        return {**notes, "ilp_solves": a.solves, "ilp_infeasible": a.infeasible, "ilp_seconds": round(a.seconds, 3)}


class BitAllocator:
    """Rows in, rows out with each architecture's bits set to its ILP policy (one solve per architecture).

    Per-block costs and sensitivities are gathered once per (block, kernel, width), so an architecture
    costs two array gathers and one solve."""

    def __init__(self, problem: Problem, table: SensitivityTable, rng: np.random.Generator) -> None:
        self.problem, self.table, self.rng = problem, table, rng
        sp = problem.space
        self.nb = len(sp.bits)
        self.choices = tuple((w, a) for w in sp.bits for a in sp.bits)
        if tuple(table.choices) != self.choices:
            raise ConfigError(f"joint-ilp: the table's bit pairs {table.choices} are not the space's {self.choices}")
        widest = max(len(m) for m in sp.middle_choices)
        # cost[b, kernel, width, op, choice, (latency, energy)]; a pair the table lacks is inf: never chosen
        self.cost = np.full((sp.n_blocks, len(sp.kernels), widest, 2, len(self.choices), 2), np.inf)
        for b, (pw, dw) in enumerate(problem.lut.block_parts(sp)):
            n_mid = pw.shape[0]
            self.cost[b, :, :n_mid, 0] = pw.reshape(n_mid, -1, 2)[None]  # choice c = (w index, a index) row-major
            self.cost[b, :, :n_mid, 1] = dw.reshape(len(sp.kernels), n_mid, -1, 2)
        self.cost[np.isnan(self.cost)] = np.inf
        lut = problem.lut
        self.fixed_cost = (lut.head[0] + lut.tail[0], lut.head[1] + lut.tail[1])
        self.cache: dict[bytes, np.ndarray] = {}  # architecture -> its bit genes (n_blocks, 4)
        self.solves = self.infeasible = 0
        self.seconds = 0.0

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        sp = self.problem.space
        genes = np.array(genes, dtype=np.int64, copy=True)
        bg = sp.block_genes(genes)  # a view: writing it writes genes
        arch = sp.canonical(genes)
        sp.block_genes(arch)[:, :, 2:] = 0  # identity = the architecture alone
        for i, key in enumerate(np.ascontiguousarray(arch).view(np.dtype((np.void, arch.shape[1] * 8))).ravel()):
            k = key.tobytes()
            if k not in self.cache:
                self.cache[k] = self._allocate(genes[i])
            bits = self.cache[k]
            act = sp.active(genes[i : i + 1])[0]
            bg[i, act, 2:] = bits[act]
        return genes

    def _allocate(self, row: np.ndarray) -> np.ndarray:
        """The bit genes (n_blocks, 4: pw_w, pw_a, dw_w, dw_a) of the row's architecture's ILP policy; where no
        allowed policy meets the limits, the first choices (the row is then rejected as infeasible)."""
        sp = self.problem.space
        bg = sp.block_genes(row[None])[0]
        blocks = np.flatnonzero(sp.active(row[None])[0])
        idx = (blocks, bg[blocks, 0], bg[blocks, 1])
        cost = self.cost[idx].reshape(2 * len(blocks), len(self.choices), 2)  # rows: pw, dw of each block
        sens = self.table.values[idx].reshape(2 * len(blocks), len(self.choices))
        if not np.isfinite(sens).all():
            raise ConfigError("joint-ilp: the sensitivity table lacks an entry this architecture needs")
        # a choice is allowed where the table prices it and the problem's fixed genes permit its bits
        lo, hi = (
            x[sp.n_stages :].reshape(sp.n_blocks, len(BIT_FIELDS) + 2)[blocks, 2:] for x in self.problem.gene_bounds()
        )
        wi, ai = np.divmod(np.arange(len(self.choices)), self.nb)
        allowed = np.isfinite(cost).all(axis=-1)
        for op, (fw, fa) in enumerate(((0, 1), (2, 3))):  # pw_w, pw_a / dw_w, dw_a
            ok = (lo[:, fw, None] <= wi) & (wi <= hi[:, fw, None]) & (lo[:, fa, None] <= ai) & (ai <= hi[:, fa, None])
            allowed[op::2] &= ok
        limits = dict(self.problem.constraints)
        if not limits:  # no limit: spread the population along the front
            name = self.problem.objectives[0]
            c, f = np.where(allowed, cost[..., COSTS.index(name)], np.nan), self.fixed_cost[COSTS.index(name)]
            limits = {name: float(self.rng.uniform(f + np.nanmin(c, 1).sum(), f + np.nanmax(c, 1).sum()))}
        cand = sp.to_candidates(row[None])[0]
        costs = OperatorCosts(cand, self.choices, cost[..., 0], cost[..., 1], self.fixed_cost)
        out = np.zeros((sp.n_blocks, len(BIT_FIELDS)), dtype=np.int64)
        t0 = time.perf_counter()
        try:
            picks = solve(sens, costs, limits, allowed)
        except InfeasibleError:
            self.infeasible += 1
            return out
        finally:
            self.seconds += time.perf_counter() - t0
        self.solves += 1
        pw, dw = picks[0::2], picks[1::2]
        out[blocks] = np.column_stack([pw // self.nb, pw % self.nb, dw // self.nb, dw % self.nb])
        return out
